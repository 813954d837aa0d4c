"""cnnkit.smooth over prediction tables: columns, videos, frame gaps, ensembles, and what it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cnnkit
from cnnkit.errors import DataError
from cnnkit.trajectories.eks import ensemble_kalman_smoother
from cnnkit.trajectories.filters import median_filter, savgol_filter
from cnnkit.trajectories.synth import observe, smooth_motion

NAMES = ("nose", "tail")


def _tables(n_members: int, n_frames: int = 300, seed: int = 0) -> tuple[list[pd.DataFrame], np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = smooth_motion(n_frames, len(NAMES), rng)
    seen = observe(truth, rng, n_members=n_members, failure_rate=0.02)
    tables = []
    for m in range(n_members):
        cols: dict[str, np.ndarray] = {"frame": np.arange(n_frames), "time_s": np.arange(n_frames) / 30.0}
        for k, name in enumerate(NAMES):
            cols[f"{name}_x"], cols[f"{name}_y"] = seen.points[m, :, k, 0], seen.points[m, :, k, 1]
            cols[f"{name}_likelihood"] = seen.likelihood[m, :, k]
        tables.append(pd.DataFrame(cols))
    return tables, seen.points


def _write(tables: list[pd.DataFrame], folder: Path) -> list[Path]:
    paths = [folder / f"member{m}.csv" for m in range(len(tables))]
    for t, p in zip(tables, paths, strict=True):
        t.to_csv(p, index=False)
    return paths


def _xy(table: pd.DataFrame, suffix: str = "") -> np.ndarray:
    return np.stack([table[[f"{n}_x{suffix}", f"{n}_y{suffix}"]].to_numpy() for n in NAMES], axis=1)


def test_an_ensemble_is_smoothed_by_eks_and_written_with_its_settings(tmp_path) -> None:
    tables, points = _tables(4)
    paths = _write(tables, tmp_path)
    result = cnnkit.smooth(paths, out=tmp_path / "eks.csv")
    direct = ensemble_kalman_smoother(points, np.stack([[t[f"{n}_likelihood"] for n in NAMES] for t in tables],
                                                       axis=0).transpose(0, 2, 1))
    written = pd.read_csv(tmp_path / "eks.csv")
    assert list(written.columns[:9]) == ["frame", "time_s", "nose_x", "nose_y", "nose_sd", "nose_likelihood",
                                         "nose_x_median", "nose_y_median", "nose_spread"]
    np.testing.assert_allclose(_xy(written), direct.mean, rtol=1e-12)
    np.testing.assert_allclose(_xy(written, "_median"), direct.median, rtol=1e-12)
    np.testing.assert_allclose(written[["nose_sd", "tail_sd"]].to_numpy(), direct.sd, rtol=1e-12)
    settings = json.loads((tmp_path / "eks.csv.json").read_text())
    assert settings["method"] == "eks" and settings["inputs"] == [str(p) for p in paths]
    assert settings["strength_px2_per_frame"][""] == pytest.approx(dict(zip(NAMES, direct.strength, strict=True)))
    assert result.lines()[1].startswith("strength s (tuned, px² per frame; smaller = smoother): nose ")


@pytest.mark.parametrize(("method", "window", "filt"), [("auto", 5, median_filter), ("median", 7, median_filter),
                                                        ("savgol", 11, savgol_filter)])
def test_one_table_is_filtered(method: str, window: int, filt) -> None:
    tables, points = _tables(1)
    result = cnnkit.smooth(tables[0], method=method, window=None if method == "auto" else window)
    assert result.method == ("median" if method == "auto" else method) and result.window == window
    np.testing.assert_allclose(_xy(result.table), filt(points[0], window), rtol=1e-12)
    np.testing.assert_allclose(_xy(result.table, "_median"), points[0])  # the raw prediction is kept beside
    assert "nose_sd" not in result.table and "nose_spread" not in result.table and not result.strength
    np.testing.assert_array_equal(result.table["nose_likelihood"], tables[0]["nose_likelihood"])


def test_several_videos_are_smoothed_apart() -> None:
    (a,), _ = _tables(1, seed=1)
    (b,), _ = _tables(1, seed=2)
    both = pd.concat([a.assign(video="a.mp4"), b.assign(video="b.mp4")], ignore_index=True)
    both = both[["video", *a.columns]]
    out = cnnkit.smooth(both).table
    assert list(out.columns[:3]) == ["video", "frame", "time_s"] and len(out) == len(both)
    for name, alone in (("a.mp4", a), ("b.mp4", b)):
        part = out[out["video"] == name].reset_index(drop=True)
        pd.testing.assert_frame_equal(part.drop(columns="video"), cnnkit.smooth(alone).table)


def test_frames_absent_from_the_table_are_missing_and_the_rows_are_kept() -> None:
    tables, _ = _tables(3)
    holed = [t.drop(index=range(100, 110)).reset_index(drop=True) for t in tables]
    nan_rows = [t.copy() for t in tables]
    for t in nan_rows:
        t.loc[100:109, [c for c in t.columns if c not in ("frame", "time_s")]] = np.nan
    out = cnnkit.smooth(holed).table
    reference = cnnkit.smooth(nan_rows).table.drop(index=range(100, 110)).reset_index(drop=True)
    assert out["frame"].tolist() == holed[0]["frame"].tolist()
    pd.testing.assert_frame_equal(out, reference)


def test_members_must_share_frames_and_landmarks(tmp_path) -> None:
    tables, _ = _tables(2)
    paths = _write([tables[0], tables[1].iloc[:-1]], tmp_path)
    with pytest.raises(DataError, match=r"member1\.csv: frame 299 is in one ensemble member and not the other"):
        cnnkit.smooth(paths)
    with pytest.raises(DataError, match=r"table 2: no column 'tail_x'; ensemble members must predict the same"):
        cnnkit.smooth([tables[0], tables[1].drop(columns=["tail_x"])])
    with pytest.raises(DataError, match="no 'frame' column; smoothing needs video predictions"):
        cnnkit.smooth(tables[0].drop(columns=["frame"]))
    with pytest.raises(DataError, match="frame 3 appears twice"):
        cnnkit.smooth(pd.concat([tables[0].iloc[:5], tables[0].iloc[3:4]]))
    with pytest.raises(DataError, match=r"row 2: column 'nose_x' holds 'oops'; expected a number"):
        cnnkit.smooth(tables[0].astype({"nose_x": object}).assign(nose_x=lambda d: d["nose_x"].where(
            d.index != 2, "oops")))


def test_an_input_is_never_overwritten(tmp_path) -> None:
    tables, _ = _tables(2)
    paths = _write(tables, tmp_path)
    before = [p.read_bytes() for p in paths]
    with pytest.raises(DataError, match=r"member1\.csv is one of the inputs; smoothing writes a new file beside"):
        cnnkit.smooth(paths, out=paths[1])
    (tmp_path / "mine.csv.json").write_text('{"my": "notes"}')
    with pytest.raises(DataError, match=r"mine\.csv\.json exists and was not written by cnnkit smooth"):
        cnnkit.smooth(paths, out=tmp_path / "mine.csv")
    assert [p.read_bytes() for p in paths] == before
    assert not (tmp_path / "mine.csv").exists()


@pytest.mark.parametrize(("n", "kwargs", "message"), [
    (1, {"method": "eks"}, "EKS needs the predictions of 2 or more models"),
    (2, {"method": "eks", "window": 5}, "--window is for the median and savgol filters"),
    (1, {"method": "median", "strength": 1.0}, "strength is EKS's; the median filter takes a window"),
    (1, {"method": "kalman"}, "smoothing method must be one of auto, eks, median, savgol"),
    (1, {"window": 0}, "the window is a number of frames >= 1"),
])
def test_bad_requests_are_refused_before_reading(n: int, kwargs: dict, message: str) -> None:
    tables, _ = _tables(n, n_frames=20)
    with pytest.raises(DataError, match=message):
        cnnkit.smooth(tables if n > 1 else tables[0], **kwargs)


def test_filters_smooth_the_median_of_an_ensemble() -> None:
    tables, points = _tables(3)
    out = cnnkit.smooth(tables, method="median").table
    np.testing.assert_allclose(_xy(out), median_filter(np.nanmedian(points, axis=0), 5))
    assert "nose_spread" in out and "nose_sd" not in out
