"""extract_frames: frames chosen uniformly or by k-means, saved by decoded index, a VIA project to label."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cnnkit import extract_frames, read_annotations
from cnnkit.data.frames import choose_frames, kmeans_pick
from cnnkit.errors import DataError

SCENES = [("A", 0, 60), ("B", 60, 65), ("C", 65, 100)]  # B: a rare posture, 5 of 100 frames


def _scene(i: int) -> str:
    return next(name for name, lo, hi in SCENES if lo <= i < hi)


def index_image(i: int) -> np.ndarray:
    """Frame ``i`` with its index as 16 px black/white blocks, as tests/conftest.py (read_frame_index)."""
    img = np.zeros((128, 192, 3), np.uint8)
    for bit in range(12):
        if (i >> bit) & 1:
            r, c = divmod(bit, 6)
            img[r * 16:(r + 1) * 16, c * 16:(c + 1) * 16] = 255
    return img


def _scene_video(path: Path) -> Path:
    """100 index-coded frames (top left) whose lower 3/4 shows one of three scenes."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 192, 128, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 30)
        for i in range(100):
            img = index_image(i)
            img[32:] = {"A": 0, "B": 255, "C": 0}[_scene(i)]
            if _scene(i) == "C":
                img[32:, :96] = 255
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode())
    return path


@pytest.fixture
def scene_video(tmp_path: Path) -> Path:
    return _scene_video(tmp_path / "mouse 1.mp4")


def test_kmeans_finds_the_rare_scene_that_uniform_misses(scene_video: Path) -> None:
    uniform = choose_frames(scene_video, 3, method="uniform")
    assert uniform == [0, 50, 99] and "B" not in {_scene(i) for i in uniform}
    picked = choose_frames(scene_video, 3, method="kmeans")
    assert sorted(_scene(i) for i in picked) == ["A", "B", "C"]
    assert choose_frames(scene_video, 3, method="kmeans", seed=0) == picked  # seeded


def test_frames_project_and_table(scene_video: Path, tmp_path: Path, read_frame_index) -> None:
    out = tmp_path / "label me"
    result = extract_frames(scene_video, out, n=4, method="uniform", landmarks=["nose", "tail"])
    assert result.frames["frame"].tolist() == [0, 33, 66, 99]
    assert result.frames["time_s"].tolist() == pytest.approx([0, 33 / 30, 66 / 30, 99 / 30], abs=1e-6)
    for _, row in result.frames.iterrows():  # the file named frame N shows decoded frame N
        assert Path(row["image"]).name == f"mouse 1_frame{row['frame']:06d}.png"
        assert read_frame_index(np.asarray(Image.open(row["image"]))) == row["frame"]
    assert pd.read_csv(out / "frames.csv")["image"].tolist()[0] == "mouse 1_frame000000.png"
    data = json.loads(result.project.read_text())
    assert list(data["_via_attributes"]["region"]["landmark"]["options"]) == ["nose", "tail"]
    assert data["_via_settings"]["core"]["default_filepath"] == out.resolve().as_uri() + "/"
    assert [e["filename"] for e in data["_via_img_metadata"].values()] == [
        Path(p).name for p in result.frames["image"]]
    back = read_annotations(result.project, unannotated="keep")
    assert back.images == result.frames["image"].tolist()


def test_refuses_to_replace_a_labelled_project(scene_video: Path, tmp_path: Path) -> None:
    result = extract_frames(scene_video, tmp_path / "f", n=2, method="uniform", landmarks=["nose"])
    data = json.loads(result.project.read_text())
    next(iter(data["_via_img_metadata"].values()))["regions"] = [
        {"shape_attributes": {"name": "point", "cx": 3, "cy": 4}, "region_attributes": {"landmark": "nose"}}]
    result.project.write_text(json.dumps(data))
    before = result.project.read_bytes()
    with pytest.raises(DataError, match="already exists and holds annotations for 1"):
        extract_frames(scene_video, tmp_path / "f", n=2, landmarks=["nose"])
    assert result.project.read_bytes() == before


def test_several_videos_short_video_and_same_stems(tmp_path: Path, index_video) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    v1 = index_video(tmp_path / "a" / "clip.mp4", 5)
    v2 = index_video(tmp_path / "b" / "clip.mp4", 12)
    result = extract_frames([v1, v2], tmp_path / "out", n=8, landmarks=["p"])
    names = [Path(p).name for p in result.frames["image"]]
    assert names[:5] == [f"clip_frame{i:06d}.png" for i in range(5)]  # shorter than n: every frame
    assert len(names) == 13 and all(n.startswith("clip-2_") for n in names[5:])


def test_kmeans_pick_distinct_rows_nearest_centres() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(c, 0.1, (n, 2)) for c, n in ((0, 50), (5, 3), (10, 30))])
    picked = kmeans_pick(x, 3)
    assert len(set(picked)) == 3
    assert sorted(np.round(x[picked].mean(axis=1) / 5).astype(int).tolist()) == [0, 1, 2]


def test_cli(scene_video: Path, tmp_path: Path) -> None:
    from cnnkit.cli import main

    assert main(["extract-frames", str(scene_video), "--n", "3", "--out", str(tmp_path / "o"),
                 "--landmarks", "nose,tail"]) == 0
    table = read_annotations(tmp_path / "o" / "via_project.json", unannotated="keep")
    assert sorted(_scene(int(Path(p).stem[-6:])) for p in table.images) == ["A", "B", "C"]
    assert main(["extract-frames", str(scene_video), "--out", str(tmp_path / "p")]) == 2  # no names
