"""predict --format: DeepLabCut CSV/H5 and NWB outputs, loaded back with movement and pynwb."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cnnkit.errors import ConfigError, DataError
from cnnkit.infer.formats import PredictionMeta, check_outputs, dlc_frame, output_paths, write_predictions

NAMES = ("nose", "left_ear", "tail")
N = 12


def _video_predictions(n: int = N, seed: int = 0) -> pd.DataFrame:
    """A table as predict writes it for a video, with missing points (NaN) in frames 3 and 7."""
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {"frame": np.arange(n), "time_s": np.arange(n) / 30 + 0.01 * rng.random(n)}
    for name in NAMES:
        cols[f"{name}_x"] = rng.uniform(0, 96, n)
        cols[f"{name}_y"] = rng.uniform(0, 64, n)
        cols[f"{name}_likelihood"] = rng.uniform(0, 1, n)
    df = pd.DataFrame(cols)
    df.loc[df.index == 3, ["left_ear_x", "left_ear_y", "left_ear_likelihood"]] = np.nan
    df.loc[df.index == 7, ["nose_x", "nose_y"]] = np.nan
    return df


@pytest.fixture
def clip(tmp_path, index_video) -> Path:
    return index_video(tmp_path / "clip.mp4", N)


def _meta(tmp_path: Path, videos=()) -> PredictionMeta:
    return PredictionMeta(NAMES, tmp_path / "runs" / "lips" / "best.safetensors", tuple(videos),
                          {"size": [48, 32], "views": "auto"})


def _positions(df: pd.DataFrame) -> np.ndarray:
    """(T, 2, K) as movement stores one individual's positions."""
    return np.stack([df[[f"{n}_x", f"{n}_y"]].to_numpy() for n in NAMES], axis=-1)


def test_names_follow_deeplabcuts_pattern_beside_out(tmp_path, clip) -> None:
    meta = _meta(tmp_path, [clip])
    assert meta.scorer == "DLC_cnnkit_lips-best"
    paths = output_paths(tmp_path / "out" / "preds.csv", ("csv", "dlc", "nwb"), meta)
    assert paths["csv"] == [tmp_path / "out" / "preds.csv"]
    assert [p.name for p in paths["dlc"]] == ["clipDLC_cnnkit_lips-best.csv", "clipDLC_cnnkit_lips-best.h5"]
    assert [p.name for p in paths["nwb"]] == ["clip_cnnkit_lips-best.nwb"]
    images = output_paths(tmp_path / "preds.csv", ("dlc",), _meta(tmp_path))
    assert [p.name for p in images["dlc"]] == ["predsDLC_cnnkit_lips-best.csv", "predsDLC_cnnkit_lips-best.h5"]


def test_dlc_csv_is_byte_for_byte_what_deeplabcut_writes(tmp_path, clip) -> None:
    df = _video_predictions()
    meta = _meta(tmp_path, [clip])
    write_predictions(df, tmp_path / "preds.csv", "dlc", meta)
    # DeepLabCut 3.0.2, pose_estimation_pytorch/apis/videos.py, create_df_from_prediction (single animal)
    pred = np.stack([df[[f"{n}_x", f"{n}_y", f"{n}_likelihood"]].to_numpy() for n in NAMES], axis=1)  # (T, K, 3)
    index = pd.MultiIndex.from_product([[meta.scorer], list(NAMES), ["x", "y", "likelihood"]],
                                       names=["scorer", "bodyparts", "coords"])
    theirs = pd.DataFrame(pred.reshape((len(pred), -1)), columns=index, index=range(len(pred)))
    ours = (tmp_path / "clipDLC_cnnkit_lips-best.csv").read_text()
    assert ours == theirs.to_csv()
    assert ours.splitlines()[:3] == [
        "scorer," + ",".join([meta.scorer] * 9), "bodyparts," + ",".join(n for n in NAMES for _ in range(3)),
        "coords," + ",".join(["x", "y", "likelihood"] * 3)]
    assert ours.splitlines()[3 + 7].split(",")[1:3] == ["", ""]  # frame 7's nose: empty cells (NaN)
    h5 = pd.read_hdf(tmp_path / "clipDLC_cnnkit_lips-best.h5", key="df_with_missing")
    pd.testing.assert_frame_equal(h5, theirs, check_index_type=False)


