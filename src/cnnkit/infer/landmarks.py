"""Landmark outputs with a likelihood per point, for every head.

Meaning of ``<name>_likelihood`` (in [0, 1]; NaN where the point is not predicted):

- **heatmap head**: the share of the landmark's heatmap probability (the spatial softmax the
  head averages to place the point) that lies within ``LIKELIHOOD_RADIUS`` heatmap cells of
  the point (:func:`cnnkit.model.heads.heatmap_likelihood`). One sharp peak: near 1; a broad
  or split map: near 0. With test-time flip, the mean over the two passes.
- **direct heads** (``gap``, ``flatten``) of a model with left/right flip pairs: agreement
  under flip, ``exp(-d^2 / (2 s^2))`` with ``d`` the distance between the point predicted on
  the image and on its mirror image (mapped back), and ``s`` = 2.5 % of the input's diagonal
  (1 at perfect agreement, 0.61 at ``d = s``). It costs a second pass, which test-time flip
  then uses for free.
- **direct heads without flip pairs**: nothing in the model measures doubt, so the column is
  a constant 1.0 (and a warning says so). Train with a heatmap head, or declare flip pairs.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from cnnkit import geometry
from cnnkit.engine.device import autocast
from cnnkit.engine.step import StepSetup
from cnnkit.engine.tensors import normalise, to_unit_float
from cnnkit.model.heads import DEFAULT_DECODE, check_decode, decode_maps, heatmap_likelihood

log = logging.getLogger(__name__)
#: Scale of the flip agreement of direct heads, as a fraction of the input diagonal.
FLIP_AGREEMENT_SCALE = 0.025


class LandmarkScorer(nn.Module):
    """``images -> (points_norm [B, K, 2], likelihood [B, K])`` for a landmark model.

    Args:
        model: a landmark ``SpecNet`` (raw, not wrapped).
        perm: left/right partner of every landmark (the flip permutation), or None.
        tta_flip: average the image's and its mirror image's outputs (needs ``perm``).
        size: (width, height) of the input, for the flip agreement's scale.
        decode: how a heatmap head's maps become points, a key of
            :data:`cnnkit.model.heads.DECODERS` ('soft-argmax', the head's own output, by default;
            docs/decoding.md). Ignored by direct heads.
    """

    def __init__(self, model: nn.Module, *, perm: list[int] | None, tta_flip: bool, size: tuple[int, int],
                 decode: str = DEFAULT_DECODE) -> None:
        super().__init__()
        self.model, self.tta_flip, self.decode = model, tta_flip, check_decode(decode)
        self.perm = None if perm is None else torch.tensor(perm, dtype=torch.long)
        self.heatmap = getattr(model, "head", None) == "heatmap"
        self.mirror = tta_flip or (not self.heatmap and perm is not None)
        self.aspect = torch.tensor([float(size[0]), float(size[1])]) / math.hypot(*size)
        self.warn = not self.heatmap and perm is None  # said once, when a likelihood is first made

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.warn:
            self.warn = False
            log.warning("this model has a direct head and no flip pairs: nothing measures its doubt, so "
                        "every likelihood is 1.0 (a heatmap head or declared flip pairs give a real one)")
        points, lik = self._one(images)
        if not self.mirror:
            return points, lik
        m_points, m_lik = self._one(images.flip(-1))
        perm = self.perm.to(images.device) if self.perm is not None else torch.arange(points.shape[1])
        m_points = unmirror(m_points, perm)
        if not self.heatmap:  # agreement under flip, in units of the diagonal
            d = ((points - m_points) * self.aspect.to(images.device)).norm(dim=-1)
            lik = torch.exp(-0.5 * (d / FLIP_AGREEMENT_SCALE) ** 2)
        else:
            lik = (lik + m_lik[:, perm]) / 2
        return ((points + m_points) / 2 if self.tta_flip else points), lik

    def _one(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.heatmap:
            out = geometry.flat_to_points(self.model(images).float())
            return out, torch.ones(out.shape[:2], device=out.device)
        maps = _maps(self.model, images)
        return geometry.flat_to_points(decode_maps(maps, self.decode)), heatmap_likelihood(maps)


def unmirror(points_norm: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Points predicted on the mirror image -> the same landmarks on the image (partners swapped, x -> 1 - x).

    Shapes:
        points_norm ``[B, K, 2]`` normalised; perm ``[K]`` -> ``[B, K, 2]``.
    """
    m = points_norm[:, perm]
    return torch.stack([1.0 - m[..., 0], m[..., 1]], dim=-1)


def _maps(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The heatmap head's logit maps, caught on their way out of its last conv (forward unchanged)."""
    caught: list[torch.Tensor] = []
    to_maps: nn.Module = getattr(model.head_net, "to_maps")  # noqa: B009 - the HeatmapHead's last conv
    handle = to_maps.register_forward_hook(lambda _m, _i, out: caught.append(out))
    try:
        model(images)
    finally:
        handle.remove()
    return caught[0].float()


def network_input(setup: StepSetup, images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, C, H, W]`` -> normalised float on the device, as training fed the network."""
    images = to_unit_float(images_u8.to(setup.device, non_blocking=True), channels_last=setup.channels_last)
    return normalise(images, setup.mean, setup.std)


@torch.no_grad()
def score_batch(scorer: LandmarkScorer, setup: StepSetup, images_u8: torch.Tensor, scale: torch.Tensor,
                offset: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``[B, C, H, W]`` input-size images -> (points ``[B, K, 2]`` ORIGINAL pixels, likelihood ``[B, K]``).

    ``scale``, ``offset``: ``[B, 2]``, ``input_px = original_px * scale + offset``. Points and
    likelihoods that are not finite come back as NaN (both columns of the point).
    """
    images = network_input(setup, images_u8)
    with autocast(setup.device, setup.precision):
        points_norm, lik = scorer(images)
    in_px = geometry.norm_to_input(points_norm.float(), setup.size)
    points = geometry.input_to_original(in_px, scale.to(in_px.device), offset.to(in_px.device))
    bad = ~torch.isfinite(points).all(dim=-1) | ~torch.isfinite(lik)
    points[bad] = float("nan")
    lik = lik.float().masked_fill(bad, float("nan"))
    return points.cpu(), lik.cpu()
