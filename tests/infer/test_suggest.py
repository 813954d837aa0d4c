"""suggest: doubt signals, ranking, gaps in videos, the review project, and predict --via's guard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cnnkit import read_annotations, suggest, write_csv
from cnnkit.errors import DataError
from cnnkit.infer.suggest import pick, rank, trajectory_doubt
from cnnkit.io.checkpoint import FORMAT_VERSION, save_model
from cnnkit.model.builder import build_model

NAMES = ["left", "right"]
CONST = [0.25, 0.75, 0.5, 0.125]  # x_left, x_right, y_left, y_right (normalised)


def _asymmetric_model(tmp_path: Path) -> Path:
    """Constant output whose mirror image disagrees: y of left and right differ, and flipping swaps them,
    so the flip disagreement is |0.5 - 0.125| x the image height."""
    size = (32, 24)
    model = build_model([["conv", {"filter_size": 3, "layer_depth": 4}], ["relu"]], size=size, channels=3,
                        outputs=4, head="gap")
    fc = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        fc.weight.zero_()
        fc.bias.copy_(torch.tensor(CONST))
    meta = {"format_version": FORMAT_VERSION, "task": "landmarks", "landmarks": NAMES, "classes": [],
            "normalisation": {"mean": [0.5] * 3, "std": [0.25] * 3}, "size": list(size), "channels": 3,
            "grayscale": False, "letterbox": False, "flip_pairs": [["left", "right"]],
            "mean_shape_norm": [[0.5, 0.5], [0.5, 0.5]]}
    return save_model(tmp_path / "asym.safetensors", model, meta)


def _images(folder: Path, heights: list[int]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, h in enumerate(heights):
        paths.append(folder / f"img{i}.png")
        Image.fromarray(np.full((h, 40, 3), 30 * i, np.uint8)).save(paths[-1])
    return paths


def test_trajectory_doubt_is_deeplabcuts_jump_and_fitting() -> None:
    xs = np.arange(8) * 3.0  # steady motion, 3 px per frame; frame 4 glitches 40 px to the right
    frames = pd.DataFrame({"left_x": xs, "left_y": np.zeros(8), "left_likelihood": [0.9] * 7 + [0.001]})
    frames.loc[4, "left_x"] += 40.0
    doubt = trajectory_doubt(frames, ["left"])
    assert doubt["doubt_jump"][0] == 0.0 and doubt["doubt_jump"][1] == pytest.approx(3.0)
    assert doubt["doubt_jump"][4] == pytest.approx(43.0) and doubt["doubt_jump"][5] == pytest.approx(37.0)
    # the running median (5 frames) ignores the glitch: frame 4 (x 52) is 37 px off the median of 6, 9, 52, 15, 18
    assert doubt["doubt_fitting"][4] == pytest.approx(37.0) and doubt["doubt_fitting"][2] == pytest.approx(0.0)
    assert doubt["fitting"].tolist() == [False] * 4 + [True] + [False] * 3
    assert doubt["jump"].tolist() == [False] * 4 + [True, True] + [False] * 2
    assert doubt["uncertain"].tolist() == [False] * 7 + [True]  # DeepLabCut's p < 0.01
    assert doubt["n_flags"][4] == 2


def test_rank_prefers_the_calibrated_uncertainty_over_the_likelihood() -> None:
    df = pd.DataFrame({"left_likelihood": [0.9, 0.1, 0.5], "left_uncertainty": [12.0, 2.0, 5.0],
                       "right_likelihood": [0.9, 0.9, 0.9], "right_uncertainty": [1.0, 1.0, 30.0]})
    ranked = rank(df, ["left", "right"])
    assert ranked.index.tolist() == [2, 0, 1]  # by the largest expected error, not by the likelihood
    assert ranked["doubt_uncertainty"].tolist() == [30.0, 12.0, 2.0]
    assert ranked["doubt_likelihood"].tolist() == pytest.approx([0.5, 0.1, 0.9])  # shown, not ranked by


def test_rank_mixes_signals_by_percentile_and_pick_keeps_gaps() -> None:
    df = pd.DataFrame({"video": ["v"] * 6, "frame": range(6), "left_likelihood": [0.9, 0.2, 0.25, 0.8, 0.7, 0.6],
                       "right_likelihood": [0.9] * 6, "doubt_jump": [0.0, 5.0, 4.0, 0.0, 0.0, 9.0]})
    ranked = rank(df, ["left", "right"])
    # mean percentile rank: frame 1 tops the likelihood doubt and is second in jumps; frame 5 tops jumps
    assert ranked["frame"].tolist()[:3] == [1, 5, 2]
    assert ranked["score"].tolist()[0] == pytest.approx((6 / 6 + 5 / 6) / 2)
    assert ranked["doubt_likelihood"].tolist()[0] == pytest.approx(0.8)
    assert pick(ranked, 3, min_gap=2)["frame"].tolist() == [1, 5, 3]  # 2 is next to 1


def test_suggest_images_ranks_writes_review_and_excludes(tmp_path: Path) -> None:
    model = _asymmetric_model(tmp_path)
    paths = _images(tmp_path / "imgs", [50, 480, 30, 201])
    top = suggest(model, tmp_path / "imgs", n=2, via=tmp_path / "review.json", device="cpu")
    assert top["image"].tolist() == [str(paths[1]), str(paths[3])]  # flip disagreement grows with height
    assert top["doubt_flip"].tolist() == pytest.approx([0.375 * 480, 0.375 * 201], rel=1e-4)
    back = read_annotations(tmp_path / "review.json")
    assert back.images == top["image"].tolist()
    np.testing.assert_allclose(back.points()[:, 0], top[["left_x", "left_y"]].to_numpy(), rtol=1e-6)
    labels = write_csv(back, tmp_path / "labels.csv")  # pretend those two are now labelled
    again = suggest(model, tmp_path / "imgs", n=2, exclude=labels, device="cpu")
    assert again["image"].tolist() == [str(paths[0]), str(paths[2])]


def test_review_project_is_never_replaced(tmp_path: Path) -> None:
    model = _asymmetric_model(tmp_path)
    _images(tmp_path / "imgs", [50, 60])
    suggest(model, tmp_path / "imgs", n=1, via=tmp_path / "review.json", device="cpu")
    before = (tmp_path / "review.json").read_bytes()
    with pytest.raises(DataError, match="already exists and holds annotations"):
        suggest(model, tmp_path / "imgs", n=1, via=tmp_path / "review.json", device="cpu")
    assert (tmp_path / "review.json").read_bytes() == before


def test_predict_via_refuses_a_labelled_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cnnkit.cli import main

    model = _asymmetric_model(tmp_path)
    _images(tmp_path / "imgs", [50, 60])
    via = tmp_path / "review.json"
    assert main(["predict", str(model), str(tmp_path / "imgs"), "--out", str(tmp_path / "p.csv"),
                 "--via", str(via), "--device", "cpu"]) == 0
    data = json.loads(via.read_text())
    before = via.read_bytes()
    assert sum(len(e["regions"]) for e in data["_via_img_metadata"].values()) == 4
    assert main(["predict", str(model), str(tmp_path / "imgs"), "--out", str(tmp_path / "q.csv"),
                 "--via", str(via), "--device", "cpu"]) == 2
    assert via.read_bytes() == before and "already exists and holds annotations for 2" in capsys.readouterr().err


def test_cli_suggest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cnnkit.cli import main

    model = _asymmetric_model(tmp_path)
    _images(tmp_path / "imgs", [50, 480, 30])
    assert main(["suggest", str(model), str(tmp_path / "imgs"), "--n", "1", "--via", str(tmp_path / "r.json"),
                 "--out", str(tmp_path / "s.csv"), "--device", "cpu"]) == 0
    assert pd.read_csv(tmp_path / "s.csv")["image"].str.endswith("img1.png").tolist() == [True]
    assert "1 suggestions" in capsys.readouterr().out


def test_suggest_video_frames_saved_by_index_with_gaps(tmp_path: Path, index_video, read_frame_index) -> None:
    """A constant model ties every frame: the stable order and the gap decide; images and a video mix."""
    model = _asymmetric_model(tmp_path)
    video = index_video(tmp_path / "clip.mp4", 40)
    imgs = _images(tmp_path / "imgs", [480])  # its flip disagreement (0.375 x 480 px) beats the frames' (x 64)
    top = suggest(model, [video, *imgs], n=4, min_gap=10, via=tmp_path / "review" / "review.json", device="cpu")
    frames = top.loc[top["video"].notna(), "frame"].astype(int).tolist()
    assert len(top) == 4 and top["image"].tolist()[0] == str(imgs[0]) and frames == [0, 10, 20]
    saved = [Path(p) for p in top["image"] if Path(p).parent == (tmp_path / "review").resolve()]
    assert len(saved) == len(frames) >= 3
    for path, frame in zip(saved, frames, strict=True):
        assert path.name == f"clip_frame{frame:06d}.png"
        assert read_frame_index(np.asarray(Image.open(path))) == frame  # the frame the row describes
    back = read_annotations(tmp_path / "review" / "review.json")
    assert back.images == top["image"].tolist()
    np.testing.assert_allclose(back.points()[:, 0, 0], top["left_x"].to_numpy(), rtol=1e-6)
