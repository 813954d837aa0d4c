"""``cnnkit.smooth``: smooth video predictions; one table -> a filter, several (an ensemble) -> EKS.

An ensemble's own prediction table (``cnnkit predict`` with an ensemble: the members' median,
``<name>_spread`` and mean likelihood) is smoothed by EKS too, from its median and spread
(``trajectories.eks.smooth_ensemble_output``).

The raw predictions are kept: the result is a new table (and, with ``out``, a new CSV beside
them plus ``<out>.json`` with the settings and each landmark's smoothing strength); an input is
never overwritten. Output columns, per landmark after ``[video,] frame, time_s``:

- ``<name>_x, <name>_y``: the smoothed position, px;
- ``<name>_sd``: EKS only: the posterior sd per axis, px (sqrt of the mean of the x and y variances);
- ``<name>_likelihood``: the input's likelihood (an ensemble: the members' mean);
- ``<name>_x_median, <name>_y_median``: the raw position: the ensemble median (one table: its own);
- ``<name>_spread``: ensembles only: the members' sd per axis, px.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd

from cnnkit.atomic import atomic_write_text
from cnnkit.errors import DataError
from cnnkit.trajectories.eks import ensemble_kalman_smoother, ensemble_statistics, smooth_ensemble_output
from cnnkit.trajectories.filters import (
    DEFAULT_MEDIAN_WINDOW,
    DEFAULT_SAVGOL_ORDER,
    DEFAULT_SAVGOL_WINDOW,
    median_filter,
    savgol_filter,
)
from cnnkit.trajectories.tables import Trajectories, ensemble_arrays, has_spread, landmark_names, split_videos

Source = Union[str, "os.PathLike[str]", pd.DataFrame]
METHODS = ("auto", "eks", "median", "savgol")
SIDECAR_KEY = "cnnkit_smooth"  # marks a sidecar as cnnkit's own (so a rerun may replace it)


@dataclass(frozen=True)
class Smoothed:
    """The smoothed table and how it was made. ``strength``: video ('' when one) -> landmark -> s."""

    table: pd.DataFrame
    method: str
    window: int | None
    sources: tuple[str, ...]
    strength: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    tuned: bool = True

    def settings(self) -> dict[str, Any]:
        """What the sidecar JSON holds."""
        return {SIDECAR_KEY: 1, "method": self.method, "window": self.window, "inputs": list(self.sources),
                "strength_px2_per_frame": {v: dict(s) for v, s in self.strength.items()},
                "strength_tuned": self.tuned if self.strength else None,
                "strength_means": "EKS process variance s per frame: the smaller, the smoother (sqrt: the typical "
                                  "step of the true point per frame, px)"}

    def lines(self) -> list[str]:
        """A few lines for people: method, and each landmark's strength."""
        how = f"{self.method}, window {self.window} frames" if self.window else self.method
        out = [f"{len(self.table)} frames smoothed ({how}, {len(self.sources)} input(s))"]
        for video, per in self.strength.items():
            chosen = "tuned" if self.tuned else "given"
            out.append(f"{video + ': ' if video else ''}strength s ({chosen}, px² per frame; smaller = smoother): "
                       + ", ".join(f"{n} {s:.3g}" for n, s in per.items()))
        return out


def smooth(predictions: Source | Sequence[Source], *, out: str | os.PathLike[str] | None = None,
           method: str = "auto", window: int | None = None, strength: float | None = None,
           max_gap: int | None = None) -> Smoothed:
    """Smooth one video's predictions (or several videos', by their ``video`` column).

    Args:
        predictions: a prediction CSV or DataFrame, or several of the same video (an ensemble).
        out: also write the table to this CSV and the settings to ``<out>.json``; never an input.
        method: ``auto`` (EKS for 2+ tables or an ensemble's own table, with ``<name>_spread``
            columns: EKS over its median and spread; else the median filter), ``eks``, ``median`` or ``savgol``
            (with several tables the filters smooth the ensemble median).
        window: filter window in frames (default: median 5, savgol 11). Not for EKS.
        strength: EKS: fix s (px² per frame) for every landmark instead of choosing it per landmark.
        max_gap: filters: longest run of missing frames to fill (default half the window).
    """
    items = [predictions] if isinstance(predictions, (str, os.PathLike, pd.DataFrame)) else list(predictions)
    sources = tuple(_name(p, i) for i, p in enumerate(items))
    if out is not None:
        check_target(out, items)
    tables = [_read(p, s) for p, s in zip(items, sources, strict=True)]
    names = landmark_names(tables[0], where=sources[0])
    one_ensemble = len(tables) == 1 and has_spread(tables[0], names)
    method, window = _resolve(method, window, strength, 2 if one_ensemble else len(items))
    split = [split_videos(t) for t in tables]
    parts, strengths = [], {}
    for video, first in split[0].items():
        members = [_member_video(s, video, src) for s, src in zip(split, sources, strict=True)]
        traj = ensemble_arrays(members, names, sources=sources)
        columns, s = _smooth_video(traj, names, method, window, strength, max_gap)
        parts.append(pd.concat([_head(first), pd.DataFrame(columns, index=first.index)], axis=1))
        if s is not None:
            strengths[video] = {n: float(v) for n, v in zip(names, s, strict=True) if np.isfinite(v)}
    result = Smoothed(pd.concat(parts, ignore_index=True), method, window, sources, strengths, strength is None)
    if out is not None:
        atomic_write_text(out, result.table.to_csv(index=False))
        atomic_write_text(sidecar_path(out), json.dumps(result.settings(), indent=2))
    return result


