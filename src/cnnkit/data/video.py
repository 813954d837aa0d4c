"""Video files -> frames, streamed in decode order with PyAV (its wheels carry FFmpeg).

Convention: frame ``i`` is the ``i``-th frame the decoder returns, counting from 0. Nothing
seeks by timestamp (seeking lands on key frames and is where other tools read the wrong
frame): every call decodes from the start and skips the frames not asked for, converting only
the wanted ones to RGB. ``time_s`` is the frame's presentation time in seconds after the first
frame's (``(pts - pts_0) * time_base``), so it is exact for variable-frame-rate files; where
frames carry no timestamps it is ``index / fps``. Frames are returned as stored:
rotation metadata of phone videos is not applied (nor is it by DeepLabCut or SLEAP), so
frames extracted for labelling and frames seen by ``predict`` always agree.

Memory: one decoded frame at a time (plus the decoder's own reference frames).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.data.decode import Geometry, _content_box, _pad, _resized_array
from cnnkit.errors import DataError

#: File name endings read as videos (case-insensitive).
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv")


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds.

    Attributes:
        path: the file.
        frames: number of frames ``iter_frames`` yields, counted by decoding (containers'
            own counts are often wrong: an AVI header counts dropped-frame slots, an MP4
            edit list hides frames); with ``count=False`` the container's count, 0 if none.
        fps: average rate of those frames, ``frames / duration_s`` (the container's stated
            rate when the duration is unknown). A stated rate can differ: lips-video's AVIs
            state 120 frames/s and hold a frame in every other slot, 60 frames/s.
        width, height: frame size in pixels.
        duration_s: duration of the video stream in seconds (``frames / fps`` if unknown).
    """

    path: Path
    frames: int
    fps: float
    width: int
    height: int
    duration_s: float


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame.

    Attributes:
        index: position in decode order, from 0.
        time_s: presentation time in seconds after the first frame's (frame 0: 0.0).
        image: ``(H, W, 3)`` uint8 RGB.
    """

    index: int
    time_s: float
    image: np.ndarray


def is_video(path: str | Path) -> bool:
    """True when the name ends in a video suffix (the file is not opened).

    Example:
        >>> is_video("clips/mouse 01.MP4"), is_video("frame.png")
        (True, False)
    """
    return str(path).lower().endswith(VIDEO_SUFFIXES)


def video_info(path: str | Path, *, count: bool = True) -> VideoInfo:
    """Frame count, frame rate, size and duration of a video.

    Args:
        path: the video file.
        count: count the frames by decoding (exact; a decode without colour conversion,
            several times faster than playing the video). False: trust the container's
            count (instant; 0 when it states none, and possibly wrong).

    Raises:
        DataError: the file is missing, is not a readable video, or has no video stream.
    """
    path = Path(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        stated = int(stream.frames or 0)
        rate = stream.average_rate or stream.guessed_rate
        duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
        if duration <= 0 and container.duration:
            duration = container.duration / 1_000_000  # container.duration is in microseconds
        width, height = int(stream.codec_context.width), int(stream.codec_context.height)
    frames = sum(1 for _ in _decoded(path, want=None)) if count else stated
    fps = frames / duration if duration > 0 and frames > 0 else (float(rate) if rate else 0.0)
    if duration <= 0 and fps > 0:
        duration = frames / fps
    return VideoInfo(path=path, frames=frames, fps=fps, width=width, height=height, duration_s=duration)


def iter_frames(path: str | Path, *, indices: Iterable[int] | None = None) -> Iterator[VideoFrame]:
    """Decode a video from its start and yield its frames (all, or those in ``indices``).

    Args:
        path: the video file.
        indices: frame numbers to return (any order, repeats ignored); they come back in
            decode order, and decoding stops after the last one. None: every frame.

    Yields:
        ``VideoFrame`` s in decode order; frame ``i`` is the ``i``-th decoded frame.

    Raises:
        DataError: the file is missing or unreadable, a frame cannot be decoded, or an
            index lies past the last frame (raised once the video has ended).
    """
    path = Path(path)
    want = None if indices is None else _wanted(indices, path)
    yield from _decoded(path, want=want, rgb=True)


def resize_frame(image: np.ndarray, *, size: tuple[int, int], grayscale: bool = False,
                 letterbox: bool = False) -> tuple[np.ndarray, Geometry]:
    """A decoded frame -> the network input, exactly as ``decode_image`` resizes an image file.

    Same filter and steps (LANCZOS, ``reducing_gap=3``, letterbox, the seed's grey weights),
    so a frame and the PNG holding the same pixels give the same input and the same
    prediction. Frames have no EXIF orientation.

    Shapes:
        image ``(H, W, 3)`` uint8 RGB -> ``(size[1], size[0], C)`` uint8, C = 1 when grayscale.
    """
    from PIL import Image

    im = Image.fromarray(image, "RGB")
    target, offset = _content_box(im.size, size, letterbox)
    arr = _resized_array(im, 1, target, None, Image.Resampling.LANCZOS, 3.0, grayscale)
    if letterbox:
        arr = _pad(arr, size, offset)
    scale = (target[0] / im.size[0], target[1] / im.size[1])
    return arr, Geometry(im.size, scale, (float(offset[0]), float(offset[1])))


def _wanted(indices: Iterable[int], path: Path) -> set[int]:
    want = {int(i) for i in indices}
    if any(i < 0 for i in want):
        raise DataError(f"{path}: frame indices count from 0; received {min(want)}")
    return want


def _decoded(path: Path, *, want: set[int] | None, rgb: bool = False) -> Iterator[VideoFrame]:
    """The decode loop: every frame is decoded, only the wanted ones converted to RGB."""
    import av

    last = max(want) if want else -1
    index = -1
    with _open(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"  # frame threads: same frames, same order, decoded in parallel
        clock = _Clock(stream, reorder=container.format.name == "avi")
        try:
            for packet in container.demux(stream):
                clock.feed(packet)
                for frame in packet.decode():
                    index += 1
                    if want is not None and index > last:
                        return
                    time_s = clock.time_s(frame, index)
                    if want is None or index in want:
                        image = frame.to_ndarray(format="rgb24") if rgb else _NO_IMAGE
                        yield VideoFrame(index, time_s, image)
        except av.FFmpegError as exc:
            raise DataError(f"{path}: cannot decode frame {index + 1} ({exc}); the file may be truncated "
                            "or damaged. Re-encode it (e.g. with ffmpeg) and try again.") from exc
    if want and last > index:
        raise DataError(f"{path}: asked for frame {last}, but the video has {index + 1} frames (0-{index})")


_NO_IMAGE = np.empty((0, 0, 3), np.uint8)  # read-only placeholder: frames only counted, never shown


class _Clock:
    """Frame times in seconds from the first frame.

    AVI stores no presentation times: FFmpeg derives them from the decode order, and with
    B-frames the decoded (presentation-order) frames then carry each other's times. With
    ``reorder`` the ``n``-th frame out of the decoder gets the smallest time not yet given
    among the packets fed so far, which is its own: every frame shown before it was decoded
    before it. Elsewhere the frame's own pts is used; ``index / fps`` where there is none.
    """

    def __init__(self, stream: Any, *, reorder: bool) -> None:
        self.base = Fraction(stream.time_base) if stream.time_base else None
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else 0.0
        self.reorder, self.pending, self.origin = reorder, [], None
        _NO_IMAGE.setflags(write=False)

    def feed(self, packet: Any) -> None:
        if self.reorder and packet.pts is not None and packet.size:
            heapq.heappush(self.pending, packet.pts)

    def time_s(self, frame: Any, index: int) -> float:
        pts = heapq.heappop(self.pending) if self.reorder and self.pending else frame.pts
        if pts is None or self.base is None:
            return index / self.fps if self.fps else float("nan")
        if self.origin is None:
            self.origin = pts
        return float((pts - self.origin) * self.base)


def _open(path: Path) -> Any:
    import av

    if not path.is_file():
        raise DataError(f"{path}: no such video file")
    try:
        return av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable video ({exc}). Supported: {', '.join(VIDEO_SUFFIXES)} "
                        "and anything else FFmpeg reads.") from exc


def _video_stream(container: Any, path: Path) -> Any:
    if not container.streams.video:
        raise DataError(f"{path}: the file holds no video stream (streams: "
                        f"{[s.type for s in container.streams] or 'none'})")
    return container.streams.video[0]
