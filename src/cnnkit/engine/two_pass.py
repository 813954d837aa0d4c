"""Two-pass inference for crop-trained models, in one place (docs/resolution.md).

Pass 1 scores the **whole view** (the frame fitted into ``crop.size``); pass 2 cuts the
**subject view** around pass 1's points with the same rule training used
(:func:`cnnkit.data.views.subject_view`, no jitter) and scores it. Points come back in original
pixels through each view's ``(scale, offset)``; the likelihood is pass 2's. Validation during
training, ``evaluate``, ``predict`` (images and video) and the seed API all call :func:`two_pass`
(``run_inference`` dispatches here when ``StepSetup.crop`` is set), so the figures of every path
are the same figures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnkit import geometry
from cnnkit.config import CropConfig
from cnnkit.data.decode import Geometry
from cnnkit.data.views import (
    View,
    cut_view,
    points_box,
    subject_view,
    view_points,
    views_geometry,
    whole_view,
)
from cnnkit.engine import tensors as T
from cnnkit.engine.device import autocast
from cnnkit.engine.step import LossFn, Outputs, StepSetup

#: normalised network input ``[B, C, H, W]`` -> (points normalised to the view ``[B, K, 2]``, likelihood ``[B, K]``)
PointsFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def model_points(model: nn.Module, setup: StepSetup) -> PointsFn:
    """A plain network (or ``FlipTTA``) as a ``PointsFn``; its likelihood is a constant 1."""
    def points(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = setup.prediction(model(images))
        return p, torch.ones(p.shape[:2], device=p.device)
    return points


@dataclass
class TwoPass:
    """One batch of frames through both passes. Points in ORIGINAL pixels."""

    points: np.ndarray  # (B, K, 2) pass 2
    likelihood: np.ndarray  # (B, K) pass 2
    coarse: np.ndarray  # (B, K, 2) pass 1
    whole: list[View]
    fine: list[View]
    fine_norm: torch.Tensor  # (B, K, 2) pass 2 in its views, normalised (for a loss)


def _cut(frames: Sequence[np.ndarray], geos: Sequence[Geometry], views: Sequence[View],
         size: tuple[int, int]) -> torch.Tensor:
    arrays = np.stack([cut_view(f, g, v, size) for f, g, v in zip(frames, geos, views, strict=True)])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def score_views(fn: PointsFn, setup: StepSetup, images_u8: torch.Tensor,
                views: Sequence[View]) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """uint8 views -> (points ORIGINAL px (B, K, 2), likelihood (B, K), points normalised to the view)."""
    images = T.normalise(T.to_unit_float(images_u8.to(setup.device, non_blocking=True),
                                         channels_last=setup.channels_last), setup.mean, setup.std)
    with autocast(setup.device, setup.precision):
        norm, lik = fn(images)
    norm, lik = norm.float(), lik.float()
    scale, offset = views_geometry(views)
    in_px = geometry.norm_to_input(norm, setup.size)
    points = geometry.input_to_original(in_px, scale.to(in_px.device), offset.to(in_px.device)).cpu().numpy()
    lik_np = lik.cpu().numpy()
    bad = ~np.isfinite(points).all(axis=-1) | ~np.isfinite(lik_np)
    points[bad], lik_np[bad] = np.nan, np.nan
    return points, lik_np, norm


def two_pass(fn: PointsFn, setup: StepSetup, crop: CropConfig, frames: Sequence[np.ndarray],
             geos: Sequence[Geometry], wholes: Sequence[np.ndarray] | None = None) -> TwoPass:
    """Score frames (each decoded with its ``Geometry``, e.g. :class:`cnnkit.data.views.ViewDataset` ``frames``).

    ``wholes``: the frames' whole views already cut (``ViewDataset`` items' ``whole``), else cut here.
    """
    whole = [whole_view(g.orig_size, crop.size) for g in geos]
    whole_u8 = (torch.from_numpy(np.stack(wholes)).permute(0, 3, 1, 2).contiguous() if wholes is not None
                else _cut(frames, geos, whole, crop.size))
    coarse, _, _ = score_views(fn, setup, whole_u8, whole)
    fine = []
    for b, g in enumerate(geos):
        box = points_box(coarse[b])
        fine.append(whole[b] if box is None else subject_view(box, g.orig_size, crop))
    points, lik, norm = score_views(fn, setup, _cut(frames, geos, fine, crop.size), fine)
    return TwoPass(points, lik, coarse, whole, fine, norm)


def run_two_pass(model: nn.Module | PointsFn, loader: Any, setup: StepSetup,
                 loss_fn: LossFn | None = None) -> Outputs:
    """``run_inference`` for crop models: ``loader`` yields :func:`cnnkit.data.views.collate_frames` batches.

    ``Outputs.scale``/``offset`` are the WHOLE views' (the mean-shape baseline is placed in
    them); ``pred_input_px`` is the final prediction in whole-view pixels (for plots); ``loss``
    is measured in the pass-2 views.
    """
    assert setup.crop is not None
    if isinstance(model, nn.Module):
        model.eval()
        fn = model_points(model, setup)
    else:
        fn = model
    idx, preds, trues, scales, offsets, in_px = [], [], [], [], [], []
    loss_sum, seen = 0.0, 0
    for batch in loader:
        result = two_pass(fn, setup, setup.crop, batch["frame"], batch["geometry"], batch.get("whole"))
        true = np.stack(batch["points"]).astype(np.float64)
        scale, offset = views_geometry(result.whole)
        if loss_fn is not None and true.shape[1]:
            target = np.stack([view_points(t, v, setup.size) for t, v in zip(true, result.fine, strict=True)])
            target_t = geometry.input_to_norm(torch.from_numpy(target).float(), setup.size).to(result.fine_norm.device)
            with torch.no_grad():
                loss_sum += float(loss_fn(result.fine_norm, target_t)) * len(true)
            seen += len(true)
        idx.append(np.asarray(batch["index"], dtype=np.int64))
        preds.append(result.points)
        trues.append(true)
        scales.append(scale.numpy())
        offsets.append(offset.numpy())
        in_px.append(geometry.original_to_input(result.points, scale.numpy().astype(np.float64),
                                                offset.numpy().astype(np.float64)))
    if not idx:
        empty = np.zeros((0,))
        return Outputs(index=empty.astype(np.int64), pred=empty, true=empty, scale=empty, offset=empty)
    return Outputs(index=np.concatenate(idx), pred=np.concatenate(preds), true=np.concatenate(trues),
                   scale=np.concatenate(scales), offset=np.concatenate(offsets), pred_input_px=np.concatenate(in_px),
                   loss=loss_sum / seen if seen else float("nan"))
