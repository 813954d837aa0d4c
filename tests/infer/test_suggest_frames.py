"""suggest's review frames: never over a file, never through a link, distinct names for same-named videos;
a partial video exits 3 (issue 26)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit import read_annotations, suggest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_suggest import _asymmetric_model  # noqa: E402

import video_damage  # noqa: E402


def test_review_frames_of_same_named_videos_never_replace_each_other(tmp_path: Path, index_video,
                                                                     read_frame_index) -> None:
    model = _asymmetric_model(tmp_path)
    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    v1 = index_video(tmp_path / "d1" / "clip.mp4", 12)
    v2 = index_video(tmp_path / "d2" / "clip.mp4", 12, size=(128, 64))  # another camera: other pictures
    review = tmp_path / "review"
    first = suggest(model, [v1], n=2, min_gap=5, via=review / "one.json", device="cpu")
    saved = {Path(p).name: Path(p).read_bytes() for p in first["image"]}
    assert sorted(saved) == ["clip_frame000000.png", "clip_frame000005.png"]
    second = suggest(model, [v2], n=2, min_gap=5, via=review / "two.json", device="cpu")
    assert {n: (review / n).read_bytes() for n in saved} == saved  # the first review's pictures are untouched
    names = [Path(p).name for p in second["image"]]
    assert names == ["clip-2_frame000000.png", "clip-2_frame000005.png"]
    for name in names:  # each file shows the frame its row describes, from the second video
        image = np.asarray(Image.open(review / name))
        assert image.shape == (64, 128, 3) and read_frame_index(image) == int(name[-10:-4])
    assert read_annotations(review / "one.json").images == [str(review / n) for n in sorted(saved)]


def test_a_planted_link_in_the_review_folder_is_not_followed(tmp_path: Path, index_video) -> None:
    model = _asymmetric_model(tmp_path)
    video = index_video(tmp_path / "clip.mp4", 12)
    review = tmp_path / "review"
    review.mkdir()
    target = tmp_path / "keep.png"
    target.write_bytes(b"keep")
    (review / "clip_frame000000.png").symlink_to(target)
    top = suggest(model, [video], n=1, via=review / "r.json", device="cpu")
    assert target.read_bytes() == b"keep" and Path(top["image"][0]).name == "clip-2_frame000000.png"


def test_cli_suggest_on_a_cut_video_exits_3(tmp_path: Path, lips_video_dir: Path, capsys: pytest.CaptureFixture[str],
                                            caplog: pytest.LogCaptureFixture) -> None:
    from cnnkit.cli import main

    model = _asymmetric_model(tmp_path)
    cut = video_damage.cut_in_half(lips_video_dir / "008_xaud.avi", tmp_path / "cam.avi")
    args = ["suggest", str(model), str(cut), "--n", "2", "--device", "cpu"]
    assert main(["-q", *args]) == 3  # two passes over the video (plain and mirrored): reported once
    assert [r.getMessage() for r in caplog.records if "partial video" in r.getMessage()] == [
        f"{cut}: partial video: 139 frames decoded, 2.30 s of the 4.81 s it declares (578 frames in its header); "
        f"the file ends inside frame 139. Every decoded frame is kept; the file is truncated or damaged."]
    assert "cnnkit suggest: 1 video(s) ended before their declared length" in capsys.readouterr().err
    assert main(["-q", *args, "--no-flip", "--accept-partial"]) == 0
