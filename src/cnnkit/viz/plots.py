"""PNG plots of training curves, landmark overlays and class predictions.

Takes arrays and DataFrames only. matplotlib is imported inside the functions; figures are
built as ``matplotlib.figure.Figure`` objects rendered by the Agg canvas, never through the
global pyplot state, so nothing here opens a window or changes the caller's backend.

Convention:
    Points are ``(x, y)`` corner-origin pixels (x right, y down). Images are drawn with
    ``extent=(0, W, H, 0)`` so the axes' data coordinates ARE those pixel coordinates: a
    point at ``(0, 0)`` sits on the top-left corner of the first pixel, not its centre.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cnnkit.atomic import atomic_path
from cnnkit.errors import DataError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
CELL_INCHES = 3.0  # each grid cell is CELL_INCHES * DPI pixels square
TRUE_COLOUR, PRED_COLOUR, LINK_COLOUR = "lime", "red", "yellow"
_HIGHER_IS_BETTER = ("accuracy", "pck", "f1", "precision", "recall")
_MAIN_METRICS = ("val_error_px_mean", "val_accuracy", "val_nme", "val_error_px_median", "val_pck")


def plot_history(history: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Loss curves (left) and the main validation metric (right), saved as a 1000x400 px PNG.

    Args:
        history: one row per epoch with an ``epoch`` column, loss columns (``*loss``) and
            metric columns such as ``val_error_px_mean`` or ``val_accuracy``.
        path: PNG file to write (atomically); parent folders are created.

    Returns:
        ``Path(path)``.
    """
    if not isinstance(history, pd.DataFrame) or "epoch" not in history.columns or history.empty:
        got = list(history.columns) if isinstance(history, pd.DataFrame) else type(history).__name__
        raise DataError(f"plot_history needs a non-empty DataFrame with an 'epoch' column. Received: {got}")
    fig = _figure(10.0, 4.0)
    draw_curves(fig, history, no_metric="no metric column")
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.9, wspace=0.25)
    return _save(fig, path)


def draw_curves(fig: Any, history: pd.DataFrame, *, no_metric: str) -> None:
    """Losses per epoch on the left, the main validation metric with its best epoch on the right."""
    ax_loss, ax_metric = fig.subplots(1, 2)
    epochs = history["epoch"].to_numpy()
    for col in [c for c in history.columns if str(c).endswith("loss")]:
        ax_loss.plot(epochs, history[col].to_numpy(dtype=float), marker=".", label=str(col))
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    if ax_loss.lines:
        ax_loss.legend()
    for ax in (ax_loss, ax_metric):
        ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers
    metric = _main_metric(history)
    if metric is None:
        ax_metric.set_axis_off()
        ax_metric.text(0.5, 0.5, no_metric, ha="center", va="center")
    else:
        _plot_metric(ax_metric, epochs, history[metric].to_numpy(dtype=float), metric)


def _main_metric(history: pd.DataFrame) -> str | None:
    for name in _MAIN_METRICS:
        if name in history.columns:
            return name
    others = [c for c in history.columns if str(c).startswith("val_") and not str(c).endswith("loss")]
    return str(others[0]) if others else None


def _plot_metric(ax: Axes, epochs: np.ndarray, values: np.ndarray, name: str) -> None:
    ax.plot(epochs, values, marker=".", color="tab:green", label=name)
    if np.isfinite(values).any():
        higher = any(word in name for word in _HIGHER_IS_BETTER)
        best = int(np.nanargmax(values) if higher else np.nanargmin(values))
        ax.scatter([epochs[best]], [values[best]], s=60, color="tab:red", zorder=3, label="best")
        ax.set_title(f"{name} (best {values[best]:.4g} at epoch {epochs[best]})")
    ax.set(xlabel="epoch", ylabel=name)
    ax.legend()


def plot_landmarks(
    images: np.ndarray,
    true_px: np.ndarray | None,
    pred_px: np.ndarray | None,
    path: str | os.PathLike[str],
    *,
    names: Sequence[str] | None = None,
    titles: Sequence[str] | None = None,
    max_images: int = 16,
) -> Path:
    """Grid of images with true (green circles) and predicted (red crosses) landmarks.

    A yellow line joins each true point to its prediction. NaN points are skipped. The PNG is
    ``ncols * 300`` x ``nrows * 300`` px with ``ncols = ceil(sqrt(n))``, n = min(N, max_images).

    Args:
        images: (N, H, W, C) or (N, H, W) uint8 (or floats in [0, 1]).
        true_px, pred_px: (N, K, 2) corner-origin pixels of these images, or None.
        path: PNG file to write (atomically).
        names: K landmark names, written beside the true (else predicted) points.
        titles: N titles, e.g. file names or per-image errors.
        max_images: draw at most this many (the first ones).

    Returns:
        ``Path(path)``.
    """
    imgs = _check_images(images)
    n = min(len(imgs), max_images)
    true_pts = _check_points(true_px, len(imgs), "true_px")
    pred_pts = _check_points(pred_px, len(imgs), "pred_px")
    fig, axes = _grid(n)
    for i, ax in enumerate(axes[:n]):
        _draw_image(ax, imgs[i])
        t = None if true_pts is None else true_pts[i]
        p = None if pred_pts is None else pred_pts[i]
        if t is not None and p is not None:
            _draw_links(ax, t, p)
        if t is not None:
            _draw_points(ax, t, marker="o", colour=TRUE_COLOUR)
        if p is not None:
            _draw_points(ax, p, marker="x", colour=PRED_COLOUR)
        if names is not None:
            _draw_names(ax, t if t is not None else p, names)
        if titles is not None and i < len(titles):
            ax.set_title(str(titles[i]), fontsize=8)
    return _save(fig, path)


