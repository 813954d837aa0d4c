"""Report sections for a landmark model: errors overall, per landmark, as curves, per image, confusions.

Every number comes from ``evaluate``'s metrics and per-image table (predicted points included),
or is computed here from the same predictions and the table's true points.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cnnkit.data.images import ImageSource
from cnnkit.data.table import AnnotationTable
from cnnkit.engine.metrics import PCK_THRESHOLD, normalisers, point_errors
from cnnkit.infer.evaluate import Evaluation
from cnnkit.reporting import analysis as A
from cnnkit.reporting.thumbs import landmark_thumbnail, short_name
from cnnkit.viz import html as H
from cnnkit.viz import report_figures as F

N_WORST, N_TYPICAL = 8, 4
MAX_LISTED = 1000  # rows of the every-image table (about 100 bytes each)
MAX_ARROWS, MIN_ARROW_RATE = 30, 0.02  # confusions drawn on the skeleton (the table lists the rest)


@dataclass(frozen=True)
class Scored:
    """Predictions and truths of the scored images, in ``per_image`` order (worst first)."""

    names: list[str]
    pairs: list[tuple[str, str]]
    per_image: pd.DataFrame
    pred: np.ndarray  # (N, K, 2) original pixels
    true: np.ndarray  # (N, K, 2) original pixels, NaN = missing
    errors: np.ndarray  # (N, K) pixels
    likelihood: np.ndarray | None  # (N, K) in [0, 1] where the predictions carry it


def scored(ev: Evaluation, table: AnnotationTable, meta: Mapping[str, Any]) -> Scored:
    """Line up ``evaluate``'s predictions with the table's true points."""
    names = list(meta.get("landmarks") or table.landmarks)
    frame = ev.per_image
    pred = np.stack([frame[[f"{n}_x" for n in names]].to_numpy(np.float64),
                     frame[[f"{n}_y" for n in names]].to_numpy(np.float64)], axis=-1)
    true = table.points()[frame["row"].to_numpy()]
    lik_cols = [f"{n}_likelihood" for n in names]
    likelihood = frame[lik_cols].to_numpy(np.float64) if all(c in frame.columns for c in lik_cols) else None
    pairs = [(str(a), str(b)) for a, b in meta.get("flip_pairs") or []]
    return Scored(names, pairs, frame, pred, true, point_errors(pred, true), likelihood)


def sections(ev: Evaluation, s: Scored, source: ImageSource, meta: Mapping[str, Any] | None = None) -> list[H.Section]:
    """Per-landmark, PCK, histogram, uncertainty (where the model has one), worst and typical images, confusions."""
    doubt = [uncertainty_section(ev, meta)] if ev.reliability is not None else []
    return [per_landmark_section(ev, s), pck_section(ev, s), histogram_section(ev, s), *doubt,
            images_section("worst", "Worst images", s, source, list(range(min(N_WORST, len(s.per_image)))),
                           listing=True),
            images_section("typical", "Typical images", s, source, typical_rows(s.per_image, N_TYPICAL)),
            confusions_section(s)]


def overview_cards(ev: Evaluation) -> list[tuple[str, Any, str]]:
    """Headline numbers: the model's mean error beside the mean-shape baseline's."""
    m = ev.metrics
    err, base = m.get("error_px_mean", np.nan), m.get("baseline_px_mean", np.nan)
    ratio = err / base if base and np.isfinite(base) else np.nan
    tone = "good" if np.isfinite(ratio) and ratio < 0.5 else ("bad" if np.isfinite(ratio) and ratio >= 1 else "")
    cards = [("mean error, px", err, tone), ("mean-shape baseline, px", base, ""),
             ("error / baseline", ratio, tone), ("median error, px", m.get("error_px_median", np.nan), ""),
             ("NME", m.get("nme", np.nan), ""), (f"PCK@{PCK_THRESHOLD:g}", m.get("pck", np.nan), ""),
             ("images", len(ev.per_image), "")]
    if "uncertainty_auc_10px" in m:
        auc = m["uncertainty_auc_10px"]
        cards.append(("uncertainty ROC AUC, > 10 px", auc, "good" if np.isfinite(auc) and auc >= 0.85 else ""))
    return cards


SIGNAL_LABELS = {"likelihood": "1 - likelihood", "spread": "ensemble spread (px)",
                 "uncertainty": "calibrated uncertainty (px)"}


def uncertainty_section(ev: Evaluation, meta: Mapping[str, Any] | None) -> H.Section:
    """How well the model's doubt predicts its error: ROC AUCs and the reliability plot (predicted vs observed)."""
    m = ev.metrics
    rows = [(SIGNAL_LABELS[k], m[f"{k}_auc_10px"]) for k in SIGNAL_LABELS if f"{k}_auc_10px" in m]
    aucs = pd.DataFrame(rows, columns=["signal", "ROC AUC, error > 10 px"])
    record = (meta or {}).get("uncertainty_measured") or ((meta or {}).get("ensemble") or {}).get("uncertainty") or {}
    how = (f"the {record.get('signal')} calibrated on {record.get('rows')} validation images at the end of training"
           if record else "a calibration recorded with the model")
    body = H.note(f"Each point's uncertainty is the error in original-image pixels the model expects for it: {how}. "
                  f"{H.fmt(m.get('points_over_10px', np.nan), 4)} of the points here are more than 10 px off; the "
                  "ROC AUC is the chance that such a point gets a higher score than a point within 10 px (0.5: "
                  "chance, 1: every bad point first).")
    body += H.table(aucs)
    assert ev.reliability is not None
    body += H.img(F.reliability_png({"calibrated uncertainty": ev.reliability}, threshold_px=10.0),
                  "predicted against observed error")
    body += H.note(f"Points binned by their uncertainty (equal counts); each dot is a bin's mean uncertainty against "
                   f"its mean observed error, the bar reaches its 90th percentile. On the diagonal the uncertainty "
                   f"means what it says; here the bins are {H.fmt(m.get('uncertainty_calibration_error_px'), 3)} px "
                   f"off it on average (uncertainty {H.fmt(m.get('uncertainty_mean_px'), 3)} px, error "
                   f"{H.fmt(m.get('error_px_mean'), 3)} px on average).")
    body += H.collapsed("the reliability table", H.table(ev.reliability))
    return H.Section("uncertainty", "Uncertainty: does it predict the error?", body)


