"""Charts and thumbnails for the run report, returned as PNG/JPEG bytes to embed in a page.

Takes arrays and DataFrames only. Charts are matplotlib ``Figure`` objects rendered by the Agg
canvas (never pyplot's global state); thumbnails are drawn with Pillow on a downscaled image,
which keeps a page of a dozen photos to a few hundred kB.

Convention:
    Points are ``(K, 2)`` ``(x, y)`` pixels of the image they are drawn on, corner origin;
    NaN points are skipped.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cnnkit.viz.plots import draw_curves

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 80
TRUE_RGB, PRED_RGB, LINK_RGB, UNSURE_RGB = (0, 230, 64), (255, 40, 40), (255, 230, 0), (255, 150, 0)
LABELLED_MAX = 40  # above this many landmarks / classes, ticks and names would overlap: leave them out


def _figure(width_in: float, height_in: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=DPI)


def png_bytes(fig: Figure) -> bytes:
    """Render a figure to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})  # no tool banner in every image
    return buf.getvalue()


def curves_png(history: pd.DataFrame) -> bytes:
    """Loss per epoch (left) and the main validation metric with its best epoch (right)."""
    fig = _figure(10.0, 3.6)
    draw_curves(fig, history, no_metric="no validation metric (no validation split)")
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.15, top=0.9, wspace=0.25)
    return png_bytes(fig)


def reliability_png(tables: Mapping[str, pd.DataFrame], *, threshold_px: float | None = None) -> bytes:
    """The reliability plot (predicted vs observed error per bin, :mod:`cnnkit.viz.reliability`) as PNG bytes."""
    from cnnkit.viz.reliability import draw_reliability

    fig = _figure(5.0, 5.0)
    draw_reliability(fig, tables, threshold_px=threshold_px)
    fig.tight_layout()
    return png_bytes(fig)


def bars_png(labels: Sequence[str], values: np.ndarray, *, xlabel: str, reference: float | None = None,
             reference_label: str = "") -> bytes:
    """Horizontal bars in the given order (first on top), with an optional vertical reference line."""
    n = len(labels)
    fig = _figure(7.0, 0.9 + 0.17 * max(n, 3))
    ax = fig.subplots()
    y = np.arange(n)
    vals = np.nan_to_num(np.asarray(values, dtype=float), nan=0.0)
    ax.barh(y, vals, color="tab:blue", height=0.7)
    ax.set_yticks(y, [str(s) for s in labels], fontsize=8 if n <= LABELLED_MAX else 6)
    ax.invert_yaxis()
    if reference is not None and np.isfinite(reference):
        ax.axvline(reference, color="tab:red", linestyle="--", linewidth=1, label=reference_label)
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return png_bytes(fig)


def pck_png(t_px: np.ndarray, frac_px: np.ndarray, t_rel: np.ndarray, frac_rel: np.ndarray, *,
            marked: tuple[float, float] | None = None, norm_label: str = "NME") -> bytes:
    """PCK curves: fraction of points within t pixels (left) and within t x the normaliser (right)."""
    fig = _figure(10.0, 3.4)
    ax_px, ax_rel = fig.subplots(1, 2)
    ax_px.plot(t_px, frac_px, color="tab:blue")
    ax_px.set(xlabel="threshold t (pixels, original image)", ylabel="fraction of points within t",
              ylim=(0, 1.02), xlim=(0, t_px[-1]))
    ax_rel.plot(t_rel, frac_rel, color="tab:purple")
    ax_rel.set(xlabel=f"threshold t (x {norm_label})", ylim=(0, 1.02), xlim=(0, t_rel[-1]))
    if marked is not None and np.isfinite(marked[1]):
        ax_rel.scatter([marked[0]], [marked[1]], color="tab:red", zorder=3,
                       label=f"PCK@{marked[0]:g} = {marked[1]:.3f}")
        ax_rel.legend(loc="lower right")
    for ax in (ax_px, ax_rel):
        ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.16, top=0.95, wspace=0.2)
    return png_bytes(fig)


def histogram_png(errors_px: np.ndarray, *, baseline_px: float | None = None) -> bytes:
    """Histogram of per-point errors, with the mean and median (and the baseline's mean) marked.

    The x axis ends at the 99.5th percentile (the rest piles up at the right edge); a baseline far
    beyond that is named in the legend rather than squeezing the histogram into a corner.
    """
    finite = errors_px[np.isfinite(errors_px)]
    fig = _figure(7.0, 3.2)
    ax = fig.subplots()
    top = float(np.percentile(finite, 99.5)) if finite.size else 1.0
    top = top if top > 0 else 1.0
    if baseline_px is not None and np.isfinite(baseline_px) and baseline_px <= 2 * top:
        top = max(top, 1.05 * baseline_px)
    ax.hist(np.clip(finite, 0, top), bins=50, range=(0, top), color="tab:blue", alpha=0.8)
    lines = [("mean", float(finite.mean()) if finite.size else np.nan, "tab:red"),
             ("median", float(np.median(finite)) if finite.size else np.nan, "tab:orange")]
    if baseline_px is not None:
        lines.append(("mean-shape baseline (mean)", baseline_px, "tab:gray"))
    for name, value, colour in lines:
        if np.isfinite(value):
            beyond = value > top
            ax.axvline(min(value, top), color=colour, linestyle="--", alpha=0 if beyond else 1,
                       label=f"{name} {value:.3g} px" + (" (off the axis, right)" if beyond else ""))
    ax.set(xlabel="error per point (pixels, original image; the top 0.5 % piled at the right edge)",
           ylabel="points", xlim=(0, top))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


