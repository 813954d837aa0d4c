"""Pure evaluation metrics for landmarks and classes.

Inputs may be torch tensors (any device) or numpy arrays; outputs are python floats,
numpy arrays or DataFrames. Nothing here changes its inputs.

Convention (landmarks):
    Points are ``(B, K, 2)`` ``(x, y)`` in ORIGINAL image pixels (the caller maps model
    outputs back), corner origin. NaN marks a missing point; missing points are left out
    of every mean, median and count, never treated as zero.

Meters:
    ``LandmarkMeter`` and ``ClassMeter`` take batches and compute from sums and counts, so
    results do not depend on how the data was batched. Under DDP the ranks' inference outputs
    are gathered and merged first (``cnnkit.train.distributed.merge_outputs``), then scored once.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from torch import Tensor

from cnnkit.errors import ConfigError, did_you_mean

ArrayLike = Tensor | np.ndarray | Sequence[Any]
Norm = str | tuple[str, str]


#: A point counts as correct (PCK) when its error over the normaliser is below this.
PCK_THRESHOLD = 0.05

def to_numpy(x: ArrayLike, dtype: Any = np.float64) -> np.ndarray:
    """A numpy copy of a tensor (any device, detached) or array, cast to ``dtype``."""
    if isinstance(x, Tensor):
        x = x.detach().cpu()
        x = (x.double() if x.is_floating_point() else x).numpy()  # bf16/fp16 have no numpy dtype
    return np.array(x, dtype=dtype, copy=True)


def _points(x: ArrayLike, name: str) -> np.ndarray:
    arr = to_numpy(x)
    if arr.ndim != 3 or arr.shape[-1] != 2:
        raise ValueError(f"{name}: expected (B, K, 2) points in pixels. Received shape {arr.shape}")
    return arr


def point_errors(pred_px: ArrayLike, true_px: ArrayLike) -> np.ndarray:
    """Euclidean error per point.

    Shapes:
        pred_px, true_px: (B, K, 2) original-image pixels -> (B, K); NaN where either point is missing.

    Example:
        >>> point_errors(np.array([[[3.0, 4.0]]]), np.zeros((1, 1, 2))).tolist()
        [[5.0]]
    """
    pred, true = _points(pred_px, "pred_px"), _points(true_px, "true_px")
    if pred.shape != true.shape:
        raise ValueError(f"pred_px and true_px shapes differ: {pred.shape} vs {true.shape}")
    return np.sqrt(((pred - true) ** 2).sum(axis=-1))  # NaN propagates from missing points


def normalisers(true_px: ArrayLike, *, norm: Norm = "diagonal", names: Sequence[str] = ()) -> np.ndarray:
    """Per-image normalising distance for NME and PCK.

    Args:
        true_px: (B, K, 2) true points in pixels; NaN = missing.
        norm: ``'diagonal'``: the diagonal of the bounding box of the image's present true
            points; or a pair of landmark names: the distance between those two true points.
        names: landmark names in point order (needed for a pair).

    Returns:
        (B,) distances; NaN where undefined (too few present points, zero size).
    """
    true = _points(true_px, "true_px")
    if isinstance(norm, str):
        if norm != "diagonal":
            raise ConfigError(f"norm: expected 'diagonal' or a pair of landmark names. Received: {norm!r}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows give NaN, as wanted
            span = np.nanmax(true, axis=1) - np.nanmin(true, axis=1)  # (B, 2)
        dist = np.sqrt((span**2).sum(axis=-1))
    else:
        a, b = (_landmark_index(n, names) for n in norm)
        dist = np.sqrt(((true[:, a] - true[:, b]) ** 2).sum(axis=-1))
    return np.where(dist > 0, dist, np.nan)


def _landmark_index(name: str, names: Sequence[str]) -> int:
    if name not in names:
        raise ConfigError(f"norm: unknown landmark {name!r}.{did_you_mean(name, names)} Landmarks: {list(names)}")
    return list(names).index(name)


def _safe_div(num: float | np.ndarray, den: float | np.ndarray) -> float:
    return float(num / den) if float(den) > 0 else float("nan")


_LM_KEYS = ("err_sum", "err_count", "k_sum", "k_count", "nme_sum", "nme_count",
            "pck_hits", "pck_count", "base_sum", "base_count")  # fmt: skip


class LandmarkMeter:
    """Accumulates landmark errors over batches; ``compute()`` gives ``landmark_metrics``.

    Args:
        names: landmark names in point order (K of them).
        norm: ``'diagonal'`` or a pair of landmark names (see ``normalisers``).
        pck_threshold: a point is correct when error / normaliser < this.
        baseline_px: default baseline prediction for ``update``: the mean training shape,
            (K, 2) original pixels, or None.
    """

    def __init__(
        self,
        names: Sequence[str],
        *,
        norm: Norm = "diagonal",
        pck_threshold: float = PCK_THRESHOLD,
        baseline_px: ArrayLike | None = None,
    ) -> None:
        self.names = tuple(names)
        if not isinstance(norm, str):
            norm = tuple(norm)  # type: ignore[assignment]
            for n in norm:
                _landmark_index(n, self.names)
        self.norm: Norm = norm
        self.pck_threshold = float(pck_threshold)
        self.baseline_px = None if baseline_px is None else to_numpy(baseline_px)
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen so far."""
        k = len(self.names)
        self._sums = {key: np.zeros(k if key.startswith("k_") else ()) for key in _LM_KEYS}
        self._errors: list[np.ndarray] = []

    def update(self, pred_px: ArrayLike, true_px: ArrayLike, baseline_px: ArrayLike | None = None) -> None:
        """Add a batch. pred_px, true_px: (B, K, 2); baseline_px: (K, 2) or (B, K, 2), or None
        for the meter's default."""
        true = _points(true_px, "true_px")
        if true.shape[1] != len(self.names):
            raise ValueError(f"expected {len(self.names)} landmarks {list(self.names)}; received {true.shape[1]}")
        err = point_errors(pred_px, true)
        present = ~np.isnan(err)
        s = self._sums
        s["err_sum"] += err[present].sum()
        s["err_count"] += present.sum()
        s["k_sum"] += np.where(present, err, 0.0).sum(axis=0)
        s["k_count"] += present.sum(axis=0)
        self._errors.append(err[present])
        rel = err / normalisers(true, norm=self.norm, names=self.names)[:, None]  # (B, K)
        has_rel = ~np.isnan(rel)
        n_img = has_rel.sum(axis=1)
        s["nme_sum"] += (np.where(has_rel, rel, 0.0).sum(axis=1)[n_img > 0] / n_img[n_img > 0]).sum()
        s["nme_count"] += (n_img > 0).sum()
        s["pck_hits"] += (rel[has_rel] < self.pck_threshold).sum()
        s["pck_count"] += has_rel.sum()
        base = self.baseline_px if baseline_px is None else to_numpy(baseline_px)
        if base is not None:
            base_err = point_errors(np.broadcast_to(base, true.shape), true)
            s["base_sum"] += np.nansum(base_err)
            s["base_count"] += (~np.isnan(base_err)).sum()

    def compute(self) -> dict[str, float]:
        """The metrics of every batch so far (keys as ``landmark_metrics``)."""
        s = self._sums
        errors = np.concatenate(self._errors) if self._errors else np.zeros(0)
        out = {
            "error_px_mean": _safe_div(s["err_sum"], s["err_count"]),
            "error_px_median": float(np.median(errors)) if errors.size else float("nan"),
            "nme": _safe_div(s["nme_sum"], s["nme_count"]),
            "pck": _safe_div(s["pck_hits"], s["pck_count"]),
        }
        if s["base_count"] > 0:
            out["baseline_px_mean"] = _safe_div(s["base_sum"], s["base_count"])
        for i, name in enumerate(self.names):
            out[f"error_px/{name}"] = _safe_div(s["k_sum"][i], s["k_count"][i])
        return out



