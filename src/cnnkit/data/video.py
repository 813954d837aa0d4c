"""Video files -> frames, streamed in decode order with PyAV (its wheels carry FFmpeg).

Convention: frame ``i`` is the ``i``-th frame the decoder returns, counting from 0. Nothing
seeks by timestamp (seeking lands on key frames and is where other tools read the wrong
frame): every call decodes from the start and skips the frames not asked for, converting only
the wanted ones to RGB. ``time_s`` is the frame's presentation time in seconds after the first
frame's (``(pts - pts_0) * time_base``), so it is exact for variable-frame-rate files; where
frames carry no timestamps it is ``index / fps``. Frames are returned as stored:
rotation metadata of phone videos is not applied, so frames extracted for labelling and frames
seen by ``predict`` always agree.

A video that ends before its declared length keeps every frame that decoded and says so in
one line (``data/video_pass.py``: what counts as ending early, and why a cut packet is never
decoded). A file without any frame is an error.

Memory: one decoded frame at a time (plus the decoder's own reference frames).
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.data.decode import Geometry, _content_box, _pad, _resized_array
from cnnkit.data.video_pass import StreamPass, VideoEnd, partial_videos, report_partial
from cnnkit.errors import DataError

__all__ = ["VIDEO_SUFFIXES", "VideoEnd", "VideoFrame", "VideoFrames", "VideoInfo", "is_video", "iter_frames",
           "partial_videos", "report_partial", "resize_frame", "video_info"]

#: File name endings read as videos (case-insensitive).
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv")


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds.

    Attributes:
        path: the file.
        frames: number of frames ``iter_frames`` yields, counted by decoding (containers'
            own counts can be wrong: lips-video's ``002_cal.avi`` states 728 and holds 364);
            with ``count=False`` the container's count, 0 if none.
        fps: average rate of those frames, ``frames / duration_s`` (the container's stated
            rate when the duration is unknown). A stated rate can differ: lips-video's AVIs
            state 120 frames/s and hold a frame in every other slot, 60 frames/s.
        width, height: frame size in pixels.
        duration_s: duration of the video stream in seconds (``frames / fps`` if unknown).
        end: set when counting found that the video ends before its declared length
            (``frames`` is then the number decoded); None otherwise and with ``count=False``.
    """

    path: Path
    frames: int
    fps: float
    width: int
    height: int
    duration_s: float
    end: VideoEnd | None = None


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

    A count that finds the video ending early returns the frames decoded and sets ``end``
    (it logs nothing: the caller reports it with ``report_partial``).

    Raises:
        DataError: the file is missing, is not a readable video, has no video stream, or
            (``count=True``) holds no frame.
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
    counted = VideoFrames(_decoded(path, want=None, report=False)) if count else None
    frames = sum(1 for _ in counted) if counted is not None else stated
    fps = frames / duration if duration > 0 and frames > 0 else (float(rate) if rate else 0.0)
    if duration <= 0 and fps > 0:
        duration = frames / fps
    return VideoInfo(path=path, frames=frames, fps=fps, width=width, height=height, duration_s=duration,
                     end=counted.end if counted is not None else None)


def iter_frames(path: str | Path, *, indices: Iterable[int] | None = None) -> VideoFrames:
    """Decode a video from its start and yield its frames (all, or those in ``indices``).

    Args:
        path: the video file.
        indices: frame numbers to return (any order, repeats ignored); they come back in
            decode order, and decoding stops after the last one. None: every frame.

    Returns:
        A ``VideoFrames`` iterator of ``VideoFrame`` s in decode order (frame ``i`` is the
        ``i``-th decoded frame). Once it has run to the end, ``.end`` tells whether the
        video ended early; without ``indices`` that is also logged as one warning line
        (see ``VideoEnd``).

    Raises:
        DataError: the file is missing or unreadable, holds no frame, or an index lies
            past the last frame (raised once the video has ended).
    """
    path = Path(path)
    want = None if indices is None else _wanted(indices, path)
    return VideoFrames(_decoded(path, want=want, rgb=True))


class VideoFrames(Iterator[VideoFrame]):
    """The frames of one video in decode order; after the last one, ``end`` says how it ended."""

    def __init__(self, frames: Generator[VideoFrame, None, VideoEnd | None]) -> None:
        self._frames = frames
        self.finished = False  # ran to the end (not stopped early, not failed)
        self.end: VideoEnd | None = None  # set when the video ended before its declared length

    def __iter__(self) -> VideoFrames:
        return self

    def __next__(self) -> VideoFrame:
        try:
            return next(self._frames)
        except StopIteration as stop:
            self.finished, self.end = True, stop.value
            raise

    def close(self) -> None:
        """Stop decoding and release the file (as a generator's ``close``)."""
        self._frames.close()

    @property
    def complete(self) -> bool:
        """True once every frame the file declares has been decoded."""
        return self.finished and self.end is None


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


def _decoded(path: Path, *, want: set[int] | None, rgb: bool = False, report: bool = True,
             threads: str = "AUTO") -> Generator[VideoFrame, None, VideoEnd | None]:
    """The decode loop: every frame is decoded, only the wanted ones converted to RGB.

    Returns (as the generator's value) the ``VideoEnd`` of a video that ended early, after
    logging it when ``report`` and every frame was asked for (a pass that picks frames leaves
    the line to the pass that chose them); None when it is complete or stopped at ``want``.
    ``threads``: FFmpeg's thread type ("NONE": one thread; the tests compare both).
    """
    last = max(want) if want else -1
    index = -1
    with _open(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = threads  # frame threads: same frames, same order, decoded in parallel
        reading = StreamPass(stream, reorder=container.format.name == "avi")
        for frame in reading.frames(container):
            index += 1
            if want is not None and index > last:
                return None
            time_s = reading.clock.time_s(frame, index)
            if want is None or index in want:
                image = frame.to_ndarray(format="rgb24") if rgb else _NO_IMAGE
                yield VideoFrame(index, time_s, image)
        end = reading.end(path, index + 1)
        declared = reading.declared_frames()  # PyAV 18.1.1 refuses to read a closed container's stream
    if index < 0:
        why = f"; {end.reason}" if end is not None and end.reason else ""
        raise DataError(f"{path}: no frame could be decoded (0 decoded, {declared} declared{why}): "
                        f"an empty or damaged video. Check that the recording finished, or leave the file out.")
    if want and last > index:
        cut = f"; it ends early: {end.reason}, the file is truncated or damaged" if end is not None else ""
        raise DataError(f"{path}: asked for frame {last}, but the video has {index + 1} frames (0-{index}){cut}")
    if end is not None and report and want is None:  # a full pass says it; picking frames leaves it to that pass
        report_partial(end)
    return end


_NO_IMAGE = np.empty((0, 0, 3), np.uint8)  # placeholder for frames that are only counted, never shown
_NO_IMAGE.setflags(write=False)


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