def confusion_png(counts: np.ndarray, classes: Sequence[str]) -> bytes:
    """Confusion matrix coloured by row share (recall); counts written in the cells when few classes."""
    n = len(classes)
    side = float(np.clip(2.5 + 0.4 * n, 4.5, 9.0))
    fig = _figure(side + 1.2, side)
    ax = fig.subplots()
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if n <= LABELLED_MAX:
        ax.set_xticks(range(n), [str(c) for c in classes], rotation=90 if n > 4 else 0, fontsize=9)
        ax.set_yticks(range(n), [str(c) for c in classes], fontsize=9)
    if n <= 15:
        for (i, j), value in np.ndenumerate(counts):
            ax.text(j, i, str(int(value)), ha="center", va="center", fontsize=9,
                    color="white" if share[i, j] > 0.6 else "black")
    what = "" if n <= LABELLED_MAX else " (# in the per-class table)"
    ax.set(xlabel=f"predicted class{what}", ylabel=f"true class{what}")
    fig.tight_layout()
    return png_bytes(fig)


def skeleton_png(shape: np.ndarray, names: Sequence[str], pairs: Sequence[tuple[int, int]],
                 confusions: Sequence[tuple[int, int, float]]) -> bytes:
    """The average shape with declared left/right pairs (grey, dashed) and confusions (red arrows).

    Args:
        shape: (K, 2) mean shape, y down (any scale).
        names: K landmark names (written when there are few).
        pairs: index pairs declared left/right partners.
        confusions: (k, j, rate): predictions of k lay nearest j's true point in ``rate`` of images.
    """
    ok = np.isfinite(shape).all(axis=1)
    span = np.ptp(shape[ok], axis=0) if ok.sum() > 1 else np.ones(2)
    aspect = float(span[1] / span[0]) if span[0] > 0 else 1.0
    fig = _figure(6.0, float(np.clip(6.0 * aspect, 2.2, 6.0)))  # as tall as the shape: wide lips, no blank band
    ax = fig.subplots()
    ax.margins(0.12)
    for a, b in pairs:
        if ok[a] and ok[b]:
            ax.plot(*shape[[a, b]].T, color="0.6", linestyle="--", linewidth=1)
    top = max((r for _, _, r in confusions), default=1.0) or 1.0
    for k, j, rate in confusions:
        if ok[k] and ok[j]:
            ax.annotate("", xy=shape[j], xytext=shape[k], arrowprops={
                "arrowstyle": "->", "color": "tab:red", "alpha": 0.35 + 0.65 * rate / top,
                "linewidth": 0.8 + 3.0 * rate / top, "shrinkA": 3, "shrinkB": 3})
    ax.scatter(shape[ok, 0], shape[ok, 1], s=18, color="tab:blue", zorder=3)
    if len(names) <= LABELLED_MAX:
        for i in np.flatnonzero(ok):
            ax.annotate(str(names[int(i)]), shape[i], xytext=(4, 3), textcoords="offset points", fontsize=9)
    ax.invert_yaxis()
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_axis_off()
    fig.tight_layout()
    return png_bytes(fig)


def overlay_jpeg(image: np.ndarray, true_px: np.ndarray | None, pred_px: np.ndarray | None, *,
                 likelihood: np.ndarray | None = None, unsure_below: float = 0.5, quality: int = 82) -> bytes:
    """A (small) image with true points (green rings), predictions (red crosses; orange when
    ``likelihood`` < ``unsure_below``) and a yellow line from each true point to its prediction."""
    from PIL import Image, ImageDraw

    arr = np.asarray(image)
    im = Image.fromarray(arr if arr.ndim == 3 else np.repeat(arr[..., None], 3, axis=2)).convert("RGB")
    draw = ImageDraw.Draw(im)
    k = len(pred_px) if pred_px is not None else (len(true_px) if true_px is not None else 0)
    r = max(1.5, min(im.size) / (70 if k <= 20 else 120))  # 68 points at 70: a solid blob of markers
    if true_px is not None and pred_px is not None:
        for t, p in zip(true_px, pred_px, strict=True):
            if np.isfinite(t).all() and np.isfinite(p).all():
                draw.line([tuple(t), tuple(p)], fill=LINK_RGB, width=1)
    for x, y in _present(true_px):
        draw.ellipse([x - r, y - r, x + r, y + r], outline=TRUE_RGB, width=max(1, int(r / 2)))
    for k, (x, y) in _present(pred_px, keep_index=True):
        unsure = likelihood is not None and np.isfinite(likelihood[k]) and likelihood[k] < unsure_below
        colour = UNSURE_RGB if unsure else PRED_RGB
        draw.line([(x - r, y - r), (x + r, y + r)], fill=colour, width=max(1, int(r / 2)))
        draw.line([(x - r, y + r), (x + r, y - r)], fill=colour, width=max(1, int(r / 2)))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def _present(points: np.ndarray | None, *, keep_index: bool = False) -> list[Any]:
    if points is None:
        return []
    out = [(k, (float(x), float(y))) for k, (x, y) in enumerate(points) if np.isfinite(x) and np.isfinite(y)]
    return out if keep_index else [p for _, p in out]