def _resolve(method: str, window: int | None, strength: float | None, n: int) -> tuple[str, int | None]:
    if method not in METHODS:
        raise DataError(f"smoothing method must be one of {', '.join(METHODS)}. Received {method!r}")
    method = ("eks" if n >= 2 else "median") if method == "auto" else method
    if method == "eks" and window is not None:
        raise DataError("--window is for the median and savgol filters; EKS chooses its strength per landmark "
                        "(fix it with strength=)")
    if method != "eks" and strength is not None:
        raise DataError(f"strength is EKS's; the {method} filter takes a window")
    if method == "eks" and n < 2:
        raise DataError("EKS needs the predictions of 2 or more models of the same video (one CSV each), or an "
                        "ensemble's own predictions (with <name>_spread columns); for one model use --method median "
                        "or savgol")
    if window is not None and (int(window) != window or window < 1):
        raise DataError(f"the window is a number of frames >= 1. Received {window!r}")
    default = {"median": DEFAULT_MEDIAN_WINDOW, "savgol": DEFAULT_SAVGOL_WINDOW}.get(method)
    return method, (int(window) if window is not None else default)


def _smooth_video(traj: Trajectories, names: Sequence[str], method: str, window: int | None,
                  strength: float | None, max_gap: int | None) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Columns (input rows only) of one video, and the EKS strengths (None for a filter)."""
    rows, many = traj.rows, len(traj.points) >= 2
    centre, _, spread, lik = ensemble_statistics(traj.points, traj.likelihood) if many else \
        (traj.points[0], None, traj.spread, None if traj.likelihood is None else traj.likelihood[0])
    sd, s = None, None
    if method == "eks":
        if many:
            res = ensemble_kalman_smoother(traj.points, traj.likelihood, strength=strength)
        else:  # an ensemble's own table (_resolve allows EKS on one table only with its spread)
            assert traj.spread is not None
            res = smooth_ensemble_output(centre, traj.spread, lik, strength=strength)
        pos, sd, s = res.mean, res.sd, res.strength
    elif method == "median":
        pos = median_filter(centre, window or DEFAULT_MEDIAN_WINDOW, max_gap=max_gap)
    else:
        pos = savgol_filter(centre, window or DEFAULT_SAVGOL_WINDOW, DEFAULT_SAVGOL_ORDER, max_gap=max_gap)
    columns: dict[str, np.ndarray] = {}
    for k, name in enumerate(names):
        columns[f"{name}_x"], columns[f"{name}_y"] = pos[rows, k, 0], pos[rows, k, 1]
        if sd is not None:
            columns[f"{name}_sd"] = sd[rows, k]
        if lik is not None:
            columns[f"{name}_likelihood"] = lik[rows, k]
        columns[f"{name}_x_median"], columns[f"{name}_y_median"] = centre[rows, k, 0], centre[rows, k, 1]
        if spread is not None:
            columns[f"{name}_spread"] = spread[rows, k]
    return columns, s


def _head(first: pd.DataFrame) -> pd.DataFrame:
    return first[[c for c in ("video", "frame", "time_s") if c in first.columns]]


def _member_video(split: Mapping[str, pd.DataFrame], video: str, source: str) -> pd.DataFrame:
    if video not in split:
        raise DataError(f"{source}: no rows for video {video!r}; ensemble members must predict the same videos")
    return split[video]


def _name(item: Source, i: int) -> str:
    return f"table {i + 1}" if isinstance(item, pd.DataFrame) else str(item)


def _read(item: Source, source: str) -> pd.DataFrame:
    if isinstance(item, pd.DataFrame):
        return item
    path = Path(item)
    if not path.is_file():
        raise DataError(f"{source}: no such file")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{source}: not a readable CSV ({exc})") from exc


def sidecar_path(out: str | os.PathLike[str]) -> Path:
    """Where the settings of a smoothed CSV go: ``<out>.json`` (``a.csv`` -> ``a.csv.json``)."""
    out = Path(out)
    return out.with_name(out.name + ".json")


def is_smoothing_output(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` was written by :func:`smooth` (its sidecar says so): a rerun may replace it."""
    try:
        return SIDECAR_KEY in json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def check_target(out: str | os.PathLike[str], inputs: Sequence[Source]) -> None:
    """Refuse to write over an input, or over a ``<out>.json`` that cnnkit did not write."""
    targets = [Path(out), sidecar_path(out)]
    for item in inputs:
        if isinstance(item, pd.DataFrame):
            continue
        for target in targets:
            if _same_file(target, Path(item)):
                raise DataError(f"{target} is one of the inputs; smoothing writes a new file beside the raw "
                                "predictions and never replaces them: choose another --out")
    side = targets[1]
    if side.exists() and not is_smoothing_output(out):
        raise DataError(f"{side} exists and was not written by cnnkit smooth; move it or choose another --out")


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()
