"""Numbers for the report that ``evaluate`` does not give: PCK curves, confused landmarks, per-class rates.

Pure numpy/pandas; nothing here reads files or changes its inputs.

Convention:
    Points are ``(N, K, 2)`` ``(x, y)`` original-image pixels, NaN where missing; errors are
    ``(N, K)`` pixel distances, NaN where either point is missing (``train.metrics.point_errors``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

_CHUNK = 256  # images per block of the (N, K, K) distance array: bounded memory with 68 points


def pck_curve(relative: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Fraction of present points whose error is below each threshold (strictly, as ``evaluate``'s PCK).

    Args:
        relative: errors of any shape (pixels, or divided by a normaliser); NaN = missing, left out.
        thresholds: (T,) increasing thresholds in the same unit.

    Returns:
        (T,) fractions in [0, 1]; NaN everywhere when no point is present.

    Example:
        >>> pck_curve(np.array([[1.0, 3.0], [np.nan, 5.0]]), np.array([0.0, 2.0, 6.0])).tolist()
        [0.0, 0.3333333333333333, 1.0]
    """
    values = np.sort(relative[np.isfinite(relative)])
    if values.size == 0:
        return np.full(len(thresholds), np.nan)
    return np.searchsorted(values, thresholds, side="left") / values.size


def thresholds_up_to(errors: np.ndarray, n: int = 101) -> np.ndarray:
    """(n,) thresholds from 0 to a little past the 99th percentile of the present errors."""
    finite = errors[np.isfinite(errors)]
    top = float(np.percentile(finite, 99)) * 1.1 if finite.size else 1.0
    return np.linspace(0.0, top if top > 0 else 1.0, n)


def nearest_true(pred_px: np.ndarray, true_px: np.ndarray) -> np.ndarray:
    """For each predicted point, the index of the nearest PRESENT true point of the same image.

    Shapes:
        pred_px, true_px: (N, K, 2) -> (N, K) int64; -1 where the prediction or every true point is missing.
    """
    out = np.full(pred_px.shape[:2], -1, dtype=np.int64)
    for start in range(0, len(pred_px), _CHUNK):
        p, t = pred_px[start:start + _CHUNK], true_px[start:start + _CHUNK]
        dist = np.sqrt(((p[:, :, None, :] - t[:, None, :, :]) ** 2).sum(-1))  # (B, K, K): pred k vs true j
        dist = np.where(np.isfinite(dist), dist, np.inf)
        best = dist.argmin(axis=2)
        ok = np.isfinite(dist.min(axis=2))
        out[start:start + _CHUNK] = np.where(ok, best, -1)
    return out


def landmark_confusions(pred_px: np.ndarray, true_px: np.ndarray, names: Sequence[str],
                        pairs: Sequence[tuple[str, str]] = ()) -> pd.DataFrame:
    """Which landmarks are predicted nearer ANOTHER landmark's true point than their own.

    A prediction of landmark k counts as confused with j when, among the image's present true
    points, j's is the nearest to it (only images where k's own true point is present count).

    Returns:
        One row per (landmark, nearer_to) that happened, most frequent first: ``landmark``,
        ``nearer_to``, ``images`` (count), ``rate`` (count / images where ``landmark`` is present
        and predicted), ``pair`` (True for a declared left/right pair).
    """
    nearest = nearest_true(pred_px, true_px)
    own = np.isfinite(true_px).all(-1) & np.isfinite(pred_px).all(-1)  # (N, K)
    counted = own.sum(axis=0)
    pair_set = {frozenset(p) for p in pairs}
    rows = []
    k_idx = np.broadcast_to(np.arange(len(names)), nearest.shape)
    wrong = own & (nearest >= 0) & (nearest != k_idx)
    counts = _pair_counts(nearest, wrong, len(names))
    for k, j in zip(*np.nonzero(counts), strict=True):
        n = int(counts[k, j])
        rows.append({"landmark": names[k], "nearer_to": names[j], "images": n, "rate": n / max(int(counted[k]), 1),
                     "pair": frozenset((names[k], names[j])) in pair_set})
    frame = pd.DataFrame(rows, columns=["landmark", "nearer_to", "images", "rate", "pair"])
    return frame.sort_values(["rate", "images"], ascending=False, kind="stable").reset_index(drop=True)


