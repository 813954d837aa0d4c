"""One pass over a video stream: packets to frames, frame times, and how the stream ended.

A video that ends before its declared length (a camera that crashed, a copy cut short)
keeps every frame that decoded, and says so in one line (``VideoEnd``: frames decoded,
frames declared) logged as a warning; ``partial_videos()`` collects those lines for the
command line's exit status 3. Three signs, the same with and without decoder threads: the
demuxer marks a packet cut by the end of the file as corrupt (it is not decoded; the frames
the decoder still holds are flushed out), a frame fails to decode, or the packets cover less
time than the stream declares (a file cut between two packets).

Why the corrupt packet is never decoded: with frame threads, FFmpeg reports a worker's
decode error on a later ``avcodec_receive_frame`` call, after the frames other workers
finished; PyAV's ``CodecContext.decode`` (``_decode``) drops an ``InvalidDataError`` that
arrives after a frame in the same call (``except InvalidDataError: if out: break``), and stops
asking for the frames still queued. At the end of a file (the flush delivers every queued
frame in one call) the error of a cut last packet was lost, with the frames queued behind
it: 175 frames and no error for lips-video's ``002_cal.avi`` cut in half, against
"Invalid data" single-threaded. Not decoding the cut packet and flushing gives 177 frames
and the same report in both modes.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

log = logging.getLogger("cnnkit")


@dataclass(frozen=True)
class VideoEnd:
    """A video that ended before its declared length: what was decoded, what the file declares.

    Attributes:
        path: the file.
        decoded: frames decoded (all of them are kept).
        declared: frames the container states (0: it states none; AVI counts frame slots).
        decoded_s, declared_s: seconds of stream the decoded packets cover, and the
            seconds the stream declares (0.0: unknown).
        reason: what ended it, e.g. "the file stops inside frame 177".
    """

    path: Path
    decoded: int
    declared: int
    decoded_s: float
    declared_s: float
    reason: str

    def __str__(self) -> str:
        seconds = f", {self.decoded_s:.2f} s of the {self.declared_s:.2f} s it declares" if self.declared_s else ""
        header = f" ({self.declared} frames in its header)" if self.declared else ""
        return (f"{self.path}: partial video: {self.decoded} frames decoded{seconds}{header}; {self.reason}. "
                f"Every decoded frame is kept; the file is truncated or damaged.")


def report_partial(end: VideoEnd) -> None:
    """Log the one line that says a video ended early (``partial_videos`` collects it)."""
    log.warning("%s", end, extra={"video_end": end})


@contextlib.contextmanager
def partial_videos() -> Iterator[list[VideoEnd]]:
    """Collect the ``VideoEnd`` of every partial video reported while the block runs.

    The command line uses it to exit with status 3 after a partial video: the line is
    logged where the video is read (a background thread, several commands), so the log
    record is the one channel every path already shares. A video read twice in the block
    (``suggest``'s second, mirrored pass) is reported once.
    """
    found: list[VideoEnd] = []
    once = _FirstReportOnly(found)
    logger = logging.getLogger("cnnkit")
    logger.addFilter(once)
    try:
        yield found
    finally:
        logger.removeFilter(once)


class _FirstReportOnly(logging.Filter):
    """Passes every record but a second report of the same video; collects the first ones."""

    def __init__(self, found: list[VideoEnd]) -> None:
        super().__init__()
        self.found = found

    def filter(self, record: logging.LogRecord) -> bool:
        end = getattr(record, "video_end", None)
        if not isinstance(end, VideoEnd):
            return True
        if any(seen.path == end.path for seen in self.found):
            return False
        self.found.append(end)
        return True


class StreamPass:
    """One pass over a video stream: packets to frames, and how the stream ended.

    A packet the demuxer marks corrupt (cut by the end of the file) ends the pass without
    being decoded; the frames the decoder still holds are flushed out. A decode error ends
    it too. ``end`` compares what was read with what the stream declares.
    """

    def __init__(self, stream: Any, *, reorder: bool) -> None:
        self.stream = stream
        self.clock = FrameClock(stream, reorder=reorder)
        self.first_pts: int | None = None
        self.end_pts: int | None = None  # largest pts + duration of the packets read
        self.fed = 0  # packets with data given to the decoder
        self.stopped = ""  # why the pass ended early, if it did

    def frames(self, container: Any) -> Iterator[Any]:
        import av

        try:
            for packet in container.demux(self.stream):
                if packet.is_corrupt:
                    self.stopped = f"the file ends inside frame {self.fed}"
                    yield from self.stream.codec_context.decode(None)  # flush the frames before the cut
                    return
                self._feed(packet)
                yield from packet.decode()
        except av.FFmpegError as exc:
            self.stopped = self.stopped or f"a frame could not be decoded ({exc})"

    def end(self, path: Path, decoded: int) -> VideoEnd | None:
        declared, declared_s, covered_s = self._declared()
        short = declared_s > 0 and covered_s < declared_s - max(2 * covered_s / max(decoded, 1), 0.01 * declared_s)
        if not self.stopped and not short:
            return None
        reason = self.stopped or f"the packets stop at {covered_s:.2f} s"
        return VideoEnd(path, decoded, declared, covered_s, declared_s, reason)

    def _feed(self, packet: Any) -> None:
        self.clock.feed(packet)
        if packet.size and packet.pts is not None:
            self.first_pts = packet.pts if self.first_pts is None else min(self.first_pts, packet.pts)
            stop = packet.pts + (packet.duration or 0)
            self.end_pts = stop if self.end_pts is None else max(self.end_pts, stop)
            self.fed += 1

    def declared_frames(self) -> int:
        return int(self.stream.frames or 0)

    def _declared(self) -> tuple[int, float, float]:
        """(frames the container states, seconds it declares, seconds the packets read cover)."""
        s, base = self.stream, self.stream.time_base
        declared = self.declared_frames()
        rate = s.average_rate or s.guessed_rate
        by_count = declared / float(rate) if declared and rate else 0.0
        by_duration = float(s.duration * base) if s.duration and base else 0.0
        read = (self.end_pts - self.first_pts) if self.end_pts is not None and self.first_pts is not None else 0
        covered = float(read * base) if base else 0.0
        return declared, max(by_count, by_duration), covered


class FrameClock:
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
        self.reorder = reorder
        self.origin: int | None = None  # pts of the first timed frame: time 0
        self.pending: list[int] = []  # a min-heap of packet times not yet given to a frame

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