@pytest.mark.parametrize("suffix", [".csv", ".h5"])
def test_movement_loads_the_dlc_files_with_values_names_and_nans(tmp_path, clip, suffix) -> None:
    load_poses = pytest.importorskip("movement.io.load_poses")
    df = _video_predictions()
    write_predictions(df, tmp_path / "preds.csv", "dlc", _meta(tmp_path, [clip]))
    path = tmp_path / f"clipDLC_cnnkit_lips-best{suffix}"
    ds = load_poses.from_dlc_file(path, fps=30)
    assert ds.keypoints.values.tolist() == list(NAMES)
    assert ds.individuals.size == 1 and ds.position.shape == (N, 2, len(NAMES), 1)
    np.testing.assert_allclose(ds.position.values[..., 0], _positions(df), equal_nan=True)
    likelihood = np.stack([df[f"{n}_likelihood"] for n in NAMES], axis=-1)
    np.testing.assert_allclose(ds.confidence.values[..., 0], likelihood, equal_nan=True)
    assert np.isnan(ds.position.values[7, :, 0, 0]).all() and np.isnan(ds.confidence.values[3, 1, 0])
    np.testing.assert_allclose(ds.time.values, np.arange(N) / 30)  # movement: frame / fps


def test_napari_deeplabcut_reader_steps_on_our_h5(tmp_path, clip) -> None:
    """napari-deeplabcut 0.4.0 (core/io.py, read_hdf_single) opens *.h5: key df_with_missing, a 'scorer'
    level it drops, an 'individuals' level it inserts, then stacks to one row per (frame, body part).
    napari itself (Qt) is not installed here; these are its reader's own pandas steps on our file."""
    write_predictions(_video_predictions(), tmp_path / "preds.csv", "dlc", _meta(tmp_path, [clip]))
    temp = pd.read_hdf(tmp_path / "clipDLC_cnnkit_lips-best.h5", key="df_with_missing")
    assert list(temp.columns.names) == ["scorer", "bodyparts", "coords"]
    temp = temp.droplevel("scorer", axis=1)
    cols = temp.columns.to_frame()
    cols.insert(0, "individuals", "")
    temp.columns = pd.MultiIndex.from_frame(cols)
    df = temp.stack(["individuals", "bodyparts"], future_stack=True).reset_index()
    assert pd.api.types.is_numeric_dtype(df["level_0"])  # frame numbers: napari's frame axis
    assert len(df) == N * len(NAMES) and {"x", "y", "likelihood"} <= set(df.columns)


def test_dlc_for_images_indexes_rows_by_image_path(tmp_path) -> None:
    load_poses = pytest.importorskip("movement.io.load_poses")
    df = _video_predictions(8).drop(columns=["frame", "time_s"])
    df.insert(0, "image", [f"/data/img{i}.png" for i in range(8)])
    written = write_predictions(df, tmp_path / "preds.csv", ["csv", "dlc"], _meta(tmp_path))
    assert [p.name for p in written] == ["preds.csv", "predsDLC_cnnkit_lips-best.csv", "predsDLC_cnnkit_lips-best.h5"]
    csv = pd.read_csv(written[1], header=[0, 1, 2], index_col=0)
    assert csv.index.tolist() == df["image"].tolist()
    np.testing.assert_allclose(csv.to_numpy(), dlc_frame(df, _meta(tmp_path)).to_numpy(), equal_nan=True)
    ds = load_poses.from_dlc_file(written[2])  # movement reads the .h5 whatever its index
    np.testing.assert_allclose(ds.position.values[..., 0], _positions(df), equal_nan=True)


