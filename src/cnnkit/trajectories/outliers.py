"""Frames where a prediction looks wrong, by DeepLabCut's three criteria, as scores to rank by.

DeepLabCut's ``extract_outlier_frames`` flags a frame when any landmark

- ``jump``: moved more than ``epsilon`` px since the previous frame (default 20);
- ``uncertain``: has a likelihood below ``p_bound`` (default 0.01);
- ``fitting``: lies more than ``epsilon`` px from a fitted trajectory (DeepLabCut fits SARIMAX;
  here the running median of :mod:`cnnkit.trajectories.filters`, or whatever smoothed
  trajectory the caller passes, e.g. the EKS posterior mean).

:func:`outlier_scores` returns the scores behind each criterion per frame and landmark, and
:func:`frame_flags` reduces them to one row per frame (the worst landmark) with the three flags,
so ``suggest`` can rank frames by any of them. Thresholds are DeepLabCut's defaults: fixed pixel
distances, so on images much larger or smaller than DeepLabCut's typical 640x480 scale them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cnnkit.errors import DataError
from cnnkit.trajectories.filters import median_filter

JUMP_PX = 20.0  # DeepLabCut's epsilon
LIKELIHOOD_P = 0.01  # DeepLabCut's p_bound
FITTING_PX = 20.0


@dataclass(frozen=True)
class OutlierScores:
    """Per frame and landmark, (T, K). NaN where the point (or its previous frame) is missing.

    Attributes:
        jump_px: distance moved since the previous frame (frame 0: NaN).
        fitting_px: distance from the smoothed trajectory.
        likelihood: the point's likelihood, or None when none was given.
    """

    jump_px: np.ndarray
    fitting_px: np.ndarray
    likelihood: np.ndarray | None


def outlier_scores(points: np.ndarray, likelihood: np.ndarray | None = None, *,
                   smoothed: np.ndarray | None = None) -> OutlierScores:
    """The scores of DeepLabCut's ``jump``, ``uncertain`` and ``fitting`` criteria.

    Args:
        points: (T, K, 2) one video's predictions, px; NaN = missing.
        likelihood: (T, K) or None.
        smoothed: (T, K, 2) the trajectory to measure ``fitting`` against; default: the running
            median of ``points`` (window 5).

    Example:
        >>> pts = np.array([[[0.0, 0.0]], [[3.0, 4.0]], [[3.0, 4.0]]])
        >>> outlier_scores(pts).jump_px[:, 0].tolist()
        [nan, 5.0, 0.0]
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 3 or points.shape[-1] != 2:
        raise DataError(f"points must be (frames, landmarks, 2). Received shape {points.shape}")
    if likelihood is not None and np.shape(likelihood) != points.shape[:2]:
        raise DataError(f"likelihood must be (frames, landmarks) = {points.shape[:2]}. Received {np.shape(likelihood)}")
    jump = np.full(points.shape[:2], np.nan)
    jump[1:] = np.linalg.norm(points[1:] - points[:-1], axis=-1)
    fitted = median_filter(points) if smoothed is None else np.asarray(smoothed, dtype=np.float64)
    if fitted.shape != points.shape:
        raise DataError(f"smoothed must have the shape of points {points.shape}. Received {fitted.shape}")
    lik = None if likelihood is None else np.asarray(likelihood, dtype=np.float64)
    return OutlierScores(jump, np.linalg.norm(points - fitted, axis=-1), lik)


def frame_flags(scores: OutlierScores, *, jump_px: float = JUMP_PX, p: float = LIKELIHOOD_P,
                fitting_px: float = FITTING_PX) -> pd.DataFrame:
    """One row per frame: the worst landmark's score for each criterion, and the three flags.

    Columns: ``jump_px`` (largest move), ``min_likelihood``, ``fitting_px`` (largest distance),
    ``jump``, ``uncertain``, ``fitting`` (bool) and ``n_flags`` (how many of the three hold).
    A missing score never raises a flag.
    """
    with warnings.catch_warnings():  # frames where every point is missing: NaN scores, no flag
        warnings.simplefilter("ignore", RuntimeWarning)
        table = pd.DataFrame({
            "jump_px": np.nanmax(scores.jump_px, axis=1),
            "min_likelihood": (np.nanmin(scores.likelihood, axis=1) if scores.likelihood is not None
                               else np.full(len(scores.jump_px), np.nan)),
            "fitting_px": np.nanmax(scores.fitting_px, axis=1),
        })
    table["jump"] = table["jump_px"] > jump_px
    table["uncertain"] = table["min_likelihood"] < p
    table["fitting"] = table["fitting_px"] > fitting_px
    table["n_flags"] = table[["jump", "uncertain", "fitting"]].sum(axis=1)
    return table
