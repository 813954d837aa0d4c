"""Full-frame inference for crop-trained heatmap models (``views='full-frame'``; docs/resolution.md).

The network runs once over the whole frame at ``crop.scale`` (zero padded to a multiple of
``PAD_MULTIPLE``), in overlapping tiles when the frame exceeds ``max_pixels``; per landmark the
highest heatmap peak over all tiles wins and is refined by
:func:`cnnkit.model.heads.local_soft_argmax`. The likelihood is the heatmap likelihood in a
window of the training map's size around that peak. Test-time flip averages each tile's maps
with its mirror image's (partners swapped). ``views='auto'`` uses it for crop-trained heatmap
models whose subject is small in the frame, and two passes (:mod:`cnnkit.engine.views`) otherwise:
two passes work with every head and cost two views per frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from cnnkit.config import CropConfig
from cnnkit.data.decode import Geometry
from cnnkit.data.views import SMALL_SUBJECT_SHARE, View, cut_view, subject_view
from cnnkit.engine.device import autocast
from cnnkit.engine.step import StepSetup
from cnnkit.errors import ConfigError
from cnnkit.infer.landmarks import _maps, network_input
from cnnkit.model.heads import heatmap_likelihood, local_soft_argmax

VIEWS = ("auto", "two-pass", "full-frame")
PAD_MULTIPLE = 32  # the coarsest stride of the presets: padded frames keep maps aligned
MAX_PIXELS = 2048 * 2048  # above this, tiles
TILE_OVERLAP = 128  # view pixels shared by neighbouring tiles


#: ``views='auto'`` scores crop-trained heatmap models in two passes where the subject spans at least
#: this share of the frame in training (``subject_share`` in the checkpoint), else full-frame.
#: Chosen on validation splits (docs/resolution.md, "Measured"): full-frame wins on the small-subject
#: set (share 0.10: 2.55 vs 129.85 px), two passes on lips-via (share 0.47: 7.26 vs 9.29 px).
AUTO_TWO_PASS_SHARE = SMALL_SUBJECT_SHARE


def check_views(views: str, model: nn.Module, crop: CropConfig | None, subject_share: float | None = None) -> str:
    """``views`` checked against the model and resolved: 'auto' is full-frame for crop-trained heatmap
    models whose subject is small in the frame (``subject_share`` below :data:`AUTO_TWO_PASS_SHARE`,
    or not recorded), else two-pass."""
    if views not in VIEWS:
        raise ConfigError(f"views: expected one of {', '.join(VIEWS)}. Received: {views!r}")
    full_frame_ok = crop is not None and getattr(model, "head", None) == "heatmap"
    if views == "auto":
        small = subject_share is None or subject_share < AUTO_TWO_PASS_SHARE
        return "full-frame" if full_frame_ok and small else "two-pass"
    if views == "full-frame" and not full_frame_ok:
        raise ConfigError("views='full-frame' needs a crop-trained model (data.crop) with a heatmap head; "
                          "this one is " + ("not crop-trained" if crop is None else "a direct-head model") +
                          ". Use views='two-pass' (the default).")
    return views


def _tiles(extent: int, tile: int) -> list[int]:
    if extent <= tile:
        return [0]
    step = max(PAD_MULTIPLE, tile - TILE_OVERLAP)
    starts = list(range(0, extent - tile, step)) + [extent - tile]
    return sorted(set(starts))


@torch.no_grad()
def _tile_maps(net: nn.Module, setup: StepSetup, image_u8: torch.Tensor, perm: torch.Tensor | None) -> torch.Tensor:
    images = network_input(setup, image_u8)
    with autocast(setup.device, setup.precision):
        maps = _maps(net, images)
        if perm is not None:  # test-time flip: the mirror image's maps, flipped back, partners swapped
            mirrored = _maps(net, images.flip(-1)).flip(-1)[:, perm.to(maps.device)]
            maps = (maps + mirrored) / 2
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
