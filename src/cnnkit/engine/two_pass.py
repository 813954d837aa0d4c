"""The two-pass strategy for crop-trained models (docs/resolution.md).

Pass 1 scores the **whole view** (the frame fitted into ``crop.size``); pass 2 cuts the
**subject view** around pass 1's points with the same rule training used
(:func:`cnnkit.data.views.subject_view`, no jitter) and scores it. Points come back in original
pixels through each view's ``(scale, offset)``; the likelihood is pass 2's. Batches are frames:
:class:`cnnkit.data.views.ViewDataset` items in ``frames`` mode, batched by
:func:`cnnkit.data.views.collate_frames` (``frame``, ``geometry``, ``index``, ``points`` and the
remembered ``whole`` views), or video frames in the same form.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
from cnnkit.engine.device import autocast
from cnnkit.engine.scored import LossFn, Scored, points_to_original
from cnnkit.engine.step import StepSetup

#: normalised network input ``[B, C, H, W]`` -> (points normalised to the view ``[B, K, 2]``, likelihood ``[B, K]``)
PointsFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class TwoPassResult:
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
    with autocast(setup.device, setup.precision):
        norm, lik = fn(setup.network_input(images_u8))
    norm = norm.float()
    points, _, masked = points_to_original(norm, setup.size, *views_geometry(views), lik.float())
    assert masked is not None
    return points.cpu().numpy(), masked.cpu().numpy(), norm


def two_pass(fn: PointsFn, setup: StepSetup, crop: CropConfig, frames: Sequence[np.ndarray],
             geos: Sequence[Geometry], wholes: Sequence[np.ndarray] | None = None) -> TwoPassResult:
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
    return TwoPassResult(points, lik, coarse, whole, fine, norm)


class TwoPass:
    """Score batches of frames in two passes with a :class:`cnnkit.engine.readout.PointReader`."""

    name = "two-pass"

    def __init__(self, reader: PointsFn, setup: StepSetup, crop: CropConfig) -> None:
        self.reader, self.setup, self.crop = reader, setup, crop

    def eval(self) -> None:
        if isinstance(self.reader, nn.Module):
            self.reader.eval()

    def score(self, batch: Mapping[str, Any], loss_fn: LossFn | None = None) -> Scored:
        """``Scored.scale``/``offset`` are the WHOLE views' (the mean-shape baseline is placed in them),
        ``pred_input_px`` the final points in whole-view pixels (plots); the loss is measured in the
        pass-2 views."""
        result = two_pass(self.reader, self.setup, self.crop, batch["frame"], batch["geometry"], batch.get("whole"))
        scale, offset = (t.numpy() for t in views_geometry(result.whole))
        true = np.stack(batch["points"]).astype(np.float64) if "points" in batch else None
        scored = Scored(index=np.asarray(batch["index"], dtype=np.int64), pred=result.points, true=true,
                        scale=scale, offset=offset, likelihood=result.likelihood,
                        pred_input_px=geometry.original_to_input(result.points, scale.astype(np.float64),
                                                                 offset.astype(np.float64)))
        if loss_fn is not None and true is not None and true.shape[1]:
            target = np.stack([view_points(t, v, self.setup.size) for t, v in zip(true, result.fine, strict=True)])
            if np.isfinite(target).any():  # no true point in any view: nothing measured (not a loss of 0)
                target_t = geometry.input_to_norm(torch.from_numpy(target).float(), self.setup.size)
                with torch.no_grad():
                    loss = float(loss_fn(result.fine_norm, target_t.to(result.fine_norm.device)))
                scored.loss_sum, scored.loss_rows = loss * len(true), len(true)
        return scored
