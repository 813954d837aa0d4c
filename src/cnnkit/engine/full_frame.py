"""The full-frame strategy for crop-trained heatmap models (``views='full-frame'``; docs/resolution.md).

The network runs once over the whole frame at ``crop.scale`` (zero padded to a multiple of
``PAD_MULTIPLE``), in overlapping tiles when the frame exceeds ``max_pixels``; per landmark the
highest heatmap peak over all tiles wins and is refined by
:func:`cnnkit.model.heads.local_soft_argmax`. The likelihood is the heatmap likelihood in a
window of the training map's size around that peak. Test-time flip averages each tile's maps
with its mirror image's (partners swapped). The full-frame peaks place every landmark (the agreeing
ones give the subject's box, :func:`subject_box`); a training view around it, read by the same
soft-argmax as in training, gives the points and likelihoods returned. Which strategy ``views='auto'``
takes: :func:`cnnkit.engine.inference.resolve_views`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnkit.config import CropConfig
from cnnkit.data.decode import Geometry
from cnnkit.data.views import View, cut_view, subject_view, views_geometry, whole_view
from cnnkit.engine.device import autocast
from cnnkit.engine.readout import PointReader, heatmap_logits, unmirror_maps
from cnnkit.engine.scored import LossFn, Scored
from cnnkit.engine.step import StepSetup
from cnnkit.engine.two_pass import score_views
from cnnkit.model.heads import heatmap_likelihood, local_soft_argmax

PAD_MULTIPLE = 32  # the coarsest stride of the presets: padded frames keep maps aligned
MAX_PIXELS = 2048 * 2048  # above this, tiles
TILE_OVERLAP = 128  # view pixels shared by neighbouring tiles


def _tiles(extent: int, tile: int) -> list[int]:
    if extent <= tile:
        return [0]
    step = max(PAD_MULTIPLE, tile - TILE_OVERLAP)
    starts = list(range(0, extent - tile, step)) + [extent - tile]
    return sorted(set(starts))


@torch.no_grad()
def _tile_maps(net: nn.Module, setup: StepSetup, image_u8: torch.Tensor, perm: torch.Tensor | None) -> torch.Tensor:
    images = setup.network_input(image_u8)
    with autocast(setup.device, setup.precision):
        maps = heatmap_logits(net, images)
        if perm is not None:  # test-time flip: the mirror image's maps, flipped back, partners swapped
            maps = (maps + unmirror_maps(heatmap_logits(net, images.flip(-1)), perm)) / 2
    return maps.float()


def score_full_frame(net: nn.Module, setup: StepSetup, crop: CropConfig, frame: np.ndarray, geo: Geometry, *,
                     perm: Sequence[int] | None = None, radius: int = 3,
                     max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """One frame -> (points (K, 2) ORIGINAL px, likelihood (K,)), the network run over the whole frame."""
    s = crop.scale
    width = PAD_MULTIPLE * math.ceil(geo.orig_size[0] * s / PAD_MULTIPLE)
    height = PAD_MULTIPLE * math.ceil(geo.orig_size[1] * s / PAD_MULTIPLE)
    side = max(PAD_MULTIPLE * 4, PAD_MULTIPLE * int(math.sqrt(max_pixels) // PAD_MULTIPLE))
    tile_w, tile_h = (width, height) if width * height <= max_pixels else (min(side, width), min(side, height))
    perm_t = None if perm is None else torch.tensor(list(perm), dtype=torch.long)
    best: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # peak logit [K], points [K, 2], lik [K]
    for ty in _tiles(height, tile_h):
        for tx in _tiles(width, tile_w):
            arr = cut_view(frame, geo, View(s, (-float(tx), -float(ty))), (tile_w, tile_h))
            maps = _tile_maps(net, setup, torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous(), perm_t)[0]
            peak, in_tile, lik = _tile_answer(maps, crop, radius, (tile_w, tile_h),
                                              _core(tx, tile_w, width) + _core(ty, tile_h, height))
            pts = (in_tile + torch.tensor([tx, ty], dtype=in_tile.dtype, device=in_tile.device)) / s  # original px
            if best is None:
                best = (peak, pts, lik)
                continue
            better = peak > best[0]
            best = (torch.where(better, peak, best[0]), torch.where(better[:, None], pts, best[1]),
                    torch.where(better, lik, best[2]))
    assert best is not None
    return best[1].cpu().numpy().astype(np.float64), best[2].cpu().numpy().astype(np.float64)


def _tile_answer(maps: torch.Tensor, crop: CropConfig, radius: int, tile: tuple[int, int],
                 core: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One tile's maps ``[K, h, w]`` -> (peak logit [K], -inf outside the tile's core; points [K, 2] tile px; lik [K]).

    A tile answers only for its core (its share of the overlap trimmed): a peak near a tile's
    edge, where the padding shows, is left to the neighbour that sees it whole.
    """
    k, mh, mw = maps.shape
    norm = local_soft_argmax(maps[None], radius)[0]  # [2K] normalised to the tile
    in_tile = torch.stack([norm[:k] * tile[0], norm[k:] * tile[1]], dim=-1)
    inside = (in_tile[:, 0] >= core[0]) & (in_tile[:, 0] <= core[1]) & \
             (in_tile[:, 1] >= core[2]) & (in_tile[:, 1] <= core[3])
    peak = maps.reshape(k, -1).max(dim=-1).values.masked_fill(~inside, -math.inf)
    cells = (max(1, round(crop.size[0] * mw / tile[0])), max(1, round(crop.size[1] * mh / tile[1])))  # a view's map
    return peak, in_tile, _window_likelihood(maps, cells)


