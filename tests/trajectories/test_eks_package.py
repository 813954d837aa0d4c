"""cnnkit's numpy EKS against the ``ensemble-kalman-smoother`` package on the same inputs.

The package (paninski-lab, JAX) is in the ``eks`` extra, which ``make install`` installs for the
tests; without it these tests are skipped. The package computes in float32.
"""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.trajectories.eks import TUNING_VARIANCE_FLOOR, ensemble_kalman_smoother, ensemble_statistics
from cnnkit.trajectories.kalman import kalman_filter
from cnnkit.trajectories.synth import observe, random_walk

NAMES = ["a", "b"]
SKIP = "the ensemble-kalman-smoother package is not installed (pip install -e '.[eks]'; make install does)"


@pytest.fixture(scope="module")
def package():
    """The package's modules, imported when a test runs (JAX takes seconds to import), not at collection."""
    return pytest.importorskip("eks.singlecam_smoother", reason=SKIP), pytest.importorskip("eks.marker_array", reason=SKIP)


@pytest.fixture(scope="module")
def ensemble() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    truth = random_walk(400, 2, rng, step_px=1.5)
    seen = observe(truth, rng, n_members=4, noise_px=3.0, failure_rate=0.02)
    return seen.points, seen.likelihood


def _package(package, points: np.ndarray, likelihood: np.ndarray, smooth_param=None) -> tuple[dict, np.ndarray]:
    singlecam, marker_array = package
    fields = np.concatenate([points, likelihood[..., None]], axis=-1)[:, None]  # (M, cameras=1, T, K, 3)
    arr = marker_array.MarkerArray(fields, data_fields=["x", "y", "likelihood"])
    df, s = singlecam.ensemble_kalman_smoother_singlecam(arr, NAMES, smooth_param=smooth_param)

    def get(suffix: str) -> np.ndarray:
        cols = [df.xs((k, f"{axis}{suffix}"), level=(1, 2), axis=1).iloc[:, 0].to_numpy() for k in NAMES
                for axis in "xy"]
        return np.stack(cols, axis=-1).reshape(len(df), len(NAMES), 2)

    return {"mean": get(""), "var": get("_posterior_var"), "median": get("_ens_median"),
            "ens_var": get("_ens_var")}, np.asarray(s, dtype=float)


def test_same_strength_gives_the_same_posterior(package, ensemble) -> None:
    points, lik = ensemble
    ours = ensemble_kalman_smoother(points, lik)
    theirs, _ = _package(package, points, lik, smooth_param=list(ours.strength))
    np.testing.assert_allclose(theirs["median"], ours.median, atol=1e-4)
    np.testing.assert_allclose(theirs["ens_var"], ours.ensemble_variance, rtol=1e-4)
    # float32 in the package: measured 2e-5 px and 5e-5 relative
    np.testing.assert_allclose(theirs["mean"], ours.mean, atol=1e-3)
    np.testing.assert_allclose(theirs["var"], ours.variance, rtol=1e-3)


def test_tuned_strength_is_at_least_as_likely_as_the_packages(package, ensemble) -> None:
    points, lik = ensemble
    ours = ensemble_kalman_smoother(points, lik)
    theirs, s_theirs = _package(package, points, lik)
    centre, variance, _, _ = ensemble_statistics(points, lik)
    typical = np.clip(np.nanmedian(variance, axis=0), TUNING_VARIANCE_FLOOR, None)
    m0, p0 = np.nanmean(centre, axis=0), np.nanvar(centre, axis=0)

    def nll(s: np.ndarray) -> np.ndarray:  # the likelihood both maximise (observation variance at its median)
        f = kalman_filter(centre, np.broadcast_to(typical, centre.shape), s[:, None], m0, p0, keep=False)
        return f.nll.sum(axis=1)

    # The package climbs it with Adam and stops on a tolerance; the grid search finds its optimum.
    assert np.all(nll(ours.strength) <= nll(s_theirs) + 1e-6)
    assert np.all((s_theirs > ours.strength / 1.5) & (s_theirs < ours.strength * 1.5))
    assert np.abs(theirs["mean"] - ours.mean).mean() < 0.1  # px
