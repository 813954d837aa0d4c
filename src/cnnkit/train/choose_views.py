"""How a crop-trained model is scored, chosen by measurement at the end of its run.

Validation during training scores crop models in two passes (cheap enough for every epoch). At
the end, the kept weights are scored on the validation split with every strategy the model has
(two-pass; full-frame for a heatmap head), and the one with the lower mean error in original
pixels is recorded in the model files' metadata (``views_measured``: the winner and both figures).
``views='auto'`` in ``predict``, ``evaluate``, the report and videos then takes it
(:func:`cnnkit.engine.inference.resolve_views`), so the figure the run prints is the figure a user
gets with the defaults, on any data set, not a threshold tuned on one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.data.loader import make_loader
from cnnkit.data.table import AnnotationTable
from cnnkit.data.views import ViewDataset, collate_frames
from cnnkit.engine.inference import INFERENCE_BATCH, make_strategy, run_inference
from cnnkit.engine.metrics import landmark_metrics
from cnnkit.engine.readout import is_heatmap
from cnnkit.engine.step import StepSetup
from cnnkit.io.checkpoint import load_model, update_meta

log = logging.getLogger("cnnkit")


def candidate_views(net: Any) -> tuple[str, ...]:
    """The strategies a crop-trained model can be scored with."""
    return ("two-pass", "full-frame") if is_heatmap(net) else ("two-pass",)


def measure_views(model_file: Path, setup: StepSetup, val_loader: Iterable[Mapping[str, Any]],
                  names: list[str]) -> dict[str, Any]:
    """Score ``model_file`` on the validation loader (frames batches) with each candidate strategy.

    Returns the ``views_measured`` record: ``views`` (the winner; two-pass on a tie, it costs less),
    ``val_error_px`` ({strategy: mean error in original px}), ``rows`` (validation frames scored).
    """
    net, _ = load_model(model_file, device=setup.device)
    figures: dict[str, float] = {}
    rows = 0
    for kind in candidate_views(net):
        outputs = run_inference(make_strategy(kind, net, setup, likelihood=False), val_loader)
        assert outputs.true is not None  # validation tables are annotated
        figures[kind] = float(landmark_metrics(outputs.pred, outputs.true, names=names)["error_px_mean"])
        rows = len(outputs.index)
    finite = {k: v for k, v in figures.items() if math.isfinite(v)}
    winner = min(finite, key=lambda k: (finite[k], k != "two-pass")) if finite else "two-pass"
    return {"views": winner, "val_error_px": {k: round(v, 4) for k, v in figures.items()}, "rows": rows}


def choose_views(out_dir: Path, setup: StepSetup, val: AnnotationTable | None, *, grayscale: bool,
                 files: Iterable[str], batch_size: int = INFERENCE_BATCH, quiet: bool = False) -> dict[str, Any] | None:
    """Measure on the kept weights (the first of ``files`` that exists, e.g. best.safetensors) over the
    whole validation table and record the choice in each of ``files``; logs the figures. None when there
    is nothing to choose (not crop-trained, or no validation split)."""
    present = [out_dir / f for f in files if (out_dir / f).is_file()]
    if setup.crop is None or val is None or not len(val) or not present:
        return None
    frames = ViewDataset(val, crop=setup.crop, grayscale=grayscale, mode="frames")
    loader = make_loader(frames, batch_size=batch_size, shuffle=False, collate_fn=collate_frames)
    record = measure_views(present[0], setup, loader, list(val.landmarks))
    for path in present:
        update_meta(path, views_measured=record)
    if not quiet:
        figures = ", ".join(f"{k} {v:.3g} px" for k, v in record["val_error_px"].items())
        log.info(f"inference: {figures} on the validation split ({record['rows']} frames) -> predict and "
                 f"evaluate use {record['views']} (recorded in {', '.join(p.name for p in present)}; "
                 f"--views overrides it)")
    return record


def describe(record: Mapping[str, Any] | None) -> str:
    """One sentence for reports: which strategy the model uses and why."""
    if not record:
        return ""
    figures = record.get("val_error_px") or {}
    others = ", ".join(f"{k} {v:.3g} px" for k, v in figures.items())
    best = figures.get(record.get("views", ""), np.nan)
    return (f"Inference uses {record.get('views')} ({best:.3g} px on the validation split; measured: {others}), "
            f"chosen at the end of training on {record.get('rows', 0)} validation frames.")