def test_nwb_holds_points_confidence_times_skeleton_and_settings(tmp_path, clip) -> None:
    pynwb = pytest.importorskip("pynwb")
    pytest.importorskip("ndx_pose")
    df = _video_predictions()
    meta = _meta(tmp_path, [clip])
    (written,) = write_predictions(df, tmp_path / "out" / "preds.csv", "nwb", meta)
    assert written == tmp_path / "out" / "clip_cnnkit_lips-best.nwb"
    with pynwb.NWBHDF5IO(str(written), mode="r") as io:
        nwb = io.read()
        pose = nwb.processing["behavior"]["PoseEstimation"]
        assert sorted(pose.pose_estimation_series) == sorted(NAMES)  # NWB keeps them by name
        assert pose.source_software == "cnnkit" and pose.source_software_version
        assert list(pose.skeleton.nodes[:]) == list(NAMES)  # the model's order
        assert str(meta.model) in pose.description and "views: auto" in pose.description
        assert "size: 48x32" in pose.description
        for name in NAMES:
            s = pose.pose_estimation_series[name]
            np.testing.assert_allclose(s.data[:], df[[f"{name}_x", f"{name}_y"]].to_numpy(), equal_nan=True)
            np.testing.assert_allclose(s.confidence[:], df[f"{name}_likelihood"], equal_nan=True)
            np.testing.assert_allclose(s.timestamps[:], df["time_s"])
            assert s.unit == "pixels"
        video = pose.source_video
        assert list(video.external_file[:]) == ["../clip.mp4"] and list(video.dimension[:]) == [96, 64]


def test_movement_loads_the_nwb_file(tmp_path, clip) -> None:
    load_poses = pytest.importorskip("movement.io.load_poses")
    df = _video_predictions()
    (written,) = write_predictions(df, tmp_path / "preds.csv", "nwb", _meta(tmp_path, [clip]))
    ds = load_poses.from_nwb_file(written)
    assert sorted(ds.keypoints.values.tolist()) == sorted(NAMES) and ds.source_software == "cnnkit"
    ds = ds.sel(keypoints=list(NAMES))  # movement lists NWB's series by name
    np.testing.assert_allclose(ds.position.values[..., 0], _positions(df), equal_nan=True)


def test_several_videos_write_one_file_each(tmp_path, index_video) -> None:
    a, b = index_video(tmp_path / "a.mp4", 5), index_video(tmp_path / "b.mp4", 3)
    df = pd.concat([_video_predictions(5).assign(video=str(a)), _video_predictions(3, seed=1).assign(video=str(b))])
    written = write_predictions(df, tmp_path / "preds.csv", "dlc", _meta(tmp_path, [a, b]))
    assert [p.name for p in written] == ["aDLC_cnnkit_lips-best.csv", "aDLC_cnnkit_lips-best.h5",
                                         "bDLC_cnnkit_lips-best.csv", "bDLC_cnnkit_lips-best.h5"]
    second = pd.read_hdf(written[3], key="df_with_missing")
    np.testing.assert_allclose(second.to_numpy(), dlc_frame(_video_predictions(3, seed=1), _meta(tmp_path)).to_numpy(),
                               equal_nan=True)


def test_formats_that_do_not_apply_are_refused_before_any_work(tmp_path, clip, index_video) -> None:
    with pytest.raises(ConfigError, match="nwb is for videos"):
        check_outputs(tmp_path / "p.csv", "csv,nwb", _meta(tmp_path))
    with pytest.raises(ConfigError, match=r"unknown format 'dcl'\. Did you mean 'dlc'\?"):
        check_outputs(tmp_path / "p.csv", "csv,dcl", _meta(tmp_path))
    classes = PredictionMeta((), tmp_path / "m.safetensors", (clip,))
    with pytest.raises(ConfigError, match="need a landmark model"):
        check_outputs(tmp_path / "p.csv", "dlc", classes)
    other = index_video(tmp_path / "sub" / "clip.mp4", 2) if (tmp_path / "sub").mkdir() is None else None
    with pytest.raises(ConfigError, match="share the name 'clip'"):
        check_outputs(tmp_path / "p.csv", "dlc", _meta(tmp_path, [clip, other]))
    assert check_outputs(tmp_path / "p.csv", "csv", _meta(tmp_path, [clip, other])) == ("csv",)


