"""Report sections for a classifier: accuracy, per-class rates, the confusion matrix, confident mistakes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cnnkit.data.images import ImageSource
from cnnkit.engine.metrics import confusion_counts
from cnnkit.infer.evaluate import Evaluation
from cnnkit.reporting.analysis import class_table
from cnnkit.reporting.thumbs import plain_thumbnail, short_name
from cnnkit.viz import html as H
from cnnkit.viz import report_figures as F

N_WRONG = 12
MAX_LISTED = 1000  # rows of the every-wrong-image table
FULL_TABLE_MAX = 20  # more classes than this: the table is sorted worst first and scrolls


def counts(ev: Evaluation, classes: list[str]) -> np.ndarray:
    """(C, C) confusion counts (rows = true class) from ``evaluate``'s per-image table."""
    index = {c: i for i, c in enumerate(classes)}
    frame = ev.per_image
    return confusion_counts([index[p] for p in frame["pred"]], [index[t] for t in frame["true"]], len(classes))


def overview_cards(ev: Evaluation, classes: list[str]) -> list[tuple[str, Any, str]]:
    """Accuracy beside always answering the most common class of the scored images."""
    m = ev.metrics
    true = ev.per_image["true"]
    majority = float(true.value_counts().iloc[0] / len(true)) if len(true) else np.nan
    acc = m.get("accuracy", np.nan)
    tone = "good" if acc > majority + 0.1 else ("bad" if acc <= majority else "")
    return [("accuracy", acc, tone), ("most common class's share", majority, ""),
            ("F1, mean over classes", m.get("f1_macro", np.nan), ""), ("images", len(ev.per_image), ""),
            ("classes", len(classes), "")]


def sections(ev: Evaluation, classes: list[str], source: ImageSource) -> list[H.Section]:
    """Per-class table, confusion matrix, most confidently wrong images."""
    c = counts(ev, classes)
    return [per_class_section(ev, c, classes), confusion_section(c, classes), wrong_section(ev, source)]


def per_class_section(ev: Evaluation, c: np.ndarray, classes: list[str]) -> H.Section:
    frame = class_table(c, classes)
    body = H.note("Precision: of the images predicted as the class, the share that are. Recall (= sensitivity): of "
                  "the class's images, the share found. Specificity: of the other images, the share not predicted "
                  "as the class.")
    if len(classes) == 2:
        m = ev.metrics
        body += H.note(f"Two classes, '{classes[1]}' as positive: sensitivity {H.fmt(m.get('sensitivity'))}, "
                       f"specificity {H.fmt(m.get('specificity'))} (tp {H.fmt(m.get('tp'))}, fp {H.fmt(m.get('fp'))}"
                       f", fn {H.fmt(m.get('fn'))}, tn {H.fmt(m.get('tn'))}).")
    if len(classes) > FULL_TABLE_MAX:
        frame = frame.sort_values("f1", na_position="first", kind="stable")
        body += H.note(f"{len(classes)} classes, lowest F1 first.")
    return H.Section("per-class", "Per class", body + H.table(frame, scroll=len(classes) > FULL_TABLE_MAX))


def confusion_section(c: np.ndarray, classes: list[str]) -> H.Section:
    body = H.note("Rows: true class; columns: predicted class; colour: share of the row.")
    body += H.img(F.confusion_png(c, classes), "confusion matrix")
    off = [(classes[i], classes[j], int(c[i, j])) for i, j in zip(*np.nonzero(c), strict=True) if i != j]
    if off:
        top = pd.DataFrame(off, columns=["true", "predicted as", "images"]).sort_values(
            "images", ascending=False, kind="stable").head(15)
        body += "<h3>Most frequent mistakes</h3>" + H.table(top)
    return H.Section("confusion-matrix", "Confusion matrix", body)


def wrong_section(ev: Evaluation, source: ImageSource) -> H.Section:
    frame = ev.per_image
    wrong = frame[~frame["correct"].astype(bool)].sort_values("confidence", ascending=False, kind="stable")
    if wrong.empty:
        return H.Section("wrong", "Most confidently wrong", H.note("Every image was classified correctly."))
    items = []
    for row in wrong.head(N_WRONG).itertuples():
        caption = (f"{short_name(row.image)}: true {row.true}, predicted {row.pred} ({row.confidence:.2f}); "
                   f"p(true) {row.p_true:.2f}")
        jpeg = plain_thumbnail(source, str(row.image))
        image = H.img(jpeg, caption, mime="image/jpeg") if jpeg is not None else H.note("image not readable")
        items.append(H.figure(image, caption, css_class="thumb"))
    note = H.note(f"{len(wrong)} of {len(frame)} images wrong; the {min(N_WRONG, len(wrong))} the model was surest "
                  "about are shown, with the probability it gave its answer and the true class.")
    listing = wrong.head(MAX_LISTED).assign(image=wrong["image"].head(MAX_LISTED).map(short_name))
    listing = listing[["image", "true", "pred", "confidence", "p_true"]].rename(
        columns={"pred": "predicted", "p_true": "p(true)"})
    every = H.collapsed(f"every wrong image, surest first ({len(wrong)})", H.table(listing, scroll=True))
    return H.Section("wrong", "Most confidently wrong", note + H.grid(items) + every)