def per_landmark_frame(s: Scored) -> pd.DataFrame:
    """One row per landmark, worst mean error first."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a landmark missing everywhere gives NaN
        frame = pd.DataFrame({
            "landmark": s.names, "mean px": np.nanmean(s.errors, axis=0),
            "median px": np.nanmedian(s.errors, axis=0), "90th pct px": np.nanpercentile(s.errors, 90, axis=0),
            "max px": np.nanmax(s.errors, axis=0), "points": np.isfinite(s.errors).sum(axis=0)})
        if s.likelihood is not None:
            frame["mean likelihood"] = np.nanmean(s.likelihood, axis=0)
    return frame.sort_values("mean px", ascending=False, na_position="last", kind="stable").reset_index(drop=True)


def per_landmark_section(ev: Evaluation, s: Scored) -> H.Section:
    frame = per_landmark_frame(s)
    bars = F.bars_png(frame["landmark"].tolist(), frame["mean px"].to_numpy(), xlabel="mean error (pixels)",
                      reference=ev.metrics.get("error_px_mean"), reference_label="mean over all points")
    body = (H.note("Mean error of each landmark in original-image pixels, worst first; missing points are left "
                   "out.") + H.img(bars, "mean error per landmark") + H.table(frame, scroll=len(frame) > 20))
    return H.Section("per-landmark", "Error per landmark", body)


def pck_section(ev: Evaluation, s: Scored) -> H.Section:
    norm = normalisers(s.true, norm="diagonal")
    relative = s.errors / norm[:, None]
    t_px, t_rel = A.thresholds_up_to(s.errors), A.thresholds_up_to(relative)
    if t_rel[-1] < 2 * PCK_THRESHOLD:  # keep evaluate's threshold well inside the axis
        t_rel = np.linspace(0.0, 2 * PCK_THRESHOLD, len(t_rel))
    t_rel = np.union1d(t_rel, [PCK_THRESHOLD])
    fig = F.pck_png(t_px, A.pck_curve(s.errors, t_px), t_rel, A.pck_curve(relative, t_rel),
                    marked=(PCK_THRESHOLD, float(ev.metrics.get("pck", np.nan))), norm_label="box diagonal")
    body = H.note("Share of points predicted within t of the truth: left in pixels, right as a fraction of the "
                  "diagonal of each image's true-point bounding box (the normaliser of NME). Higher and further "
                  "left is better.") + H.img(fig, "PCK curves")
    return H.Section("pck", "PCK curve", body)


def histogram_section(ev: Evaluation, s: Scored) -> H.Section:
    fig = F.histogram_png(s.errors.ravel(), baseline_px=ev.metrics.get("baseline_px_mean"))
    n = int(np.isfinite(s.errors).sum())
    return H.Section("histogram", "Error histogram", H.note(f"{n} points.") + H.img(fig, "error histogram"))


def typical_rows(per_image: pd.DataFrame, n: int) -> list[int]:
    """Positions of the ``n`` images whose mean error lies nearest the median image's."""
    err = per_image["error_px_mean"].to_numpy(dtype=float)
    finite = np.flatnonzero(np.isfinite(err))
    if finite.size == 0:
        return []
    median = float(np.median(err[finite]))
    order = finite[np.argsort(np.abs(err[finite] - median), kind="stable")]
    return sorted(int(i) for i in order[:n])