def test_a_users_file_is_never_replaced_but_our_own_outputs_are(tmp_path, clip) -> None:
    meta, out = _meta(tmp_path, [clip]), tmp_path / "preds.csv"
    df = _video_predictions()
    first = write_predictions(df, out, "csv,dlc,nwb", meta)
    again = write_predictions(df.assign(nose_x=1.0), out, "csv,dlc,nwb", meta)  # a re-run replaces its own files
    assert again == first and pd.read_csv(out)["nose_x"].eq(1.0).all()
    labels = tmp_path / "clipDLC_cnnkit_lips-best.csv"  # DeepLabCut labels (no likelihood) in the way
    labels.write_text("scorer,me,me\nbodyparts,nose,nose\ncoords,x,y\nlabeled-data/v/img0.png,1,2\n")
    with pytest.raises(DataError, match="holds annotations for"):
        check_outputs(out, "dlc", meta)
    assert labels.read_text().startswith("scorer,me")
    foreign = tmp_path / "clip_cnnkit_lips-best.nwb"
    foreign.write_bytes(b"someone else's session file")
    with pytest.raises(DataError, match="not a prediction file cnnkit wrote"):
        check_outputs(out, "nwb", meta)
    assert foreign.read_bytes() == b"someone else's session file"


def test_missing_optional_packages_are_named_in_one_line(tmp_path, clip, monkeypatch) -> None:
    import importlib.util

    from cnnkit.infer import formats

    real = importlib.util.find_spec
    monkeypatch.setattr(formats.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("pynwb", "tables") else real(name, *a))
    with pytest.raises(ConfigError, match=r"--format nwb needs pynwb: pip install 'cnnkit\[formats\]'"):
        check_outputs(tmp_path / "p.csv", "nwb", _meta(tmp_path, [clip]))
    written = write_predictions(_video_predictions(), tmp_path / "p.csv", "dlc", _meta(tmp_path, [clip]))
    assert [p.suffix for p in written] == [".csv"]  # without PyTables: the CSV only (a warning says so)


def _tiny_model(tmp_path: Path) -> Path:
    from cnnkit.io.checkpoint import save_model
    from cnnkit.model.builder import build_model

    model = build_model([["conv", {"filter_size": 1, "layer_depth": 3}]], size=(48, 32), channels=3,
                        outputs=2 * len(NAMES), head="gap")
    meta = {"task": "landmarks", "landmarks": list(NAMES), "classes": [], "size": [48, 32], "channels": 3,
            "normalisation": {"mean": [0.0] * 3, "std": [1.0] * 3}, "grayscale": False, "letterbox": False,
            "flip_pairs": []}
    (tmp_path / "runs" / "lips").mkdir(parents=True)
    return save_model(tmp_path / "runs" / "lips" / "best.safetensors", model, meta)


