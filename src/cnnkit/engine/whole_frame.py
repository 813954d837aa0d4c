"""The whole-frame strategy: each image resized (or letterboxed) to the network input, one pass.

Batches are :class:`cnnkit.data.dataset.TableDataset` batches (or video frames resized the same
way): ``image`` uint8 ``[B, C, H, W]``, ``scale``/``offset`` ``[B, 2]`` (``input_px = original_px *
scale + offset``), ``index`` and, when annotated, ``points`` (input px) or ``label``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from cnnkit import geometry
from cnnkit.engine.device import autocast
from cnnkit.engine.readout import ClassReader, PointReader
from cnnkit.engine.scored import LossFn, Scored, points_to_original
from cnnkit.engine.step import StepSetup


class WholeFrame:
    """Score resized images with a :class:`PointReader` (landmarks) or :class:`ClassReader` (classes)."""

    name = "whole-frame"

    def __init__(self, reader: PointReader | ClassReader, setup: StepSetup) -> None:
        self.reader, self.setup = reader, setup

    def eval(self) -> None:
        self.reader.eval()

    @torch.no_grad()
    def score(self, batch: Mapping[str, Any], loss_fn: LossFn | None = None) -> Scored:
        setup = self.setup
        images = setup.network_input(batch["image"])
        with autocast(setup.device, setup.precision):
            out = self.reader(images)
        index = np.asarray(batch["index"], dtype=np.int64)
        scale, offset = batch["scale"], batch["offset"]
        if setup.task == "classes":
            return self._classes(out.float(), batch, index, loss_fn)
        points_norm, lik = out[0].float(), out[1].float()
        scored = Scored(index=index, pred=np.zeros(0), true=None, scale=scale.numpy(), offset=offset.numpy())
        if loss_fn is not None:
            target = geometry.input_to_norm(batch["points"].to(setup.device, non_blocking=True), setup.size)
            scored.loss_sum, scored.loss_rows = float(loss_fn(points_norm, target)) * len(index), len(index)
        points, in_px, lik = points_to_original(points_norm, setup.size, scale, offset, lik)
        scored.pred, scored.pred_input_px = points.cpu().numpy(), in_px.cpu().numpy()
        scored.likelihood = None if lik is None else lik.cpu().numpy()
        if "points" in batch:
            true = geometry.input_to_original(batch["points"].to(points.device), scale.to(points.device),
                                              offset.to(points.device))
            scored.true = true.cpu().numpy()
        return scored

    def _classes(self, logits: torch.Tensor, batch: Mapping[str, Any], index: np.ndarray,
                 loss_fn: LossFn | None) -> Scored:
        scored = Scored(index=index, pred=torch.softmax(logits, dim=-1).cpu().numpy(),
                        true=batch["label"].numpy() if "label" in batch else None,
                        scale=batch["scale"].numpy(), offset=batch["offset"].numpy())
        if loss_fn is not None:
            label = batch["label"].to(self.setup.device, non_blocking=True)
            scored.loss_sum, scored.loss_rows = float(loss_fn(logits, label)) * len(index), len(index)
        return scored
