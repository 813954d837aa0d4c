"""Sections every report has: what was trained (settings) and how training went (curves)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from cnnkit.reporting.run_folder import EvalData, RunRecord
from cnnkit.viz import html as H
from cnnkit.viz.report_figures import curves_png

_AUGMENT_OFF = (None, 0, 0.0, False, [1.0, 1.0], (1.0, 1.0))


def model_name(run: RunRecord) -> str:
    """'resnet18', or 'custom spec (N layers)' when the run was given a layer list."""
    arg = run.settings.get("model_argument")
    if isinstance(arg, str):
        return arg
    spec = (run.settings.get("model") or {}).get("spec")
    if isinstance(spec, list):
        return f"custom spec ({len(spec)} layers)"
    return str((run.settings.get("model") or {}).get("module", "unknown"))


def settings_section(run: RunRecord, scored: EvalData | None) -> H.Section:
    """Model, head, size, training, augmentation, data sources and split sizes."""
    body = H.key_values(settings_rows(run, scored))
    if run.experiment is not None:
        body += H.collapsed("experiment.yaml as run", f"<pre>{H.esc(_yaml_text(run.experiment))}</pre>")
    return H.Section("settings", "Settings", body)


def settings_rows(run: RunRecord, scored: EvalData | None) -> dict[str, Any]:
    """The settings that matter, as label -> value (the full files stay in the run folder)."""
    s, meta = run.settings, run.meta
    train, data = s.get("train") or {}, s.get("data") or {}
    model = s.get("model") or {}
    head = s.get("head") or model.get("head")
    size = data.get("size") or meta.get("size")
    rows: dict[str, Any] = {
        "model": model_name(run), "head": _short(head) if head else "the builder's default",
        "input size (w x h)": "x".join(str(v) for v in size) if size else "–",
        "colour": "grey" if data.get("grayscale") or meta.get("grayscale") else "RGB",
        "task": _task_line(meta),
        "epochs (run / planned)": f"{len(run.history)} / {s.get('epochs', '–')} ({_length_rule(train, s.get('time_plan'))})",
        "optimiser": f"{train.get('optimizer', '–')}, lr {train.get('lr', '–')}, schedule {train.get('schedule', '–')}",
        "batch size, loss": f"{train.get('batch_size', '–')}, {train.get('loss') or 'default'}",
        "device, precision": f"{train.get('device', '–')}, {train.get('precision', '–')}",
        "augmentation": _augment_line(s.get("augment") or meta.get("augment") or {}),
    }
    rows.update(_data_rows(run, scored))
    ensemble = meta.get("ensemble") if meta else None
    if ensemble:
        seeds = [m.get("seed") for m in ensemble.get("members") or []]
        rows["ensemble"] = (f"{len(ensemble.get('files') or [])} members (seeds {', '.join(map(str, seeds))}); settings "
                            "and curves below are member 1's")
    if meta:
        rows["checkpoint scored"] = f"{run.checkpoint.name if run.checkpoint else '–'} (epoch {meta.get('epoch', '?')}"\
                                    f", chosen by {meta.get('selected_by', 'the last epoch')})"
    return rows


def _length_rule(train: dict[str, Any], plan: dict[str, Any] | None) -> str:
    """What set the run's length: train.epochs, train.steps, train.time (and its recipe) or the default rule."""
    if train.get("time") is not None:
        recipe = ", the short-budget recipe" if (plan or {}).get("recipe") == "short" else ""
        return f"train.time {train['time']}{recipe}"
    for key in ("epochs", "steps"):
        if train.get(key) is not None:
            return f"train.{key} {train[key]}"
    return "the default rule"


def _data_rows(run: RunRecord, scored: EvalData | None) -> dict[str, Any]:
    s = run.settings
    train, val = s.get("train_table") or {}, s.get("val_table") or {}
    rows = {"training data": f"{train.get('source', '–')} ({train.get('rows', '?')} images)",
            "validation data": f"{val.get('source')} ({val.get('rows')} images)" if val else "none"}
    split = ((run.experiment or {}).get("data") or {}).get("split")
    if split is not None:
        rows["split"] = _short(split)
    rows["scored here"] = f"{scored.described} ({len(scored.table)} images)" if scored else "nothing (no test, "\
        "validation or --data table)"
    return rows


def _task_line(meta: Mapping[str, Any]) -> str:
    if meta.get("task") == "landmarks":
        pairs = meta.get("flip_pairs") or []
        return f"landmarks: {len(meta.get('landmarks') or [])} points, {len(pairs)} left/right pairs"
    if meta.get("task") == "classes":
        return f"classes: {len(meta.get('classes') or [])}"
    return "–"


def _augment_line(aug: Mapping[str, Any]) -> str:
    on = [f"{k} {_short(v)}" if v is not True else k for k, v in aug.items()
          if v not in _AUGMENT_OFF and k != "force_flip"]
    return ", ".join(on) if on else "none"


def _short(value: Any) -> str:
    """A setting on one line: mappings as k=v, lists as [a, b]."""
    if isinstance(value, Mapping):  # YAML 1.1 reads a key `on:` as True; show it as written
        return "{" + ", ".join(f"{'on' if k is True else k}={_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return str(value)


def _yaml_text(settings: Mapping[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(dict(settings), sort_keys=False)


def late_overfit_note(history: pd.DataFrame) -> str:
    """A note when the validation error (landmarks) or loss ended well above its best: over-fitting late.

    The landmark error in pixels is the figure that means the same every epoch (a crop model's
    validation loss is measured in views that move with its predictions). Nothing is said about a
    curve whose best value is not a positive number.
    """
    key = "val_error_px_mean" if "val_error_px_mean" in history.columns else "val_loss"
    if key not in history.columns or len(history) < 3:
        return ""
    values = pd.to_numeric(history[key], errors="coerce").reset_index(drop=True)
    if not values.notna().any():
        return ""
    best = int(values.idxmin())
    low, end = float(values.iloc[best]), float(values.iloc[-1])
    if not (np.isfinite(low) and low > 0 and np.isfinite(end)) or best == len(values) - 1 or end <= 1.1 * low:
        return ""
    what = "Validation error" if key == "val_error_px_mean" else "Validation loss"
    return (f"{what} was lowest at epoch {history['epoch'].iloc[best]} and is {end / low:.2f}x that at the end: "
            "the model over-fits late in training (the best checkpoint is kept).")


def curves_section(history: pd.DataFrame) -> H.Section:
    """Loss and the main validation metric per epoch, plus the last epoch's numbers."""
    if history.empty or "epoch" not in history.columns:
        return H.Section("curves", "Training curves", H.note("metrics.csv is missing or empty: no curves."))
    body = H.img(curves_png(history), "loss and validation metric per epoch")
    notes = [note for note in [late_overfit_note(history)] if note]
    if "time_s" in history.columns:
        notes.append(f"{len(history)} epoch{'s' if len(history) != 1 else ''} in {history['time_s'].sum():.0f} s.")
    last = history.iloc[[-1]].drop(columns=[c for c in history.columns if "/" in str(c)])
    return H.Section("curves", "Training curves", body + "".join(H.note(n) for n in notes)
                     + H.collapsed("last epoch's numbers", H.table(last)))