def test_cli_predict_format_writes_each_layout_from_one_run(tmp_path, clip, capsys) -> None:
    pytest.importorskip("pynwb")
    from cnnkit.cli import main

    ckpt = _tiny_model(tmp_path)
    out = tmp_path / "preds" / "clip.csv"
    assert main(["predict", str(ckpt), str(clip), "--out", str(out), "--format", "csv,dlc,nwb", "--device", "cpu",
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    ours = pd.read_csv(out)
    dlc = pd.read_csv(out.parent / "clipDLC_cnnkit_lips-best.csv", header=[0, 1, 2], index_col=0)
    assert dlc.index.tolist() == ours["frame"].tolist() == list(range(N))
    np.testing.assert_allclose(dlc.xs("tail", axis=1, level="bodyparts").to_numpy(),
                               ours[["tail_x", "tail_y", "tail_likelihood"]].to_numpy())
    assert f"{N} predictions -> {out.parent / 'clip_cnnkit_lips-best.nwb'}" in printed
    import pynwb

    with pynwb.NWBHDF5IO(str(out.parent / "clip_cnnkit_lips-best.nwb"), mode="r") as io:
        series = io.read().processing["behavior"]["PoseEstimation"].pose_estimation_series["nose"]
        np.testing.assert_allclose(series.timestamps[:], ours["time_s"])
        np.testing.assert_allclose(series.data[:], ours[["nose_x", "nose_y"]].to_numpy())


def test_cli_refuses_nwb_for_images_in_one_line(tmp_path, index_frame, capsys) -> None:
    from PIL import Image

    from cnnkit.cli import main

    ckpt = _tiny_model(tmp_path)
    Image.fromarray(index_frame(1)).save(tmp_path / "a.png")
    assert main(["predict", str(ckpt), str(tmp_path / "a.png"), "--out", str(tmp_path / "p.csv"),
                 "--format", "nwb"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nwb is for videos" in err[0]
    assert not (tmp_path / "p.csv").exists()


def test_cli_predict_smooth_writes_the_smoothed_table_beside_the_raw_one(tmp_path, clip, capsys) -> None:
    from cnnkit import smooth
    from cnnkit.cli import main

    ckpt = _tiny_model(tmp_path)
    out = tmp_path / "preds" / "clip.csv"
    assert main(["predict", str(ckpt), str(clip), "--out", str(out), "--smooth", "--device", "cpu", "--quiet"]) == 0
    raw, smoothed = pd.read_csv(out), pd.read_csv(out.parent / "clip_smoothed.csv")
    assert "clip_smoothed.csv" in capsys.readouterr().out
    assert smoothed["frame"].tolist() == raw["frame"].tolist() == list(range(N))
    # one model: the median filter of 5 frames, the same table `cnnkit smooth` gives on the raw CSV
    pd.testing.assert_frame_equal(smoothed, smooth(out, method="median").table)
    np.testing.assert_allclose(smoothed["nose_x_median"], raw["nose_x"])  # the raw position is carried
    settings = (out.parent / "clip_smoothed.csv.json").read_text()
    assert '"method": "median"' in settings and '"window": 5' in settings
    # a re-run replaces its own smoothed table; a user's file of that name is never replaced
    assert main(["predict", str(ckpt), str(clip), "--out", str(out), "--smooth", "savgol", "--device", "cpu",
                 "-q"]) == 0
    assert '"method": "savgol"' in (out.parent / "clip_smoothed.csv.json").read_text()
    for name in ("clip_smoothed.csv", "clip_smoothed.csv.json"):
        (out.parent / name).unlink()
    (out.parent / "clip_smoothed.csv").write_text("frame,nose_x\n0,1\n")  # someone's own work
    capsys.readouterr()
    assert main(["predict", str(ckpt), str(clip), "--out", str(out), "--smooth", "--device", "cpu", "-q"]) == 2
    assert "was not written by cnnkit smooth" in capsys.readouterr().err
    assert (out.parent / "clip_smoothed.csv").read_text() == "frame,nose_x\n0,1\n"


def test_predict_smooth_is_for_videos_and_eks_needs_an_ensemble(tmp_path, clip, index_frame, capsys) -> None:
    from PIL import Image

    from cnnkit.cli import main

    ckpt = _tiny_model(tmp_path)
    Image.fromarray(index_frame(1)).save(tmp_path / "a.png")
    assert main(["predict", str(ckpt), str(tmp_path / "a.png"), "--out", str(tmp_path / "p.csv"), "--smooth"]) == 2
    assert "--smooth is for a landmark model's predictions on videos" in capsys.readouterr().err
    assert main(["predict", str(ckpt), str(clip), "--out", str(tmp_path / "v.csv"), "--smooth", "eks",
                 "--device", "cpu", "-q"]) == 2
    assert "EKS needs the predictions of 2 or more models" in capsys.readouterr().err
