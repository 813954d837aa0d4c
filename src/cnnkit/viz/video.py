"""Labelled videos: predicted points drawn on every frame, encoded as H.264 with PyAV (no system ffmpeg).

Each landmark has its own colour (``landmark_colors``). A point whose likelihood is below
``threshold`` is drawn faded (``below='fade'``: a third of the opacity, and a ring instead of a
disc) or left out (``below='hide'``); a NaN point is never drawn; a NaN likelihood (a model
without one) counts as confident. Frame times are kept: frame ``i`` of the output is frame
``i`` of the input, shown at the input's time (variable frame rates included) in .mp4, .mov
and .mkv; other containers get a constant ``fps``.

This module takes arrays and DataFrames only (no model, no data readers).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cnnkit.atomic import atomic_path
from cnnkit.errors import DataError

# Okabe-Ito and tab10-like colours, distinct on skin, fur and grey backgrounds; repeated past 12.
PALETTE = np.array([
    (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
    (204, 121, 167), (255, 255, 255), (148, 103, 189), (23, 190, 207), (188, 189, 34), (227, 119, 194),
], dtype=np.uint8)
_TIMED = (".mp4", ".mov", ".mkv", ".m4v")
#: Points below this likelihood are drawn faded: the cut that best separated points with errors above 10 px
#: from the rest on lips-via's `extra` split (docs/ACCURACY.md). Likelihood scales differ between models.
DEFAULT_THRESHOLD = 0.05
_TIME_BASE = Fraction(1, 90000)  # the MPEG clock: exact for 24, 25, 30, 60, 120 frames/s


def landmark_colors(k: int) -> np.ndarray:
    """``(k, 3)`` uint8 RGB, one colour per landmark, in landmark order."""
    return PALETTE[np.arange(k) % len(PALETTE)]


def draw_points(image: np.ndarray, points: np.ndarray, likelihood: np.ndarray | None = None, *,
                threshold: float = DEFAULT_THRESHOLD, below: str = "fade", radius: int | None = None,
                colors: np.ndarray | None = None) -> np.ndarray:
    """A copy of ``image`` with the points drawn as discs (faded rings below ``threshold``).

    Shapes:
        image ``(H, W, 3)`` uint8; points ``(K, 2)`` (x, y) pixels of that image; likelihood ``(K,)``.
    """
    if below not in ("fade", "hide"):
        raise ValueError(f"below must be 'fade' or 'hide'. Received: {below!r}")
    out = image.astype(np.float32)
    h, w = image.shape[:2]
    r = radius or max(2, round(min(h, w) / 80))
    colors = landmark_colors(len(points)) if colors is None else colors
    for k, (x, y) in enumerate(np.asarray(points, dtype=np.float64)):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        confident = likelihood is None or not np.isfinite(likelihood[k]) or likelihood[k] >= threshold
        if not confident and below == "hide":
            continue
        _blend_disc(out, x, y, r, colors[k], alpha=1.0 if confident else 0.35, ring=not confident)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _blend_disc(out: np.ndarray, x: float, y: float, r: int, color: np.ndarray, *, alpha: float,
                ring: bool) -> None:
    """Blend a disc (or a 1-2 px ring) of ``color`` centred on corner-origin point (x, y), in place."""
    h, w = out.shape[:2]
    x0, x1 = max(0, int(np.floor(x - r - 1))), min(w, int(np.ceil(x + r + 1)))
    y0, y1 = max(0, int(np.floor(y - r - 1))), min(h, int(np.ceil(y + r + 1)))
    if x0 >= x1 or y0 >= y1:
        return  # outside the frame
    yy, xx = np.mgrid[y0:y1, x0:x1]
    d = np.hypot(xx + 0.5 - x, yy + 0.5 - y)  # pixel centres against the corner-origin point
    mask = (d <= r) & (d >= r - max(1.0, r / 3)) if ring else d <= r
    patch = out[y0:y1, x0:x1]
    patch[mask] = patch[mask] * (1 - alpha) + color.astype(np.float32) * alpha


class LabeledVideoWriter:
    """Write frames with their points drawn into an H.264 video; use as a context manager.

    The file appears complete or not at all (``cnnkit.atomic``): frames go to a hidden temporary
    file that replaces ``path`` on a clean close.

    Args:
        path: output video (.mp4 recommended).
        fps: frame rate, used where a frame has no time and in containers without timestamps.
        names: landmark names, in the order of the points' K axis.
        threshold, below, radius: as :func:`draw_points`.
        crf: x264 quality (0 lossless, 18 visually lossless, 23 x264's default).
    """

    def __init__(self, path: str | Path, *, fps: float, names: Sequence[str], threshold: float = DEFAULT_THRESHOLD,
                 below: str = "fade", radius: int | None = None, crf: int = 18) -> None:
        self.path = Path(path)
        self._files = contextlib.ExitStack()
        self.fps = fps if fps and fps > 0 else 30.0
        self.names, self.threshold, self.below, self.radius, self.crf = list(names), threshold, below, radius, crf
        self.colors = landmark_colors(len(self.names))
        self.timed = self.path.suffix.lower() in _TIMED
        self._out: Any = None
        self._stream: Any = None
        self._count, self._last_pts = 0, -1

    def __enter__(self) -> LabeledVideoWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.close(ok=exc_type is None)

    def write(self, image: np.ndarray, points: np.ndarray, likelihood: np.ndarray | None = None,
              time_s: float | None = None) -> None:
        """Draw and encode one frame. ``time_s``: its time from the first frame (None: ``index / fps``)."""
        drawn = draw_points(image, points, likelihood, threshold=self.threshold, below=self.below,
                            radius=self.radius, colors=self.colors)
        if self._out is None:
            self._open(drawn.shape[1], drawn.shape[0])
        self._encode(drawn, time_s)

    def write_batch(self, frames: Sequence[Any], points: np.ndarray, likelihood: np.ndarray) -> None:
        """``frames``: objects with ``image`` and ``time_s`` (``VideoFrame``); points ``(B, K, 2)``."""
        for frame, p, lik in zip(frames, points, likelihood, strict=True):
            self.write(frame.image, p, lik, frame.time_s)

    def _open(self, width: int, height: int) -> None:
        import av

        partial = self._files.enter_context(atomic_path(self.path))
        self._out = av.open(str(partial), "w")
        rate = Fraction(self.fps).limit_denominator(1001)
        self._stream = self._out.add_stream("libx264", rate=rate, options={"crf": str(self.crf)})
        # yuv420p (what every player reads) needs even sizes: an odd last row/column is repeated
        self._stream.width, self._stream.height = width + width % 2, height + height % 2
        self._stream.pix_fmt = "yuv420p"
        if self.timed:
            self._stream.time_base = self._stream.codec_context.time_base = _TIME_BASE

    def _encode(self, image: np.ndarray, time_s: float | None) -> None:
        import av

        if image.shape[0] % 2 or image.shape[1] % 2:
            image = np.pad(image, ((0, image.shape[0] % 2), (0, image.shape[1] % 2), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        if self.timed:
            t = time_s if time_s is not None and np.isfinite(time_s) else self._count / self.fps
            pts = max(round(t / _TIME_BASE), self._last_pts + 1)  # strictly increasing, whatever the input
            frame.pts, frame.time_base, self._last_pts = pts, _TIME_BASE, pts
        self._out.mux(self._stream.encode(frame))
        self._count += 1

    def close(self, ok: bool = True) -> None:
        """Flush and finish the file (``ok=False``: discard it)."""
        if self._out is None:
            if ok:
                raise DataError(f"{self.path}: no frames were written; the labelled video was not made")
            return
        try:
            if ok:
                self._out.mux(self._stream.encode())
        finally:
            self._out.close()
            self._out = None
        if ok:
            self._files.close()  # the finished file replaces ``path``
        else:
            self._files.__exit__(RuntimeError, RuntimeError("labelled video abandoned"), None)


def write_labeled_video(frames: Iterable[Any], predictions: pd.DataFrame, path: str | Path, *,
                        fps: float, threshold: float = DEFAULT_THRESHOLD, below: str = "fade", radius: int | None = None) -> Path:
    """Draw a predictions table (``frame``, ``<name>_x/_y/_likelihood``) onto ``frames``, in order.

    ``frames``: objects with ``index``, ``image`` and ``time_s`` (``cnnkit.data.video.iter_frames``);
    a frame without a row in ``predictions`` is written without points.
    """
    names = [c[:-2] for c in predictions.columns if c.endswith("_x") and f"{c[:-2]}_y" in predictions.columns]
    by_frame = predictions.set_index("frame") if "frame" in predictions.columns else predictions
    xy = by_frame[[c for n in names for c in (f"{n}_x", f"{n}_y")]].to_numpy(np.float64).reshape(len(by_frame), -1, 2)
    lik_cols = [f"{n}_likelihood" for n in names]
    lik = by_frame[lik_cols].to_numpy(np.float64) if all(c in by_frame for c in lik_cols) else None
    rows = {int(f): i for i, f in enumerate(by_frame.index)}
    empty = np.full((len(names), 2), np.nan)
    with LabeledVideoWriter(path, fps=fps, names=names, threshold=threshold, below=below, radius=radius) as writer:
        for frame in frames:
            i = rows.get(int(frame.index))
            writer.write(frame.image, empty if i is None else xy[i], None if i is None or lik is None else lik[i],
                         frame.time_s)
    return Path(path)
