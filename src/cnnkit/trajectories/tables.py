"""Prediction tables <-> trajectory arrays, for smoothing.

Input: ``cnnkit predict``'s video CSV (``docs/video.md``): ``frame, time_s`` (``video`` first when
several videos were predicted), then per landmark ``<name>_x, <name>_y`` and ``<name>_likelihood``.
Several tables of the same video are an ensemble: the same landmarks and the same frames.

Frame numbers need not be contiguous: the trajectory runs over every frame from the first to
the last, frames absent from the table are missing (NaN), and the output keeps the input's rows only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cnnkit.errors import DataError


@dataclass(frozen=True)
class Trajectories:
    """One video's ensemble. points (M, T, K, 2) px and likelihood (M, T, K) or None, over ``frames``
    (T, every frame from first to last); ``rows`` (R,) are the positions in ``frames`` of the input's rows."""

    points: np.ndarray
    likelihood: np.ndarray | None
    frames: np.ndarray
    rows: np.ndarray
    spread: np.ndarray | None = None  # (T, K): one table of an ensemble's predictions (its <name>_spread)


def landmark_names(table: pd.DataFrame, *, where: str = "the table") -> list[str]:
    """Landmarks of a prediction table, in column order: every ``<name>_x`` with a ``<name>_y``.

    Example:
        >>> landmark_names(pd.DataFrame(columns=["frame", "nose_x", "nose_y", "nose_likelihood", "nose_x_median"]))
        ['nose']
    """
    names = [str(c)[:-2] for c in table.columns if str(c).endswith("_x") and f"{str(c)[:-2]}_y" in table.columns]
    if not names:
        raise DataError(f"{where}: no landmark columns (<name>_x and <name>_y); is it a landmark prediction table?")
    if "frame" not in table.columns:
        raise DataError(f"{where}: no 'frame' column; smoothing needs video predictions (cnnkit predict MODEL VIDEO)")
    return names


def split_videos(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One table per video (key ``""`` when there is no ``video`` column), in order of appearance."""
    if "video" not in table.columns:
        return {"": table}
    return {str(v): part for v, part in table.groupby("video", sort=False)}


def ensemble_arrays(parts: Sequence[pd.DataFrame], names: Sequence[str], *,
                    sources: Sequence[str]) -> Trajectories:
    """Stack the members' tables of one video into arrays; every member must have the same frames.

    Args:
        parts: one table per member (the same video).
        names: the landmarks to take.
        sources: how to name each member in an error (its file name).
    """
    frames = [_frames_of(p, s) for p, s in zip(parts, sources, strict=True)]
    for f, s in zip(frames[1:], sources[1:], strict=True):
        if not np.array_equal(np.sort(f), np.sort(frames[0])):
            odd = np.setxor1d(f, frames[0])[0]
            raise DataError(f"{s}: frame {odd} is in one ensemble member and not the other ({sources[0]}); "
                            "members must be predictions of the same video's frames")
    first, last = int(frames[0].min()), int(frames[0].max())
    full = np.arange(first, last + 1)
    points = np.full((len(parts), len(full), len(names), 2), np.nan)
    has_lik = all(f"{n}_likelihood" in p.columns for p in parts for n in names)
    lik = np.full(points.shape[:3], np.nan) if has_lik else None
    for m, (part, f) in enumerate(zip(parts, frames, strict=True)):
        at = f - first
        for k, name in enumerate(names):
            points[m, at, k, 0] = _numbers(part, f"{name}_x", sources[m])
            points[m, at, k, 1] = _numbers(part, f"{name}_y", sources[m])
            if lik is not None:
                lik[m, at, k] = _numbers(part, f"{name}_likelihood", sources[m])
    spread = None
    if len(parts) == 1 and has_spread(parts[0], names):  # an ensemble's own table: its median and spread
        spread = np.full(points.shape[1:3], np.nan)
        for k, name in enumerate(names):
            spread[frames[0] - first, k] = _numbers(parts[0], f"{name}_spread", sources[0])
    return Trajectories(points, lik, full, frames[0] - first, spread)


def has_spread(table: pd.DataFrame, names: Sequence[str]) -> bool:
    """Whether ``table`` is an ensemble's prediction table: a ``<name>_spread`` column per landmark."""
    return bool(names) and all(f"{n}_spread" in table.columns for n in names)


def _frames_of(part: pd.DataFrame, source: str) -> np.ndarray:
    frames = pd.to_numeric(part["frame"], errors="coerce").to_numpy()
    if not np.isfinite(frames).all() or (frames != np.round(frames)).any() or (frames < 0).any():
        bad = part.index[~np.isfinite(frames) | (frames != np.round(frames)) | (frames < 0)][0]
        raise DataError(f"{source}: row {bad}: column 'frame' holds {part['frame'][bad]!r}; expected a frame number >= 0")
    frames = frames.astype(np.int64)
    if len(np.unique(frames)) != len(frames):
        values, counts = np.unique(frames, return_counts=True)
        raise DataError(f"{source}: frame {values[counts > 1][0]} appears twice (several videos in one table "
                        "need a 'video' column)")
    return frames


def _numbers(part: pd.DataFrame, column: str, source: str) -> np.ndarray:
    if column not in part.columns:
        raise DataError(f"{source}: no column {column!r}; ensemble members must predict the same landmarks")
    values = pd.to_numeric(part[column], errors="coerce")
    bad = values.isna() & part[column].notna()
    if bad.any():
        row = part.index[bad.to_numpy()][0]
        raise DataError(f"{source}: row {row}: column {column!r} holds {part[column][row]!r}; expected a number")
    return values.to_numpy(dtype=np.float64)
