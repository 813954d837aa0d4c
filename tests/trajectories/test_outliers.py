"""DeepLabCut-style outlier scores on generated trajectories with known failures."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import DataError
from cnnkit.trajectories.outliers import frame_flags, outlier_scores
from cnnkit.trajectories.reliability import roc_auc
from cnnkit.trajectories.synth import observe, smooth_motion


def test_scores_find_the_frames_where_the_model_failed() -> None:
    rng = np.random.default_rng(0)
    truth = smooth_motion(2000, 3, rng, time_scale=12.0, amplitude_px=20.0)
    seen = observe(truth, rng, noise_px=1.0, failure_rate=0.02, failure_px=60.0)
    scores = outlier_scores(seen.points[0], seen.likelihood[0])
    failed = seen.failed[0].any(axis=1)
    flags = frame_flags(scores)
    assert len(flags) == 2000 and flags["n_flags"].max() <= 3
    for column in ("jump_px", "fitting_px"):  # both rank the failed frames first
        assert roc_auc(flags[column].to_numpy(), failed) > 0.9, column
    assert roc_auc(-flags["min_likelihood"].to_numpy(), failed) > 0.9
    caught = flags["fitting"].to_numpy()
    assert (caught & failed).sum() > 0.6 * failed.sum() and (caught & ~failed).sum() < 0.01 * (~failed).sum()


def test_scores_by_hand() -> None:
    points = np.zeros((5, 2, 2))
    points[2, 0] = [30.0, 40.0]  # landmark 0 jumps 50 px for one frame
    points[4, 1] = np.nan
    lik = np.full((5, 2), 0.9)
    lik[3, 1] = 0.001
    scores = outlier_scores(points, lik)
    assert scores.jump_px[:, 0].tolist()[1:] == [0.0, 50.0, 50.0, 0.0] and np.isnan(scores.jump_px[0, 0])
    assert np.isnan(scores.jump_px[4, 1])  # missing point: no score
    assert scores.fitting_px[2, 0] == 50.0 and scores.fitting_px[1, 0] == 0.0  # the running median ignores it
    flags = frame_flags(scores)
    assert flags["jump"].tolist() == [False, False, True, True, False]
    assert flags["uncertain"].tolist() == [False, False, False, True, False]
    assert flags["fitting"].tolist() == [False, False, True, False, False]
    assert flags["n_flags"].tolist() == [0, 0, 2, 2, 0]
    assert frame_flags(scores, jump_px=60.0)["jump"].sum() == 0


def test_fitting_is_measured_against_a_given_trajectory_and_missing_likelihood_flags_nothing() -> None:
    points = np.zeros((4, 1, 2))
    smoothed = np.full((4, 1, 2), 3.0)
    scores = outlier_scores(points, smoothed=smoothed)
    np.testing.assert_allclose(scores.fitting_px[:, 0], np.hypot(3.0, 3.0))
    flags = frame_flags(scores)
    assert scores.likelihood is None and not flags["uncertain"].any() and flags["min_likelihood"].isna().all()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"points": np.zeros((4, 2))}, r"points must be \(frames, landmarks, 2\)"),
    ({"points": np.zeros((4, 2, 2)), "likelihood": np.zeros(4)}, r"likelihood must be \(frames, landmarks\)"),
    ({"points": np.zeros((4, 2, 2)), "smoothed": np.zeros((3, 2, 2))}, "smoothed must have the shape"),
])
def test_bad_shapes_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        outlier_scores(**kwargs)