def _core(start: int, tile: int, extent: int) -> tuple[float, float]:
    """The part of a tile (tile px) it answers for: all of it at the frame's edges, else half the overlap trimmed."""
    return (0.0 if start == 0 else TILE_OVERLAP / 2), (float(tile) if start + tile >= extent else tile - TILE_OVERLAP / 2)


def _window_likelihood(maps: torch.Tensor, cells: tuple[int, int]) -> torch.Tensor:
    """Heatmap likelihood in a training-map-sized window around each peak ([K, H, W] -> [K])."""
    k, h, w = maps.shape
    peak = maps.reshape(k, -1).argmax(dim=-1)
    py, px = (peak // w)[:, None, None], (peak % w)[:, None, None]
    ys, xs = torch.arange(h, device=maps.device).view(1, h, 1), torch.arange(w, device=maps.device).view(1, 1, w)
    window = ((ys - py).abs() <= cells[1] // 2) & ((xs - px).abs() <= cells[0] // 2)
    return heatmap_likelihood(maps.masked_fill(~window, float("-inf"))[None])[0]


def subject_box(points: np.ndarray) -> tuple[float, float, float, float] | None:
    """The box of the points that agree on where the subject is: those within twice the median
    distance of the median point (a landmark whose peak landed on a distractor is left out).

    Example:
        >>> subject_box(np.array([[10.0, 10], [14, 12], [12, 16], [400, 300]]))
        (10.0, 10.0, 14.0, 16.0)
    """
    found = points[np.isfinite(points).all(axis=1)]
    if len(found) == 0:
        return None
    centre = np.median(found, axis=0)
    dist = np.linalg.norm(found - centre, axis=1)
    near = found[dist <= max(2.0 * float(np.median(dist)), 1.0)]
    return (float(near[:, 0].min()), float(near[:, 1].min()), float(near[:, 0].max()), float(near[:, 1].max()))


def refine_views(points: Sequence[np.ndarray], geos: Sequence[Geometry], crop: CropConfig) -> list[View | None]:
    """The training rule's subject view around each frame's full-frame points (None: nothing found)."""
    views: list[View | None] = []
    for p, g in zip(points, geos, strict=True):
        box = subject_box(p)
        views.append(None if box is None else subject_view(box, g.orig_size, crop))
    return views


class FullFrame:
    """Score batches of frames (as :class:`cnnkit.engine.two_pass.TwoPass` takes them) over the whole frame.

    ``net``: the plain network (its heatmaps are read tile by tile); ``reader``: the same network as a
    :class:`PointReader` for the refining view; ``perm``: the flip permutation when test-time flip is
    on, else None.
    """

    name = "full-frame"

    def __init__(self, reader: PointReader, net: nn.Module, setup: StepSetup, crop: CropConfig,
                 perm: Sequence[int] | None = None) -> None:
        self.reader, self.net, self.setup, self.crop, self.perm = reader, net, setup, crop, perm

    def eval(self) -> None:
        self.reader.eval()
        self.net.eval()

    def score(self, batch: Mapping[str, Any], loss_fn: LossFn | None = None) -> Scored:
        """``Scored.scale``/``offset`` are the whole views' (where the mean-shape baseline is placed, as in
        two-pass); no loss (the frame has no training-sized view to measure it in)."""
        points, lik = self.points(batch["frame"], batch["geometry"])
        scale, offset = views_geometry([whole_view(g.orig_size, self.crop.size) for g in batch["geometry"]])
        return Scored(index=np.asarray(batch["index"], dtype=np.int64), pred=points,
                      true=np.stack(batch["points"]) if "points" in batch else None,
                      scale=scale.numpy().astype(np.float64), offset=offset.numpy().astype(np.float64),
                      likelihood=lik)

    def points(self, frames: Sequence[np.ndarray], geos: Sequence[Geometry]) -> tuple[np.ndarray, np.ndarray]:
        """Frames -> (points (B, K, 2) ORIGINAL px, likelihood (B, K)): found over the whole frame, then
        refined in the training view around the subject."""
        crop = self.crop
        found = [score_full_frame(self.net, self.setup, crop, f, g, perm=self.perm)
                 for f, g in zip(frames, geos, strict=True)]
        points, lik = np.stack([p for p, _ in found]), np.stack([q for _, q in found])
        views = refine_views(list(points), geos, crop)
        todo = [i for i, v in enumerate(views) if v is not None]
        chosen = [v for v in views if v is not None]
        if todo:
            images = np.stack([cut_view(frames[i], geos[i], v, crop.size) for i, v in zip(todo, chosen, strict=True)])
            fine, fine_lik, _ = score_views(self.reader, self.setup,
                                            torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), chosen)
            points[todo], lik[todo] = fine, fine_lik
        return points, lik
