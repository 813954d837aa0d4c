"""``extract_frames``: pick frames of videos worth labelling; write them and a VIA project.

``method="uniform"`` takes frames evenly spaced over each video. ``method="kmeans"`` (as
DeepLabCut's ``extract_frames``) clusters small grey thumbnails of the frames (about 32
pixels wide; at most ``max_candidates`` frames per video, evenly spaced) into ``n``
clusters and takes, from each, the frame nearest its centre: frames that look different
from each other, so rare postures are not drowned by long still stretches.

Everything lands in one folder: the frames as ``<video stem>_frame<NNNNNN>.png`` (``NNNNNN``
is the frame index, the ``i``-th decoded frame: the same numbering ``predict`` uses on the
video), ``frames.csv`` (image, video, frame, time_s) and ``via_project.json``: a VIA 2
project listing the frames with the landmark names as a dropdown, ready for labelling (it
opens in VIA with the images shown; see ``data/sources/writers.py``).

A folder is added to, never overwritten: frames of a video whose stem is already used in
the folder (``d1/cam.mp4`` then ``d2/cam.mp4``, or a file planted under that name) are named
``cam-2_frame...``, and said so; each PNG is created exclusively (``guard.write_new_file``:
never over a file, never through a link); ``frames.csv`` keeps its rows, byte for byte, and
gets the new ones after them; ``via_project.json`` is replaced only when it holds no
annotation (it then lists every frame of ``frames.csv``). A labelled project, a
``frames.csv`` that is not a frames table, a link in place of either, or a read-only folder
stop the command before any frame is written.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from PIL import Image

from cnnkit.atomic import atomic_write_bytes
from cnnkit.data.guard import check_writable, refuse_symlink, refuse_to_overwrite_labels, write_new_file
from cnnkit.data.sources.writers import write_via
from cnnkit.data.table import AnnotationTable
from cnnkit.data.video import iter_frames, report_partial, video_info
from cnnkit.errors import ConfigError, DataError

log = logging.getLogger("cnnkit")

Method = Literal["uniform", "kmeans"]
PROJECT_NAME = "via_project.json"
FRAMES_CSV = "frames.csv"
FRAMES_COLUMNS = ["image", "video", "frame", "time_s"]
THUMB_WIDTH = 32
_FRAME_NAME = re.compile(r"^(?P<stem>.+)_frame\d+\.png$")


@dataclass(frozen=True)
class ExtractedFrames:
    """What ``extract_frames`` wrote.

    Attributes:
        project: the VIA project to label in.
        frames: one row per frame written by this call: image (path), video, frame (index), time_s.
    """

    project: Path
    frames: pd.DataFrame


def extract_frames(videos: str | Path | Sequence[str | Path], out: str | Path, *, n: int = 50,
                   method: Method = "kmeans", landmarks: Sequence[str] | None = None, seed: int = 0,
                   max_candidates: int = 3000) -> ExtractedFrames:
    """Choose ``n`` frames of each video, save them as PNG files and a VIA project in ``out``.

    Args:
        videos: one video file or several.
        out: the folder to write to (created). A folder that already holds frames is added
            to (see the module docstring); nothing in it is replaced.
        n: frames per video (all of them when the video is shorter, said in one line).
        method: ``"kmeans"`` (frames that differ from each other) or ``"uniform"`` (evenly spaced).
        landmarks: the names to label, in order (e.g. a model's ``meta["landmarks"]``); they
            become the dropdown of the project's region attribute ``landmark``.
        seed: seeds the k-means initialisation.
        max_candidates: k-means looks at no more than this many frames per video.

    Returns:
        ``ExtractedFrames`` (the project path and the table of the frames written now).

    Raises:
        DataError: a video is unreadable or holds no frame; ``out`` holds a labelled project,
            a ``frames.csv`` that is not a frames table, a link in their place, or is read-only.
        ConfigError: a bad ``n`` or ``method``.
    """
    paths = [Path(videos)] if isinstance(videos, (str, Path)) else [Path(v) for v in videos]
    if method not in ("uniform", "kmeans"):
        raise ConfigError(f"method must be 'uniform' or 'kmeans'. Received: {method!r}")
    if n < 1 or not paths:
        raise ConfigError(f"need at least one video and n >= 1. Received {len(paths)} videos, n={n}")
    out = Path(out)
    project = out / PROJECT_NAME
    before = _check_folder(out, project)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for video, stem in zip(paths, free_stems(paths, out, before["image"].astype(str).tolist()), strict=True):
        chosen = choose_frames(video, n, method=method, seed=seed, max_candidates=max_candidates)
        if len(chosen) < n:
            log.warning("%s: %d usable frames, fewer than the %d asked for (n): all %d are taken",
                        video, len(chosen), n, len(chosen))
        rows += _save(video, chosen, out, stem)
        log.info("%s: %d frames (%s) -> %s", video, len(chosen), method, out)
    frames = pd.DataFrame(rows, columns=FRAMES_COLUMNS)
    _append_rows(out / FRAMES_CSV, frames.assign(image=[Path(p).name for p in frames["image"]]))
    listed = pd.concat([before.assign(image=[str((out / p).resolve()) for p in before["image"]]), frames])
    listed = listed[[Path(p).is_file() for p in listed["image"]]].reset_index(drop=True)
    write_via(_empty_table(listed, landmarks), project)
    return ExtractedFrames(project, frames)


def _check_folder(out: Path, project: Path) -> pd.DataFrame:
    """Refuse what must not be written to (before any frame is); the rows ``frames.csv`` holds."""
    refuse_to_overwrite_labels(project, what="the frames' VIA project")
    table = out / FRAMES_CSV
    refuse_symlink(table, what="the frames table")
    check_writable(table, what="the frames table")
    if not table.is_file() or table.stat().st_size == 0:
        return pd.DataFrame(columns=FRAMES_COLUMNS)
    try:
        before = pd.read_csv(table, dtype={"image": str, "video": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        before = pd.DataFrame()
    if list(before.columns) != FRAMES_COLUMNS:
        raise DataError(f"{table} is not a frames table of extract-frames (columns {list(before.columns)[:6]}, "
                        f"expected {FRAMES_COLUMNS}); nothing was written. Choose another --out.")
    return before


def choose_frames(video: str | Path, n: int, *, method: Method = "kmeans", seed: int = 0,
                  max_candidates: int = 3000) -> list[int]:
    """The sorted frame indices ``extract_frames`` takes from one video."""
    if method == "uniform":
        info = video_info(video)
        if info.end is not None:  # counting read the whole video: report it here, once
            report_partial(info.end)
        total = info.frames
        return sorted({int(round(i)) for i in np.linspace(0, total - 1, min(n, total))})
    index, thumbs = _thumbnails(Path(video), max_candidates)
    if len(index) <= n:
        return index
    return sorted(index[i] for i in kmeans_pick(thumbs, n, seed=seed))


def _thumbnails(video: Path, max_candidates: int) -> tuple[list[int], np.ndarray]:
    """Every ``step``-th frame as a flat grey thumbnail (float32 in [0, 1])."""
    stated = video_info(video, count=False).frames
    step = max(1, math.ceil(stated / max_candidates)) if stated else 1
    index, thumbs = [], []
    for frame in iter_frames(video):
        if frame.index % step == 0:
            index.append(frame.index)
            thumbs.append(thumbnail(frame.image))
    if not thumbs:
        raise DataError(f"{video}: no frames could be decoded")
    return index, np.stack(thumbs)


def thumbnail(image: np.ndarray, width: int = THUMB_WIDTH) -> np.ndarray:
    """A grey, block-averaged copy about ``width`` pixels wide, flattened (float32 in [0, 1])."""
    grey = image.astype(np.float32).mean(axis=2) / 255.0 if image.ndim == 3 else image.astype(np.float32) / 255.0
    f = max(1, grey.shape[1] // width)
    h, w = (grey.shape[0] // f) * f, (grey.shape[1] // f) * f
    return grey[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3)).ravel()


def kmeans_pick(x: np.ndarray, k: int, *, seed: int = 0, restarts: int = 5) -> list[int]:
    """Rows of ``x`` nearest the ``k`` centres of a k-means clustering (distinct, unsorted).

    Plain numpy: Lloyd's iterations from ``restarts`` k-means++ starts, keeping the
    clustering with the smallest sum of squared distances (one start can leave a small,
    distinct group inside a big one's cluster). ``x`` is (N, D) with N > k.
    """
    rng = np.random.default_rng(seed)
    runs = [_lloyd(x, _kmeans_pp(x, k, rng)) for _ in range(restarts)]
    dist = min(runs, key=lambda d: float(d.min(axis=1).sum()))
    picked: list[int] = []
    for c in np.argsort(dist.min(axis=0)):  # tightest clusters first; each takes its nearest free row
        for row in np.argsort(dist[:, c]):
            if int(row) not in picked:
                picked.append(int(row))
                break
    return picked


def _lloyd(x: np.ndarray, centres: np.ndarray, iterations: int = 50) -> np.ndarray:
    """Lloyd's k-means iterations; returns the (N, K) squared distances to the final centres."""
    for _ in range(iterations):
        labels = _sq_dist(x, centres).argmin(axis=1)
        moved = np.stack([x[labels == c].mean(axis=0) if (labels == c).any() else centres[c]
                          for c in range(len(centres))])
        if np.allclose(moved, centres):
            break
        centres = moved
    return _sq_dist(x, centres)


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centres = [x[rng.integers(len(x))]]
    d = _sq_dist(x, np.stack(centres))[:, 0]
    for _ in range(1, k):
        probs = d / d.sum() if d.sum() > 0 else np.full(len(x), 1.0 / len(x))
        centres.append(x[rng.choice(len(x), p=probs)])
        d = np.minimum(d, _sq_dist(x, centres[-1][None])[:, 0])
    return np.stack(centres)


def _sq_dist(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(N, K) squared distances, without an (N, K, D) temporary."""
    d = (x * x).sum(1)[:, None] - 2.0 * x @ c.T + (c * c).sum(1)[None, :]
    return np.maximum(d, 0.0)


def free_stems(paths: Sequence[Path], out: Path, listed: Sequence[str] = ()) -> list[str]:
    """A file stem per video whose frame names nothing in ``out`` holds or ``listed`` names.

    ``clip``, else ``clip-2``, ``clip-3`` ...: two videos of one name (in one call, or a
    later call into the same folder) never share frame names; said in one line.
    """
    taken = {m.group("stem") for name in [*_names(out), *listed]
             if (m := _FRAME_NAME.match(Path(name).name))}
    stems = []
    for p in paths:
        stem, k = p.stem, 1
        while stem in taken:
            k += 1
            stem = f"{p.stem}-{k}"
        if k > 1:
            log.warning("%s already holds frames named %s_frame*.png: the frames of %s are named %s_frame*.png",
                        out, p.stem, p, stem)
        taken.add(stem)
        stems.append(stem)
    return stems


def _names(folder: Path) -> list[str]:
    return os.listdir(folder) if folder.is_dir() else []


def _save(video: Path, chosen: list[int], out: Path, stem: str) -> list[tuple[str, str, int, float]]:
    rows = []
    for frame in iter_frames(video, indices=chosen):
        path = save_new_frame(out / frame_name(stem, frame.index), frame.image)
        rows.append((str(path.resolve()), str(video), frame.index, frame.time_s))
    return rows


def frame_name(stem: str, index: int) -> str:
    """``<stem>_frame<NNNNNN>.png``: the name of decoded frame ``index`` of a video."""
    return f"{stem}_frame{index:06d}.png"


def save_new_frame(path: Path, image: np.ndarray) -> Path:
    """Write a frame as PNG to a name nothing holds yet (never over a file, never through a link)."""
    return write_new_file(path, lambda fh: Image.fromarray(image).save(fh, format="PNG"), what="a frame")


def _append_rows(table: Path, rows: pd.DataFrame) -> None:
    """Write ``frames.csv``: its rows as they were, byte for byte, then ``rows``."""
    old = table.read_bytes() if table.is_file() else b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    buffer = io.StringIO()
    rows.to_csv(buffer, index=False, header=not old, lineterminator="\n")
    atomic_write_bytes(table, old + buffer.getvalue().encode("utf-8"))


def _empty_table(frames: pd.DataFrame, landmarks: Sequence[str] | None) -> AnnotationTable:
    names = tuple(landmarks or ())
    if not names:
        log.warning("no landmark names given: the VIA project has no landmark attribute; pass landmarks= "
                    "(command line: --landmarks a,b,c or --model) to label with named points")
    cols = {f"{n}_{a}": np.full(len(frames), np.nan) for n in names for a in "xy"}
    return AnnotationTable(pd.DataFrame({"image": frames["image"], **cols}), names, source="extract_frames")
