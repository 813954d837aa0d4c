"""How well an uncertainty predicts the error: ROC AUC and the reliability table.

Pure numpy and pandas. ``roc_auc`` is the Mann-Whitney statistic: the chance that a point whose
error is above the threshold gets a higher score than a point whose error is not, ties counting
one half; it equals the pairwise count (tested) without forming the pairs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cnnkit.errors import DataError

#: "a point is wrong" for the AUC: 10 px, the figure the issue uses on lips-via (likelihood AUC 0.561)
ERROR_PX = 10.0


def roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for the boolean ``positive``; NaN scores are dropped.

    Returns NaN when there are no positives or no negatives.

    Example:
        >>> roc_auc(np.array([0.1, 0.4, 0.4, 0.9]), np.array([False, False, True, True]))
        0.875
    """
    score = np.asarray(score, dtype=np.float64).ravel()
    positive = np.asarray(positive, dtype=bool).ravel()
    if score.shape != positive.shape:
        raise DataError(f"score and positive differ in size: {score.size} and {positive.size}")
    keep = np.isfinite(score)
    score, positive = score[keep], positive[keep]
    n_pos = int(positive.sum())
    n_neg = len(score) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(score)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks.

    Example:
        >>> average_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist()
        [3.5, 1.0, 3.5, 2.0]
    """
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # rank of the last member of each group of equal values
    return (last - (counts - 1) / 2.0)[inverse.ravel()]


def error_auc(score: np.ndarray, error_px: np.ndarray, threshold_px: float = ERROR_PX) -> float:
    """ROC AUC of ``score`` (higher = less sure) for "error above ``threshold_px``"; NaN errors dropped."""
    error_px = np.asarray(error_px, dtype=np.float64).ravel()
    score = np.asarray(score, dtype=np.float64).ravel()
    keep = np.isfinite(error_px)
    return roc_auc(score[keep], error_px[keep] > threshold_px)


def reliability_table(predicted_px: np.ndarray, observed_px: np.ndarray, *, n_bins: int = 10) -> pd.DataFrame:
    """Points binned by predicted error (equal counts, smallest first): predicted vs observed mean error.

    Columns: ``bin``, ``n``, ``predicted_from``, ``predicted_to`` (the bin's range), ``predicted_px``
    and ``observed_px`` (means), ``observed_p90_px``. A calibrated uncertainty has
    ``observed_px == predicted_px`` in every bin. Pairs with a NaN are dropped.
    """
    pred = np.asarray(predicted_px, dtype=np.float64).ravel()
    obs = np.asarray(observed_px, dtype=np.float64).ravel()
    if pred.shape != obs.shape:
        raise DataError(f"predicted and observed differ in size: {pred.size} and {obs.size}")
    if n_bins < 1:
        raise DataError(f"n_bins must be >= 1. Received {n_bins}")
    keep = np.isfinite(pred) & np.isfinite(obs)
    order = np.argsort(pred[keep], kind="stable")
    pred, obs = pred[keep][order], obs[keep][order]
    rows = []
    for i, idx in enumerate(np.array_split(np.arange(len(pred)), min(n_bins, len(pred))) if len(pred) else []):
        rows.append({"bin": i, "n": len(idx), "predicted_from": pred[idx[0]], "predicted_to": pred[idx[-1]],
                     "predicted_px": pred[idx].mean(), "observed_px": obs[idx].mean(),
                     "observed_p90_px": np.percentile(obs[idx], 90)})
    return pd.DataFrame(rows, columns=["bin", "n", "predicted_from", "predicted_to", "predicted_px",
                                       "observed_px", "observed_p90_px"])


def calibration_error(table: pd.DataFrame) -> float:
    """The mean absolute gap between predicted and observed error over a reliability table's bins, px,
    weighted by the bins' counts (the expected calibration error, in pixels)."""
    if table.empty:
        return float("nan")
    gap = (table["observed_px"] - table["predicted_px"]).abs()
    return float((gap * table["n"]).sum() / table["n"].sum())
