"""End-of-run plots: curves and a grid of validation predictions (main process only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from cnnkit.engine.inference import run_inference, validation_strategy
from cnnkit.engine.step import StepSetup

GRID_IMAGES = 16


def write_run_plots(out: Path, history: pd.DataFrame, model: nn.Module, val_loader: Any,
                    setup: StepSetup, meta: dict[str, Any]) -> list[Path]:
    """Write curves.png and (with a val set) val_predictions.png; returns the paths written."""
    from cnnkit.viz.plots import plot_classes, plot_history, plot_landmarks

    written = [plot_history(history, out / "curves.png")]
    if val_loader is None:
        return written
    ds = val_loader.dataset
    rows = list(range(min(GRID_IMAGES, len(ds))))
    strategy = validation_strategy(model, setup)
    if setup.crop is not None:  # crop model: two passes over the frames, drawn on the whole views
        from cnnkit.data.views import collate_frames

        outputs = run_inference(strategy, [collate_frames([ds[i] for i in rows])])
        ds = ds.with_mode("whole")
    items = [ds[i] for i in rows]
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    if setup.crop is None:
        outputs = run_inference(strategy, [batch])
    images = np.stack([it["image"].permute(1, 2, 0).numpy() for it in items])
    if setup.task == "landmarks":
        true_in = batch["points"].numpy()
        written.append(plot_landmarks(images, true_in, outputs.pred_input_px, out / "val_predictions.png",
                                      names=meta["landmarks"]))
    else:
        classes = meta["classes"]
        true = [classes[int(i)] for i in batch["label"]]
        pred = [classes[int(i)] for i in outputs.pred.argmax(-1)]
        written.append(plot_classes(images, true, pred, out / "val_predictions.png", probs=outputs.pred.max(-1)))
    return written
