"""cnnkit.data.video: frame i is the i-th decoded frame, times, counts, errors; the real lips videos."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.data.video import (
    VIDEO_SUFFIXES,
    VideoEnd,
    VideoFrames,
    _decoded,
    is_video,
    iter_frames,
    partial_videos,
    video_info,
)
from cnnkit.errors import DataError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import video_damage  # noqa: E402

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


def test_a_cut_mkv_keeps_what_decoded_and_says_so(tmp_path: Path, index_video, read_frame_index) -> None:
    path = index_video(tmp_path / "a.mkv", 30)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    frames = iter_frames(cut)
    got = list(frames)
    assert frames.end is not None and frames.end.decoded == len(got) == 2 and not frames.complete
    # with B-frames the frame before the cut can be lost: the kept ones carry their own times
    shown = [read_frame_index(f.image) for f in got]
    assert shown == [0, 2] and [round(f.time_s * 30) for f in got] == shown


def _decode(path: Path, threads: str) -> tuple[list[int], VideoEnd | None]:
    frames = VideoFrames(_decoded(path, want=None, rgb=True, report=False, threads=threads))
    images = [int(f.image.astype(np.int64).sum() % 1_000_003) for f in frames]  # a checksum per frame
    return images, frames.end


@pytest.mark.parametrize("damage", ["half_avi", "faststart_mp4", "avi_cut_at_a_packet"])
def test_partial_lips_video_keeps_its_frames_the_same_with_and_without_threads(
        tmp_path: Path, lips_video_dir: Path, damage: str) -> None:
    source = lips_video_dir / "002_cal.avi"
    if damage == "half_avi":
        path, decoded, header, reason = (video_damage.cut_in_half(source, tmp_path / "cam.avi"), 177, 728,
                                         "the file ends inside frame 177")
    elif damage == "faststart_mp4":
        path, decoded, header, reason = (video_damage.faststart_cut(source, tmp_path / "cam.mp4"), 93, 180,
                                         "the file ends inside frame 93")
    else:
        path, decoded, header, reason = (video_damage.cut_at_packet(source, tmp_path / "cam.avi", packet=100),
                                         100, 728, "the packets stop at 1.65 s")
    single, end_single = _decode(path, "NONE")
    threaded, end_threaded = _decode(path, "AUTO")
    assert single == threaded and len(single) == decoded  # the same frames, none lost to threads
    assert end_single == end_threaded
    assert end_single is not None and (end_single.decoded, end_single.declared, end_single.reason) == (
        decoded, header, reason)
    whole = [int(f.image.astype(np.int64).sum() % 1_000_003) for f in iter_frames(source, indices=range(decoded))]
    assert single[:-4] == whole[:decoded - 4]  # frame i is the original's frame i (but next to the cut: B-frames)
    assert str(end_single).startswith(f"{path}: partial video: {decoded} frames decoded, ")
    assert str(end_single).endswith(f"({header} frames in its header); {reason}. Every decoded frame is kept; "
                                    f"the file is truncated or damaged.")


def test_pyav_threads_swallow_the_error_of_a_cut_last_packet(tmp_path: Path, lips_video_dir: Path) -> None:
    """Why cnnkit stops at a corrupt packet: decoded as usual, the cut packet raises with one thread and
    is silently dropped (with the frames queued behind it) by PyAV's decode() with frame threads."""
    import av

    path = video_damage.cut_in_half(lips_video_dir / "002_cal.avi", tmp_path / "half.avi")
    outcome = {}
    for threads in ("NONE", "AUTO"):
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = threads
            n = 0
            try:
                for packet in container.demux(stream):
                    n += len(packet.decode())
                outcome[threads] = (n, None)
            except av.InvalidDataError:
                outcome[threads] = (n, "InvalidDataError")
    assert outcome["NONE"][1] == "InvalidDataError"
    assert outcome["AUTO"] == (outcome["AUTO"][0], None) and outcome["AUTO"][0] < 177


def test_a_partial_video_is_reported_once_as_one_warning(tmp_path: Path, lips_video_dir: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    path = video_damage.cut_in_half(lips_video_dir / "002_cal.avi", tmp_path / "cam.avi")
    with caplog.at_level(logging.WARNING, logger="cnnkit"), partial_videos() as ended:
        info = video_info(path)  # counting reads to the end: the end is returned, not logged
        frames = list(iter_frames(path, indices=[0, 5]))  # stops at frame 5: it cannot know
        assert not ended and info.frames == 177 and info.end is not None and len(frames) == 2
        assert len(list(iter_frames(path))) == 177
    assert len(ended) == 1 and ended[0].decoded == 177
    assert [r.getMessage() for r in caplog.records] == [str(ended[0])]


def test_a_container_without_frames_is_an_error(tmp_path: Path, lips_video_dir: Path) -> None:
    path = video_damage.no_frames(lips_video_dir / "002_cal.avi", tmp_path / "empty.avi")
    message = r"empty\.avi: no frame could be decoded \(0 decoded, 0 declared\): an empty or damaged video"
    with pytest.raises(DataError, match=message):
        list(iter_frames(path))
    with pytest.raises(DataError, match=message):
        video_info(path)


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