def plot_classes(
    images: np.ndarray,
    true: Sequence[str] | None,
    pred: Sequence[str],
    path: str | os.PathLike[str],
    *,
    probs: Sequence[float] | np.ndarray | None = None,
    max_images: int = 16,
) -> Path:
    """Grid of images titled ``"true / pred (p)"``, green when right and red when wrong.

    Args:
        images: (N, H, W, C) or (N, H, W) uint8 (or floats in [0, 1]).
        true: N true labels, or None (titles then show only the prediction, in black).
        pred: N predicted labels.
        path: PNG file to write (atomically); same size rule as ``plot_landmarks``.
        probs: N probabilities of the predicted class, or (N, n_classes) (the row maximum is shown).
        max_images: draw at most this many.

    Returns:
        ``Path(path)``.
    """
    imgs = _check_images(images)
    if len(pred) != len(imgs) or (true is not None and len(true) != len(imgs)):
        raise DataError(
            f"plot_classes: {len(imgs)} images but {len(pred)} predictions and "
            f"{'no' if true is None else len(true)} true labels; give one label per image."
        )
    p_shown = None if probs is None else np.asarray(probs, dtype=float)
    if p_shown is not None and p_shown.ndim == 2:
        p_shown = p_shown.max(axis=1)
    n = min(len(imgs), max_images)
    fig, axes = _grid(n)
    for i, ax in enumerate(axes[:n]):
        _draw_image(ax, imgs[i])
        text = f"{pred[i]}" + ("" if p_shown is None else f" ({p_shown[i]:.2f})")
        colour = "black"
        if true is not None:
            text, colour = f"{true[i]} / {text}", ("green" if true[i] == pred[i] else "red")
        ax.set_title(text, fontsize=9, color=colour)
    return _save(fig, path)


def show_image_points(
    image: np.ndarray,
    points: np.ndarray | None,
    *,
    ax: Axes | None = None,
    names: Sequence[str] | None = None,
) -> Axes:
    """Draw one image with its (K, 2) corner-origin points as red crosses; return the Axes.

    With ``ax=None`` a new pyplot figure is made, so a notebook displays it; call
    ``matplotlib.pyplot.show()`` yourself in a script. NaN points are skipped.
    """
    img = _check_images(np.asarray(image)[None])[0]
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots()
    _draw_image(ax, img)
    if points is not None:
        pts = np.asarray(points, dtype=float).reshape(-1, 2)
        _draw_points(ax, pts, marker="x", colour=PRED_COLOUR)
        if names is not None:
            _draw_names(ax, pts, names)
    return ax


def _check_images(images: np.ndarray) -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] not in (3, 4)) or len(arr) == 0:
        raise DataError(
            f"images must be a non-empty (N, H, W, C) array with C in 1, 3, 4, or (N, H, W). "
            f"Received shape {arr.shape}."
        )
    return arr


def _check_points(points: np.ndarray | None, n: int, name: str) -> np.ndarray | None:
    if points is None:
        return None
    arr = np.asarray(points, dtype=float)
    if arr.ndim != 3 or arr.shape[0] != n or arr.shape[2] != 2:
        raise DataError(f"{name} must be (N, K, 2) with N={n} (one row per image). Received {arr.shape}.")
    return arr


def _figure(width_in: float, height_in: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=DPI)


def _grid(n: int) -> tuple[Figure, list[Axes]]:
    ncols = max(1, math.ceil(math.sqrt(n)))
    nrows = max(1, math.ceil(n / ncols))
    fig = _figure(ncols * CELL_INCHES, nrows * CELL_INCHES)
    axes = list(np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel())
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.93, wspace=0.05, hspace=0.15)
    for ax in axes:
        ax.set_axis_off()
    return fig, axes


def _draw_image(ax: Axes, image: np.ndarray) -> None:
    h, w = image.shape[:2]
    grey = image.ndim == 2
    ax.imshow(image, cmap="gray" if grey else None, vmin=0, vmax=255 if image.dtype == np.uint8 else 1,
              extent=(0, w, h, 0), interpolation="nearest")  # fmt: skip
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_axis_off()


def _draw_points(ax: Axes, points: np.ndarray, *, marker: str, colour: str) -> None:
    ok = np.isfinite(points).all(axis=1)
    if not ok.any():
        return
    if marker == "o":
        ax.scatter(points[ok, 0], points[ok, 1], s=30, facecolors="none", edgecolors=colour, linewidths=1.2)
    else:
        ax.scatter(points[ok, 0], points[ok, 1], s=30, marker=marker, c=colour, linewidths=1.5)


def _draw_links(ax: Axes, true: np.ndarray, pred: np.ndarray) -> None:
    for t, p in zip(true, pred, strict=True):
        if np.isfinite(t).all() and np.isfinite(p).all():
            ax.plot([t[0], p[0]], [t[1], p[1]], color=LINK_COLOUR, linewidth=0.8)


def _draw_names(ax: Axes, points: np.ndarray | None, names: Sequence[str]) -> None:
    if points is None:
        return
    if len(names) != len(points):
        raise DataError(
            f"names has {len(names)} entries but there are {len(points)} landmarks; give one per point."
        )
    for (x, y), name in zip(points, names, strict=True):
        if math.isfinite(x) and math.isfinite(y):
            ax.annotate(
                str(name), (x, y), xytext=(3, 3), textcoords="offset points", fontsize=6, color="white"
            )


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Render to a temporary file beside ``path``, then rename: readers never see half a PNG."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return Path(path)
