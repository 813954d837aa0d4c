"""cnnkit.data.video: frame i is the i-th decoded frame, times, counts, errors; the real lips videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.data.video import VIDEO_SUFFIXES, is_video, iter_frames, video_info
from cnnkit.errors import DataError

# irregular gaps (5..79 ms) between frames: a variable-frame-rate file
VFR_MS = np.cumsum(np.random.default_rng(0).integers(5, 80, 30)).tolist()


@pytest.mark.parametrize("name, codec", [("a.mp4", "libx264"), ("b.avi", "libx264"), ("c.mkv", "libx264"),
                                         ("d.mov", "libx264"), ("e.avi", "mpeg4")])
def test_frame_i_is_the_ith_frame(tmp_path: Path, index_video, read_frame_index, name: str, codec: str) -> None:
    path = index_video(tmp_path / name, 30, codec=codec)
    frames = list(iter_frames(path))
    assert [f.index for f in frames] == list(range(30))
    assert [read_frame_index(f.image) for f in frames] == list(range(30))
    assert frames[0].image.shape == (64, 96, 3) and frames[0].image.dtype == np.uint8
    # constant 30 frames/s; in the AVI with B-frames the decoder's times come scrambled and are put back
    assert np.allclose([f.time_s for f in frames], np.arange(30) / 30, atol=1e-3)
    info = video_info(path)
    assert (info.frames, info.width, info.height) == (30, 96, 64)
    assert info.fps == pytest.approx(30, rel=0.02)


@pytest.mark.parametrize("name", ["vfr.mp4", "vfr.mkv"])
def test_variable_frame_rate(tmp_path: Path, index_video, read_frame_index, name: str) -> None:
    path = index_video(tmp_path / name, len(VFR_MS), pts_ms=VFR_MS)
    frames = list(iter_frames(path))
    assert [read_frame_index(f.image) for f in frames] == list(range(len(VFR_MS)))
    expected = (np.asarray(VFR_MS) - VFR_MS[0]) / 1000
    assert np.allclose([f.time_s for f in frames], expected, atol=1e-6)
    assert video_info(path).frames == len(VFR_MS)


def test_indices_pick_frames_in_decode_order_and_stop(tmp_path: Path, index_video, read_frame_index) -> None:
    path = index_video(tmp_path / "a.mp4", 40)
    got = list(iter_frames(path, indices=[17, 3, 3, 0, 39]))
    assert [f.index for f in got] == [0, 3, 17, 39]
    assert [read_frame_index(f.image) for f in got] == [0, 3, 17, 39]
    with pytest.raises(DataError, match=r"a\.mp4: asked for frame 40, but the video has 40 frames"):
        list(iter_frames(path, indices=[2, 40]))
    with pytest.raises(DataError, match="count from 0"):
        list(iter_frames(path, indices=[-1]))


def test_count_false_trusts_the_container(tmp_path: Path, index_video) -> None:
    assert video_info(index_video(tmp_path / "a.mp4", 12), count=False).frames == 12
    assert video_info(index_video(tmp_path / "a.mkv", 12), count=False).frames == 0  # Matroska states none
    assert video_info(tmp_path / "a.mkv").frames == 12


def test_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nothere\.mp4: no such video file"):
        video_info(tmp_path / "nothere.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(DataError, match=r"bad\.mp4: not a readable video"):
        list(iter_frames(bad))


def test_truncated_video_decodes_what_is_there_or_names_the_file(tmp_path: Path, index_video) -> None:
    path = index_video(tmp_path / "a.mkv", 30)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    try:
        frames = list(iter_frames(cut))
    except DataError as exc:
        assert "cut.mkv" in str(exc)
    else:
        assert 0 < len(frames) < 30


def test_is_video() -> None:
    assert all(is_video(f"x{s.upper()}") for s in VIDEO_SUFFIXES)
    assert not is_video("x.png") and not is_video("movie.mp4.json")


def test_lips_video_frames_equal_the_labelled_pngs(lips_dir: Path, lips_video_dir: Path) -> None:
    """lips-via's img018.png (002_cal) and img041.png (008_xaud_TESTSET) are those videos' frames."""
    for video, folder, index in [("002_cal", "002_cal", 18), ("008_xaud", "008_xaud_TESTSET", 41)]:
        got = {f.index: f.image for f in iter_frames(lips_video_dir / f"{video}.avi", indices=[index - 1, index])}
        png = np.asarray(Image.open(lips_dir / "images" / folder / f"img{index:03d}.png").convert("RGB"))
        assert np.array_equal(got[index], png)
        assert np.abs(got[index - 1].astype(int) - png).mean() > 0.5  # one frame off is detectable
    frames = list(iter_frames(lips_video_dir / "002_cal.avi", indices=[1]))
    # the AVI states 120 frames/s and holds a frame in every other slot: times step by 2/120 s
    assert frames[0].time_s == pytest.approx(2 * 8321e-6)
