"""One step's view of a batch, and one pass of inference: shared by training, prediction and compat.

Everything that turns a loader batch into network input lives in ``StepSetup.inputs`` so
that training, validation and prediction see exactly the same pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnkit import geometry
from cnnkit.config import CropConfig
from cnnkit.data.augment import Augment, augment_batch
from cnnkit.engine import tensors as T
from cnnkit.engine.device import autocast

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class StepSetup:
    """What every step needs to know; built once per run."""

    task: str  # 'landmarks' | 'classes'
    size: tuple[int, int]  # (width, height) of the network input
    mean: tuple[float, ...]
    std: tuple[float, ...]
    device: torch.device
    precision: str = "fp32"
    channels_last: bool = False
    augment: Augment = field(default_factory=Augment)
    flip_perm: list[int] | None = None
    crop: CropConfig | None = None  # crop-trained: inference is two-pass (cnnkit.engine.views)

    def inputs(
        self, batch: Mapping[str, torch.Tensor], *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch -> (normalised images on device, target on device). Augments when a generator is given."""
        images = T.to_unit_float(batch["image"].to(self.device, non_blocking=True), channels_last=self.channels_last)
        points = batch["points"].to(self.device, non_blocking=True)
        if generator is not None and self.augment.enabled:
            images, points = augment_batch(images, points, self.augment, generator=generator, flip_perm=self.flip_perm)
        images = T.normalise(images, self.mean, self.std)
        if self.task == "landmarks":
            return images, geometry.input_to_norm(points, self.size)
        return images, batch["label"].to(self.device, non_blocking=True)

    def prediction(self, output: torch.Tensor) -> torch.Tensor:
        """Raw network output -> normalised points (B, K, 2) or class logits (B, C), float32."""
        output = output.float()
        return geometry.flat_to_points(output) if self.task == "landmarks" else output



@dataclass
class Outputs:
    """Everything one inference pass produced, as numpy arrays in row order of the loader."""

    index: np.ndarray  # (N,) table row positions
    pred: np.ndarray  # landmarks: (N, K, 2) ORIGINAL pixels; classes: (N, C) probabilities
    true: np.ndarray | None  # landmarks: (N, K, 2) original pixels; classes: (N,) label index
    scale: np.ndarray  # (N, 2) input_px = original_px * scale + offset
    offset: np.ndarray  # (N, 2)
    pred_input_px: np.ndarray | None = None  # landmarks in input pixels, for plots
    loss: float = float("nan")


@torch.no_grad()
def _forward(model: nn.Module, setup: StepSetup, loader: Any) -> Iterator[tuple[dict, torch.Tensor, torch.Tensor]]:
    model.eval()
    for batch in loader:
        images, target = setup.inputs(batch)
        with autocast(setup.device, setup.precision):
            output = model(images)
        yield batch, setup.prediction(output), target


def run_inference(model: nn.Module, loader: Any, setup: StepSetup, loss_fn: LossFn | None = None) -> Outputs:
    """Predict every batch; map landmarks back to original pixels; optional mean loss.

    Crop models (``setup.crop``): two-pass inference over a loader of frames
    (:func:`cnnkit.engine.views.run_two_pass`), the one place every path scores them.
    """
    if setup.crop is not None and setup.task == "landmarks":
        from cnnkit.engine.views import run_two_pass  # engine.views builds on this module

        return run_two_pass(model, loader, setup, loss_fn)
    idx, preds, trues, inputs_px, scales, offsets = [], [], [], [], [], []
    loss_sum, seen = 0.0, 0
    for batch, pred, target in _forward(model, setup, loader):
        n = pred.shape[0]
        if loss_fn is not None:
            loss_sum, seen = loss_sum + float(loss_fn(pred, target)) * n, seen + n
        idx.append(batch["index"].numpy())
        scales.append(batch["scale"].numpy())
        offsets.append(batch["offset"].numpy())
        scale, offset = batch["scale"].to(pred.device), batch["offset"].to(pred.device)
        if setup.task == "landmarks":
            in_px = geometry.norm_to_input(pred, setup.size)
            preds.append(geometry.input_to_original(in_px, scale, offset).cpu().numpy())
            inputs_px.append(in_px.cpu().numpy())
            trues.append(geometry.input_to_original(batch["points"].to(pred.device), scale, offset).cpu().numpy())
        else:
            preds.append(torch.softmax(pred, dim=-1).cpu().numpy())
            trues.append(batch["label"].numpy())
    cat = (lambda xs: np.concatenate(xs)) if idx else (lambda xs: np.zeros((0,)))
    return Outputs(
        index=cat(idx), pred=cat(preds), true=cat(trues), scale=cat(scales), offset=cat(offsets),
        pred_input_px=cat(inputs_px) if inputs_px else None,
        loss=loss_sum / seen if seen else float("nan"),
    )
