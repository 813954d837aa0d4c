"""predict on videos: one row per decoded frame, frame i = the i-th frame, the same numbers as images."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cnnkit.cli import main
from cnnkit.data.sources import read_annotations
from cnnkit.data.video import iter_frames
from cnnkit.errors import DataError
from cnnkit.infer.predict import Predictor, predict
from cnnkit.infer.video_predict import predict_frames
from cnnkit.io.checkpoint import save_model
from cnnkit.model.builder import build_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from brightness_model import brightness_model, colour_model  # noqa: E402

VFR_MS = np.cumsum(np.random.default_rng(1).integers(5, 80, 24)).tolist()
LIPS = ["leftLip", "rightLip", "topleftinner", "bottomleftinner", "topmidinner", "bottommidinner",
        "toprightinner", "bottomrightinner"]


def _meta(names, size, pairs=()):
    return {"task": "landmarks", "landmarks": list(names), "classes": [], "size": list(size), "channels": 3,
            "normalisation": {"mean": [0.0] * 3, "std": [1.0] * 3}, "grayscale": False, "letterbox": False,
            "flip_pairs": [list(p) for p in pairs]}


def _brightness_model(tmp_path: Path) -> Path:
    """One landmark: x = mean red level of the frame, y = mean green level (as fractions of the size).

    Every index frame differs in its red texture, so a row holding a neighbour's frame shows.
    """
    return brightness_model(tmp_path / "bright.safetensors")


def _png_predictions(tmp_path: Path, ckpt: Path, index_frame, n: int) -> np.ndarray:
    folder = tmp_path / "pngs"
    folder.mkdir()
    paths = []
    for i in range(n):
        paths.append(folder / f"f{i:03d}.png")
        Image.fromarray(index_frame(i)).save(paths[-1])
    return predict(ckpt, paths, device="cpu")[["p_x", "p_y"]].to_numpy()


@pytest.mark.parametrize("name, pts_ms", [("clip.mp4", None), ("vfr.mkv", VFR_MS)])
def test_frame_i_of_the_table_is_the_ith_frame(tmp_path, index_video, index_frame, name, pts_ms) -> None:
    n = len(VFR_MS)
    ckpt = _brightness_model(tmp_path)
    video = index_video(tmp_path / name, n, pts_ms=pts_ms)
    preds = predict(ckpt, video, device="cpu", batch_size=5)  # batches that do not divide the frames
    assert list(preds.columns) == ["frame", "time_s", "p_x", "p_y", "p_likelihood"]
    assert preds["frame"].tolist() == list(range(n))  # one row per decoded frame, none dropped
    expected_t = np.arange(n) / 30 if pts_ms is None else (np.asarray(pts_ms) - pts_ms[0]) / 1000
    np.testing.assert_allclose(preds["time_s"], expected_t, atol=1e-3)
    png = _png_predictions(tmp_path, ckpt, index_frame, n)
    dist = np.linalg.norm(preds[["p_x", "p_y"]].to_numpy()[:, None] - png[None], axis=-1)  # (video row, png)
    assert dist.argmin(axis=1).tolist() == list(range(n))
    apart = np.linalg.norm(png[:, None] - png[None], axis=-1) + np.eye(n) * 1e9
    assert np.diag(dist).max() < 0.5 * apart.min()  # H.264 loss stays below the gap between frames


def test_several_videos_and_frames_in_memory(tmp_path, index_video) -> None:
    ckpt = _brightness_model(tmp_path)
    a, b = index_video(tmp_path / "a.mp4", 7), index_video(tmp_path / "b.avi", 5, codec="mpeg4")
    both = predict(ckpt, [a, b], device="cpu", batch_size=4)
    assert both["video"].tolist() == [str(a)] * 7 + [str(b)] * 5
    assert both["frame"].tolist() == list(range(7)) + list(range(5))
    # the same frames already decoded give the same numbers (the benchmark's in-memory side)
    mem = predict_frames(Predictor.from_checkpoint(ckpt, device="cpu"), list(iter_frames(a)), batch_size=3)
    np.testing.assert_allclose(mem["p_x"], both["p_x"][:7], rtol=1e-6)


def test_video_input_errors(tmp_path, index_video) -> None:
    ckpt = _brightness_model(tmp_path)
    with pytest.raises(DataError, match=r"video\(s\) not found.*gone\.mp4"):
        predict(ckpt, tmp_path / "gone.mp4", device="cpu")
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    with pytest.raises(DataError, match="videos and other inputs"):
        predict(ckpt, [index_video(tmp_path / "a.mp4", 3), img], device="cpu")


def test_cli_video_csv_and_labelled_video(tmp_path, index_video, capsys) -> None:
    ckpt = _brightness_model(tmp_path)
    video = index_video(tmp_path / "clip.mp4", 9)
    out, labelled = tmp_path / "clip.csv", tmp_path / "clip_labeled.mp4"
    assert main(["-q", "predict", str(ckpt), str(video), "--out", str(out), "--labeled-video", str(labelled),
                 "--device", "cpu", "--batch-size", "4"]) == 0
    csv = pd.read_csv(out)
    assert csv["frame"].tolist() == list(range(9)) and "p_likelihood" in csv.columns
    frames = list(iter_frames(labelled))
    assert len(frames) == 9 and frames[0].image.shape == (64, 96, 3)
    assert main(["-q", "predict", str(ckpt), str(tmp_path / "clip.csv"), "--labeled-video", "x.mp4"]) == 2
    assert "--labeled-video takes videos" in capsys.readouterr().err


def test_lips_video_frames_give_the_png_errors(tmp_path, lips_dir, lips_video_dir) -> None:
    """lips-via's labelled frames through the video path: same points, so the same errors, as the PNGs."""
    torch.manual_seed(0)
    model = build_model([["conv", {"layer_depth": 8, "strides": 2}], ["relu"],
                         ["res_33", {"depths": 8, "stride": 2}]], size=(160, 120), channels=3, outputs=16,
                        head={"type": "heatmap", "width": 8, "stride": 2})
    with torch.no_grad():
        model.head_net.to_maps.weight.normal_(std=1.0)  # an untrained head that still looks at the image
    ckpt = save_model(tmp_path / "lips.safetensors", model, _meta(LIPS, (160, 120)))
    table = read_annotations(lips_dir / "via_project.json")
    rows = table.df[table.df["image"].str.contains(r"002_cal/img0(?:18)\.png|008_xaud_TESTSET/img041\.png")]
    assert len(rows) == 2
    predictor = Predictor.from_checkpoint(ckpt, device="cpu")
    for (video, frame), (_, row) in zip([("002_cal", 18), ("008_xaud", 41)], rows.sort_values("image").iterrows(),
                                        strict=True):
        by_video = predict_frames(predictor, iter_frames(lips_video_dir / f"{video}.avi",
                                                         indices=[frame - 1, frame])).set_index("frame")
        by_png = predict(ckpt, [row["image"]], device="cpu")
        cols = [f"{n}_{c}" for n in LIPS for c in ("x", "y")]
        truth = row[cols].to_numpy(np.float64).reshape(-1, 2)
        err_video = np.hypot(*(by_video.loc[frame, cols].to_numpy(np.float64).reshape(-1, 2) - truth).T)
        err_png = np.hypot(*(by_png[cols].to_numpy(np.float64).reshape(-1, 2) - truth).T)
        np.testing.assert_allclose(err_video, err_png, atol=1e-4)
        other = by_video.loc[frame - 1, cols].to_numpy(np.float64)  # the neighbour frame predicts elsewhere
        assert np.abs(other - by_png[cols].to_numpy(np.float64)).max() > 1e-3