def landmark_metrics(
    pred_px: ArrayLike,
    true_px: ArrayLike,
    *,
    names: Sequence[str],
    norm: Norm = "diagonal",
    pck_threshold: float = PCK_THRESHOLD,
    baseline_px: ArrayLike | None = None,
) -> dict[str, float]:
    """Landmark errors in original pixels.

    Args:
        pred_px, true_px: (B, K, 2) original-image pixels; NaN = missing (left out).
        names: the K landmark names.
        norm: NME/PCK normaliser: ``'diagonal'`` (bounding box of the true points) or a
            pair of landmark names (e.g. the two eye corners).
        pck_threshold: a point counts as correct when error / normaliser < this.
        baseline_px: the mean training shape, (K, 2), or per image (B, K, 2), or None.

    Returns:
        ``error_px_mean``, ``error_px_median`` (over present points), ``nme`` (per image:
        mean error of its present points / its normaliser; then the mean over images),
        ``pck``, ``error_px/<name>`` per landmark, and ``baseline_px_mean`` (mean error of
        predicting ``baseline_px``) when a baseline is given. NaN where undefined.
    """
    meter = LandmarkMeter(names, norm=norm, pck_threshold=pck_threshold)
    meter.update(pred_px, true_px, baseline_px)
    return meter.compute()