def _pair_counts(nearest: np.ndarray, wrong: np.ndarray, k: int) -> np.ndarray:
    """(K, K) counts of (own landmark, nearest other landmark) over the confused predictions."""
    own = np.broadcast_to(np.arange(k), nearest.shape)[wrong]
    return np.bincount(own * k + nearest[wrong], minlength=k * k).reshape(k, k)


def swap_table(pred_px: np.ndarray, true_px: np.ndarray, names: Sequence[str],
               pairs: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """Left/right swaps per declared pair: how often a prediction lies nearer its partner's true point.

    Only images where both true points and both predictions are present count.

    Returns:
        One row per pair: ``left``, ``right``, ``images``, ``left_nearer_right`` and
        ``right_nearer_left`` (fractions), ``both_swapped`` (fraction of images where both are).
    """
    index = {n: i for i, n in enumerate(names)}
    rows = []
    for left, right in pairs:
        if left not in index or right not in index:
            continue
        a, b = index[left], index[right]
        p, t = pred_px[:, [a, b]], true_px[:, [a, b]]
        ok = np.isfinite(p).all((1, 2)) & np.isfinite(t).all((1, 2))
        d = np.sqrt(((p[ok][:, :, None] - t[ok][:, None]) ** 2).sum(-1))  # (n, 2 pred, 2 true)
        a_swapped, b_swapped = d[:, 0, 1] < d[:, 0, 0], d[:, 1, 0] < d[:, 1, 1]
        n = int(ok.sum())
        rows.append({"left": left, "right": right, "images": n, "left_nearer_right": _mean(a_swapped),
                     "right_nearer_left": _mean(b_swapped), "both_swapped": _mean(a_swapped & b_swapped)})
    return pd.DataFrame(rows, columns=["left", "right", "images", "left_nearer_right", "right_nearer_left",
                                       "both_swapped"])


def _mean(flags: np.ndarray) -> float:
    return float(flags.mean()) if flags.size else float("nan")


def mean_shape(true_px: np.ndarray) -> np.ndarray:
    """(K, 2) average shape after centring each image's points and scaling them to unit spread.

    Images differ in size and framing, so raw means would blur; NaN where a landmark is never present.
    """
    centre = np.nanmean(true_px, axis=1, keepdims=True)
    spread = np.sqrt(np.nanmean(((true_px - centre) ** 2).sum(-1), axis=1))[:, None, None]
    spread = np.where(spread > 0, spread, np.nan)
    with np.errstate(all="ignore"):
        return np.nanmean((true_px - centre) / spread, axis=0)


def class_table(counts: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """Per-class rates from a confusion matrix (rows = true class, columns = predicted).

    Returns:
        One row per class: ``#`` (its index, as on the confusion matrix's axes), ``class``, ``images``
        (true count), ``predicted`` (count), ``precision``, ``recall`` (= sensitivity), ``specificity``
        (TN / (TN + FP), the class as positive), ``f1``.
        0/0 is NaN.

    Example:
        >>> class_table(np.array([[3, 1], [0, 2]]), ["a", "b"])["specificity"].round(3).tolist()
        [1.0, 0.75]
    """
    m = np.asarray(counts, dtype=np.float64)
    tp, total = np.diag(m), m.sum()
    fp, fn = m.sum(axis=0) - tp, m.sum(axis=1) - tp
    tn = total - tp - fp - fn
    with np.errstate(all="ignore"):
        precision, recall, specificity = tp / (tp + fp), tp / (tp + fn), tn / (tn + fp)
        f1 = 2 * precision * recall / (precision + recall)
    return pd.DataFrame({"#": np.arange(len(classes)), "class": list(classes), "images": m.sum(axis=1).astype(int),
                         "predicted": m.sum(axis=0).astype(int), "precision": precision, "recall": recall,
                         "specificity": specificity, "f1": f1})