def test_classifier_on_a_video(tmp_path, index_video) -> None:
    """Frames with more red texture lean to 'red': a class per frame, in frame order."""
    model = colour_model(torch.tensor([[0.0, 0.0, 0.0], [50.0, -50.0, 0.0]]))  # 'red' scores red over green
    meta = {**_meta([], (48, 32)), "task": "classes", "landmarks": [], "classes": ["plain", "red"]}
    ckpt = save_model(tmp_path / "cls.safetensors", model, meta)
    preds = predict(ckpt, index_video(tmp_path / "clip.mp4", 6), device="cpu", batch_size=4)
    assert list(preds.columns) == ["frame", "time_s", "label", "confidence", "prob_plain", "prob_red"]
    assert preds["frame"].tolist() == list(range(6))
    assert preds["label"].tolist() == ["plain"] + ["red"] * 5  # frame 0: no red texture, no blocks


def test_cli_labelled_video_with_smooth_draws_the_smoothed_points(tmp_path, index_video) -> None:
    from cnnkit.viz.video import write_labeled_video

    ckpt = _brightness_model(tmp_path)
    video = index_video(tmp_path / "clip.mp4", 9)
    common = ["-q", "predict", str(ckpt), str(video), "--device", "cpu", "--batch-size", "4"]
    assert main([*common, "--out", str(tmp_path / "raw.csv"), "--labeled-video", str(tmp_path / "raw.mp4")]) == 0
    assert main([*common, "--out", str(tmp_path / "s.csv"), "--smooth", "median",
                 "--labeled-video", str(tmp_path / "smoothed.mp4")]) == 0
    smoothed = pd.read_csv(tmp_path / "s_smoothed.csv")
    raw = pd.read_csv(tmp_path / "s.csv")
    assert not np.allclose(raw["p_x"], smoothed["p_x"])  # the filter moved points: the two drawings must differ
    expected = write_labeled_video(iter_frames(video), smoothed, tmp_path / "expected.mp4", fps=25.0)

    def pixels(path: Path) -> np.ndarray:
        return np.stack([f.image for f in iter_frames(path)]).astype(int)

    drawn = pixels(tmp_path / "smoothed.mp4")
    assert len(drawn) == 9
    assert np.abs(drawn - pixels(expected)).max() <= 2  # the smoothed points, as the Python API draws them
    assert np.abs(drawn - pixels(tmp_path / "raw.mp4")).max() > 50  # not the raw ones