def _class_indices(x: ArrayLike, name: str) -> np.ndarray:
    arr = to_numpy(x)
    if arr.ndim == 2:  # scores or probabilities (B, C) -> predicted index
        arr = arr.argmax(axis=1)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected class indices (B,) or scores (B, C). Received shape {arr.shape}")
    return arr.astype(np.int64)


def confusion_counts(pred: ArrayLike, true: ArrayLike, n_classes: int) -> np.ndarray:
    """(C, C) int64 counts; rows = true class, columns = predicted class.

    Example:
        >>> confusion_counts([0, 1, 1], [0, 0, 1], 2).tolist()
        [[1, 1], [0, 1]]
    """
    p, t = _class_indices(pred, "pred"), _class_indices(true, "true")
    if p.shape != t.shape:
        raise ValueError(f"pred and true lengths differ: {p.shape[0]} vs {t.shape[0]}")
    bad = [int(v) for v in np.concatenate([p, t]) if not 0 <= v < n_classes]
    if bad:
        raise ValueError(f"class indices must lie in [0, {n_classes}). Received e.g. {bad[0]}")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


class ClassMeter:
    """Accumulates a confusion matrix over batches.

    Args:
        classes: class names; the index of a name is its label.
    """

    def __init__(self, classes: Sequence[str]) -> None:
        self.classes = tuple(classes)
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen so far."""
        n = len(self.classes)
        self._counts = np.zeros((n, n), dtype=np.int64)

    def update(self, pred: ArrayLike, true: ArrayLike) -> None:
        """Add a batch. pred: indices (B,) or scores (B, C); true: indices (B,)."""
        self._counts = self._counts + confusion_counts(pred, true, len(self.classes))

    def confusion(self) -> pd.DataFrame:
        """Counts with class names: index = true class, columns = predicted class."""
        names = list(self.classes)
        return pd.DataFrame(self._counts.copy(), index=pd.Index(names, name="true"),
                            columns=pd.Index(names, name="predicted"))  # fmt: skip

    def compute(self) -> dict[str, float]:
        """``accuracy``, ``precision/<c>``, ``recall/<c>``, ``f1/<c>`` per class, ``f1_macro``;
        with two classes also the seed's ``tp, tn, fp, fn, sensitivity, specificity`` with
        class index 1 as the POSITIVE class. Undefined ratios (0/0) are NaN."""
        m = self._counts.astype(np.float64)
        tp = np.diag(m)
        out = {"accuracy": _safe_div(tp.sum(), m.sum())}
        f1s = []
        for i, name in enumerate(self.classes):
            prec, rec = _safe_div(tp[i], m[:, i].sum()), _safe_div(tp[i], m[i].sum())
            f1 = 2 * prec * rec / (prec + rec) if prec + rec > 0 else float("nan")
            out.update({f"precision/{name}": prec, f"recall/{name}": rec, f"f1/{name}": f1})
            f1s.append(f1)
        out["f1_macro"] = float(np.mean(f1s)) if f1s else float("nan")
        if len(self.classes) == 2:
            (tn, fp), (fn, tp1) = m
            out.update({"tp": tp1, "tn": tn, "fp": fp, "fn": fn,
                        "sensitivity": _safe_div(tp1, tp1 + fn), "specificity": _safe_div(tn, tn + fp)})  # fmt: skip
        return {k: float(v) for k, v in out.items()}



def class_metrics(pred: ArrayLike, true: ArrayLike, *, classes: Sequence[str]) -> dict[str, float]:
    """Classification metrics in one call; keys as ``ClassMeter.compute``.

    Args:
        pred: predicted indices (B,) or scores/probabilities (B, C).
        true: true indices (B,).
        classes: class names (index 1 is the positive class when there are two).
    """
    meter = ClassMeter(classes)
    meter.update(pred, true)
    return meter.compute()


def confusion_matrix(pred: ArrayLike, true: ArrayLike, *, classes: Sequence[str]) -> pd.DataFrame:
    """Confusion matrix as a DataFrame: index = true class, columns = predicted class."""
    meter = ClassMeter(classes)
    meter.update(pred, true)
    return meter.confusion()
