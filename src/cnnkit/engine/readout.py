"""A network's output read as what it means: points with a likelihood, or class logits; test-time flip.

The one home of test-time flip (``tta_flip``): :func:`unmirror_points` maps points predicted on
the mirror image back onto the image (left/right partners swapped, ``x -> 1 - x``) and
:func:`unmirror_maps` does the same for heatmaps. Every inference path reads a network through
:class:`PointReader` or :class:`ClassReader` (:mod:`cnnkit.engine.inference`).

Meaning of the landmark likelihood (in [0, 1]; NaN where the point is not predicted):

- **heatmap head**: the share of the landmark's heatmap probability (the spatial softmax the
  head averages to place the point) that lies within ``LIKELIHOOD_RADIUS`` heatmap cells of
  the point (:func:`cnnkit.model.heads.heatmap_likelihood`). One sharp peak: near 1; a broad
  or split map: near 0. With test-time flip, the mean over the two passes.
- **direct heads** (``gap``, ``flatten``) of a model with left/right flip pairs: agreement
  under flip, ``exp(-d^2 / (2 s^2))`` with ``d`` the distance between the point predicted on
  the image and on its mirror image (mapped back), and ``s`` = 2.5 % of the input's diagonal
  (1 at perfect agreement, 0.61 at ``d = s``). It costs a second pass, which test-time flip
  then uses for free.
- **direct heads without flip pairs**: nothing in the model measures doubt, so the likelihood is
  a constant 1.0 (and a warning says so). Train with a heatmap head, or declare flip pairs.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from cnnkit import geometry
from cnnkit.model.heads import DEFAULT_DECODE, check_decode, decode_maps, heatmap_likelihood

log = logging.getLogger("cnnkit")
#: Scale of the flip agreement of direct heads, as a fraction of the input diagonal.
FLIP_AGREEMENT_SCALE = 0.025


def unmirror_points(points_norm: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Points predicted on the mirror image -> the same landmarks on the image (partners swapped, x -> 1 - x).

    Shapes:
        points_norm ``[B, K, 2]`` normalised; perm ``[K]`` -> ``[B, K, 2]``.
    """
    m = points_norm[:, perm]
    return torch.stack([1.0 - m[..., 0], m[..., 1]], dim=-1)


def unmirror_maps(maps: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Heatmaps ``[B, K, H, W]`` of the mirror image -> the image's (flipped back, partners swapped)."""
    return maps.flip(-1)[:, perm.to(maps.device)]


def is_heatmap(model: nn.Module) -> bool:
    return getattr(model, "head", None) == "heatmap"


def heatmap_logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The heatmap head's logit maps ``[B, K, H, W]``, caught on their way out of its last conv (forward unchanged)."""
    caught: list[torch.Tensor] = []
    to_maps: nn.Module = getattr(model.head_net, "to_maps")  # noqa: B009 - the HeatmapHead's last conv
    handle = to_maps.register_forward_hook(lambda _m, _i, out: caught.append(out))
    try:
        model(images)
    finally:
        handle.remove()
    return caught[0].float()


class PointReader(nn.Module):
    """``normalised images -> (points normalised to the input [B, K, 2], likelihood [B, K])``, float32.

    Args:
        model: a landmark network (raw, not wrapped in DDP; a compiled one only with ``likelihood=False``).
        perm: left/right partner of every landmark (the flip permutation), or None.
        tta_flip: average the image's and its mirror image's points (needs ``perm``).
        size: (width, height) of the input, for the flip agreement's scale.
        decode: how a heatmap head's maps become points, a key of :data:`cnnkit.model.heads.DECODERS`
            (docs/decoding.md). Ignored by direct heads.
        likelihood: read a likelihood (module docstring). False: the network's own output is the
            points and the likelihood is 1 (validation during training: no hook, no extra pass).
    """

    def __init__(self, model: nn.Module, *, perm: list[int] | None = None, tta_flip: bool = False,
                 size: tuple[int, int] = (1, 1), decode: str = DEFAULT_DECODE, likelihood: bool = True) -> None:
        super().__init__()
        self.model, self.tta_flip, self.decode = model, tta_flip, check_decode(decode)
        self.perm = None if perm is None else torch.tensor(perm, dtype=torch.long)
        self.heatmap = likelihood and is_heatmap(model)
        self.mirror = tta_flip or (likelihood and not self.heatmap and perm is not None)
        self.agreement = likelihood and not self.heatmap and perm is not None
        self.aspect = torch.tensor([float(size[0]), float(size[1])]) / math.hypot(*size)
        self.warn = likelihood and not self.heatmap and perm is None  # said once, when first read

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
        m_points = unmirror_points(m_points, perm)
        if self.agreement:  # agreement under flip, in units of the diagonal
            d = ((points - m_points) * self.aspect.to(images.device)).norm(dim=-1)
            lik = torch.exp(-0.5 * (d / FLIP_AGREEMENT_SCALE) ** 2)
        elif self.heatmap:
            lik = (lik + m_lik[:, perm]) / 2
        return ((points + m_points) / 2 if self.tta_flip else points), lik

    def _one(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.heatmap:
            out = geometry.flat_to_points(self.model(images).float())
            return out, torch.ones(out.shape[:2], device=out.device)
        maps = heatmap_logits(self.model, images)
        return geometry.flat_to_points(decode_maps(maps, self.decode)), heatmap_likelihood(maps)


class ClassReader(nn.Module):
    """``normalised images -> class logits [B, C]`` (float32); with ``tta_flip`` the mean of the image's
    and its mirror image's logits."""

    def __init__(self, model: nn.Module, *, tta_flip: bool = False) -> None:
        super().__init__()
        self.model, self.tta_flip = model, tta_flip

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model(images)
        if self.tta_flip:
            out = (out + self.model(images.flip(-1))) / 2
        return out.float()
