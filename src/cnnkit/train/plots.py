"""End-of-run plots: curves and a grid of validation predictions (main process only)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from cnnkit.engine.inference import Outputs, run_inference, validation_strategy
from cnnkit.engine.step import StepSetup
from cnnkit.io.meta import CheckpointMeta
from cnnkit.io.run_folder import CURVES, VAL_PREDICTIONS

GRID_IMAGES = 16


@dataclass
class ValSample:
    """The first validation rows as the network saw them, with its predictions (for pictures)."""

    images: np.ndarray  # (N, H, W, C) uint8: the network input (crop models: the whole views)
    batch: dict[str, torch.Tensor]  # the items, stacked: points in those pixels, labels, ...
    outputs: Outputs  # pred_input_px: predicted points in those pixels


def val_sample(model: nn.Module, val_loader: Any, setup: StepSetup, n: int) -> ValSample:
    """Score the first ``n`` validation rows as validation does (crop models: two passes over the frames,
    drawn on the whole views)."""
    ds = val_loader.dataset
    rows = list(range(min(n, len(ds))))
    strategy = validation_strategy(model, setup)
    if setup.crop is not None:
        from cnnkit.data.views import collate_frames

        outputs = run_inference(strategy, [collate_frames([ds[i] for i in rows])])
        ds = ds.with_mode("whole")
    items = [ds[i] for i in rows]
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    if setup.crop is None:
        outputs = run_inference(strategy, [batch])
    return ValSample(np.stack([it["image"].permute(1, 2, 0).numpy() for it in items]), batch, outputs)


def write_run_plots(out: Path, history: pd.DataFrame, model: nn.Module, val_loader: Any,
                    setup: StepSetup, meta: CheckpointMeta) -> list[Path]:
    """Write curves.png and (with a val set) val_predictions.png; returns the paths written."""
    from cnnkit.viz.plots import plot_classes, plot_history, plot_landmarks

    written = [plot_history(history, out / CURVES)]
    if val_loader is None:
        return written
    sample = val_sample(model, val_loader, setup, GRID_IMAGES)
    images, batch, outputs = sample.images, sample.batch, sample.outputs
    if setup.task == "landmarks":
        written.append(plot_landmarks(images, batch["points"].numpy(), outputs.pred_input_px,
                                      out / VAL_PREDICTIONS, names=list(meta.landmarks)))
    else:
        classes = meta.classes
        true = [classes[int(i)] for i in batch["label"]]
        pred = [classes[int(i)] for i in outputs.pred.argmax(-1)]
        written.append(plot_classes(images, true, pred, out / VAL_PREDICTIONS, probs=outputs.pred.max(-1)))
    return written