def images_section(sid: str, title: str, s: Scored, source: ImageSource, positions: Sequence[int],
                   *, listing: bool = False) -> H.Section:
    """Thumbnails of the images at ``positions``; with ``listing`` also every image's error, worst first."""
    items = [_thumb(s, source, i) for i in positions]
    legend = ("Green rings: true points; red crosses: predictions (orange: likelihood below 0.5); yellow lines "
              "join them. Errors in original-image pixels.")
    body = H.note(legend) + H.grid(items)
    if listing:
        body += H.collapsed(f"every image's error, worst first ({len(s.per_image)} images)", image_listing(s))
    return H.Section(sid, title, body)


def image_listing(s: Scored) -> str:
    """Per image: mean error and its worst landmark, worst first (the first MAX_LISTED rows)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an image without annotated points: NaN
        worst = np.nanmax(s.errors, axis=1)
    has = np.isfinite(s.errors).any(axis=1)
    k = np.argmax(np.where(np.isfinite(s.errors), s.errors, -np.inf), axis=1)
    frame = pd.DataFrame({"image": s.per_image["image"].map(short_name), "mean px": s.per_image["error_px_mean"],
                          "worst landmark": [s.names[i] if ok else "–" for i, ok in zip(k, has, strict=True)],
                          "its error px": worst})
    more = len(frame) - MAX_LISTED
    note = H.note(f"{more} more in `cnnkit evaluate MODEL DATA --out per_image.csv`.") if more > 0 else ""
    return H.table(frame.head(MAX_LISTED), scroll=True) + note


def _thumb(s: Scored, source: ImageSource, i: int) -> str:
    row = s.per_image.iloc[i]
    lik = None if s.likelihood is None else s.likelihood[i]
    jpeg = landmark_thumbnail(source, str(row["image"]), s.true[i], s.pred[i], lik)
    caption = f"{short_name(row['image'])}: {H.fmt(row['error_px_mean'], 3)} px mean"
    if np.isfinite(s.errors[i]).any():
        k = int(np.nanargmax(s.errors[i]))
        caption += f"; worst {s.names[k]} {H.fmt(s.errors[i, k], 3)} px"
    if lik is not None and np.isfinite(lik).any():
        caption += f"; likelihood mean {np.nanmean(lik):.2f}, min {np.nanmin(lik):.2f}"
    image = H.img(jpeg, caption, mime="image/jpeg") if jpeg is not None else H.note("image not readable")
    return H.figure(image, caption, css_class="thumb")


def confusions_section(s: Scored) -> H.Section:
    """Left/right swaps per declared pair, and which landmarks lie nearer another's true point."""
    if len(s.names) < 2:
        return H.Section("confusions", "Confused landmarks", H.note("One landmark: nothing to confuse it with."))
    conf = A.landmark_confusions(s.pred, s.true, s.names, s.pairs)
    body = H.note("A prediction is 'nearer' another landmark when that landmark's true point is the closest true "
                  "point to it. Arrows go from the landmark to the one it was mistaken for; thicker = more often. "
                  "Dashed grey lines join declared left/right pairs.")
    index = {n: i for i, n in enumerate(s.names)}
    drawn = conf[conf["rate"] >= MIN_ARROW_RATE].head(MAX_ARROWS)
    arrows = [(index[r.landmark], index[r.nearer_to], float(r.rate)) for r in drawn.itertuples()]
    pairs = [(index[a], index[b]) for a, b in s.pairs if a in index and b in index]
    body += H.img(F.skeleton_png(A.mean_shape(s.true), s.names, pairs, arrows), "confused landmarks on the mean shape")
    if s.pairs:
        body += "<h3>Left/right swaps</h3>" + H.table(swaps_frame(s))
    else:
        body += H.note("The model has no left/right pairs (flip_pairs), so no swap table.")
    if conf.empty:
        return H.Section("confusions", "Confused landmarks", body + H.note("No prediction lay nearer another "
                                                                           "landmark's true point."))
    shown = conf.head(20).assign(rate=conf["rate"].head(20).map(_percent))
    return H.Section("confusions", "Confused landmarks", body + "<h3>Most frequent</h3>" + H.table(shown))


def swaps_frame(s: Scored) -> pd.DataFrame:
    """``analysis.swap_table`` with readable headers and rates in per cent."""
    frame = A.swap_table(s.pred, s.true, s.names, s.pairs)
    rates = {"left_nearer_right": "left nearer right's point", "right_nearer_left": "right nearer left's point",
             "both_swapped": "both swapped"}
    for col in rates:
        frame[col] = frame[col].map(_percent)
    return frame.rename(columns=rates)


def _percent(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{100 * value:.1f} %"
