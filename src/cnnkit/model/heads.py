"""Output heads added after the spec's last layer: 'flatten', 'gap' and 'heatmap'.

Convention (landmarks, every head): the output is ``[x0..xK-1, y0..yK-1]``. The heatmap head
returns normalised input coordinates with the origin at the top-left CORNER: 0 is the
left/top edge of the input and 1 the right/bottom edge; heatmap cell ``(i, j)`` has its centre
at ``((j + 0.5) / W_map, (i + 0.5) / H_map)``. A model trained on targets ``x_px / width``,
``y_px / height`` therefore works with any head.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.errors import ConfigError, SpecError, did_you_mean

Shape = tuple[int, int, int]
# heatmap defaults (width 128, stride 4) were chosen on lips-via's `extra` split: 8.69 px against
# 9.54 px for width 64 / stride 8 (docs/ACCURACY.md). Stride 8 halves the head's cost.
HEAD_OPTIONS: dict[str, dict[str, Any]] = {"flatten": {}, "gap": {}, "heatmap": {"width": 128, "stride": 4}}


def parse_head(
    head: str | Mapping[str, Any] | None, default: str, outputs: int
) -> tuple[str, dict[str, Any]]:
    """Normalise ``'gap'`` / ``{'type': 'heatmap', 'width': 64}`` / None into (type, options).

    Raises:
        ConfigError: unknown head or option, bad width, odd ``outputs`` for 'heatmap'.
    """
    raw: dict[str, Any] = (
        {"type": default if head is None else head} if not isinstance(head, Mapping) else dict(head)
    )
    kind = raw.pop("type", None)
    if kind not in HEAD_OPTIONS:
        raise ConfigError(
            f"head: unknown type {kind!r}.{did_you_mean(str(kind), HEAD_OPTIONS)} Heads: {', '.join(HEAD_OPTIONS)}."
        )
    opts = dict(HEAD_OPTIONS[kind])
    for key, value in raw.items():
        if key not in opts:
            raise ConfigError(
                f"head {kind!r}: unknown option {key!r}.{did_you_mean(key, opts)} Allowed: {list(opts)}."
            )
        opts[key] = value
    width = opts.get("width", 1)
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ConfigError(f"head {kind!r}: option 'width' expected an integer >= 1. Received: {width!r}.")
    stride = opts.get("stride", 8)
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ConfigError(f"head {kind!r}: option 'stride' expected an integer >= 1. Received: {stride!r}.")
    if kind == "heatmap" and outputs % 2:
        raise ConfigError(
            f"head 'heatmap' predicts K landmarks as [x.., y..]: outputs must be even (2K). Received: {outputs}."
        )
    return kind, opts


class FlattenHead(nn.Module):
    """Flatten + fully connected (the seed's automatic final layer). ``[B, C, H, W] -> [B, outputs]``."""

    def __init__(self, in_shape: Shape, outputs: int) -> None:
        super().__init__()
        self.fc = nn.Linear(math.prod(in_shape), outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


class GapHead(nn.Module):
    """Global average pool + fully connected (torchvision ResNet). ``[B, C, H, W] -> [B, outputs]``."""

    def __init__(self, in_shape: Shape, outputs: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_shape[0], outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


def soft_argmax(maps: torch.Tensor) -> torch.Tensor:
    """Expected (x, y) of each map under a spatial softmax, in normalised corner-origin coordinates.

    Shapes:
        maps ``[B, K, H, W]`` -> ``[B, 2K]`` laid out ``[x0..xK-1, y0..yK-1]``, each in (0, 1).
    """
    b, k, h, w = maps.shape
    prob = F.softmax(maps.reshape(b, k, h * w), dim=-1).reshape(b, k, h, w)
    xs = (torch.arange(w, device=maps.device, dtype=maps.dtype) + 0.5) / w
    ys = (torch.arange(h, device=maps.device, dtype=maps.dtype) + 0.5) / h
    x = (prob.sum(dim=2) * xs).sum(dim=-1)
    y = (prob.sum(dim=3) * ys).sum(dim=-1)
    return torch.cat([x, y], dim=1)


def local_soft_argmax(maps: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """Soft-argmax restricted to a ``(2 radius + 1)``-cell square around each map's peak.

    On a map much larger than the ones the model trained on (a whole frame), the global
    soft-argmax averages in every faint bump of the background; finding the peak first and
    averaging only around it keeps sub-cell precision without that pull. Cells outside the
    map count as absent (the window is clipped at the edges).

    Shapes:
        maps ``[B, K, H, W]`` logits -> ``[B, 2K]`` as :func:`soft_argmax` (normalised, corner origin).

    Example:
        >>> m = torch.full((1, 1, 9, 9), -30.0); m[0, 0, 4, 6] = 5.0; m[0, 0, 4, 7] = 5.0
        >>> [round(float(v), 4) for v in local_soft_argmax(m, radius=1)[0]]  # x = 7/9, y = 4.5/9
        [0.7778, 0.5]
    """
    b, k, h, w = maps.shape
    flat = maps.float().reshape(b, k, h * w)
    peak = flat.argmax(dim=-1)
    py, px = (peak // w)[..., None, None], (peak % w)[..., None, None]  # [B, K, 1, 1]
    ys = torch.arange(h, device=maps.device).view(1, 1, h, 1)
    xs = torch.arange(w, device=maps.device).view(1, 1, 1, w)
    window = ((ys - py).abs() <= radius) & ((xs - px).abs() <= radius)
    logits = maps.float().masked_fill(~window, float("-inf"))
    return soft_argmax(logits)


def _gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian smoothing of ``[B, K, H, W]`` maps, radius ``ceil(3 sigma)``, normalised at the edges.

    Cells beyond the map are absent, not zero: each output is the weighted mean of the cells
    its kernel covers inside the map (a blob near an edge is neither pulled towards it, as
    with replicated edges, nor pushed away, as with zero padding).
    """
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, device=maps.device, dtype=maps.dtype)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()
    b, k, h, w = maps.shape

    def blur(x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(F.pad(x, (r, r, 0, 0)), g.view(1, 1, 1, -1))
        return F.conv2d(F.pad(x, (0, 0, r, r)), g.view(1, 1, -1, 1))

    weight = blur(torch.ones(1, 1, h, w, device=maps.device, dtype=maps.dtype))
    return (blur(maps.reshape(b * k, 1, h, w)) / weight).reshape(b, k, h, w)


def dark_decode(maps: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Peak cell + one Newton step on the log-probability around it (DARK, Zhang et al., CVPR 2020).

    The map's spatial softmax is smoothed with a Gaussian of ``sigma`` cells (0: none), and
    its log is fitted by a second-order Taylor expansion at the most probable cell (central
    differences over the 3x3 neighbourhood); the point is the maximum of that quadratic. Exact
    for a Gaussian blob (its log is a quadratic) wherever it lies, border cells excepted, and it
    follows the strongest mode of a multi-modal map instead of averaging the modes. Where the
    quadratic has no maximum (a flat or saddle neighbourhood) the point stays at the cell's
    centre; the step is clipped to one cell.

    Shapes:
        maps ``[B, K, H, W]`` logits -> ``[B, 2K]`` as :func:`soft_argmax` (normalised, corner origin).

    Example:
        >>> ys, xs = torch.meshgrid(torch.arange(12.0), torch.arange(16.0), indexing="ij")
        >>> m = (-((xs + 0.5 - 9.3) ** 2 + (ys + 0.5 - 4.8) ** 2) / (2 * 1.5**2))[None, None]
        >>> [round(float(v) * n, 3) for v, n in zip(dark_decode(m)[0], (16, 12))]  # cells: (9.3, 4.8)
        [9.3, 4.8]
    """
    b, k, h, w = maps.shape
    logp = F.log_softmax(maps.float().reshape(b, k, h * w), dim=-1).reshape(b, k, h, w)
    if sigma > 0:
        logp = _gaussian_blur(logp.exp(), sigma).clamp_min(1e-30).log()
    peak = logp.reshape(b, k, h * w).argmax(dim=-1)
    py, px = peak // w, peak % w  # [B, K]
    # the 3x3 stencil is centred on the peak, or on the cell next to it when the peak is on the border
    cy, cx = py.clamp(min(1, h - 1), max(h - 2, 0)), px.clamp(min(1, w - 1), max(w - 2, 0))
    padded = F.pad(logp.reshape(b * k, 1, h, w), (1, 1, 1, 1), mode="replicate").reshape(b, k, h + 2, w + 2)

    def at(dy: int, dx: int) -> torch.Tensor:  # log-probability at (cy + dy, cx + dx), [B, K]
        flat = (cy + 1 + dy) * (w + 2) + (cx + 1 + dx)
        return padded.reshape(b, k, -1).gather(-1, flat[..., None])[..., 0]

    f0 = at(0, 0)
    gx, gy = (at(0, 1) - at(0, -1)) / 2, (at(1, 0) - at(-1, 0)) / 2
    hxx, hyy = at(0, 1) - 2 * f0 + at(0, -1), at(1, 0) - 2 * f0 + at(-1, 0)
    hxy = (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1)) / 4
    det = hxx * hyy - hxy**2
    peaked = (hxx < 0) & (det > 1e-12)
    safe = torch.where(peaked, det, torch.ones_like(det))
    zero = torch.zeros_like(det)
    dx = torch.where(peaked, (cx - px) - (hyy * gx - hxy * gy) / safe, zero).clamp(-1.0, 1.0)
    dy = torch.where(peaked, (cy - py) - (hxx * gy - hxy * gx) / safe, zero).clamp(-1.0, 1.0)
    x = (px.to(dx.dtype) + 0.5 + dx) / w
    y = (py.to(dy.dtype) + 0.5 + dy) / h
    return torch.cat([x, y], dim=1)


#: Heatmap decoders by name: ``[B, K, H, W]`` logits -> ``[B, 2K]`` normalised points.
#: 'soft-argmax' is what the head trains with (integral regression) and the default at inference;
#: the others were measured against it on lips-via (bench/accuracy/decoding.py, docs/decoding.md).
DECODERS: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] = MappingProxyType({
    "soft-argmax": soft_argmax,
    "local": local_soft_argmax,
    "dark": dark_decode,
})
DEFAULT_DECODE = "soft-argmax"


def check_decode(decode: str) -> str:
    """``decode`` if it names a decoder of :data:`DECODERS`.

    Raises:
        ConfigError: unknown decoder name (with the nearest one suggested).
    """
    if decode not in DECODERS:
        raise ConfigError(f"decode: unknown decoder {decode!r}.{did_you_mean(str(decode), DECODERS)} "
                          f"Decoders: {', '.join(DECODERS)}.")
    return decode


def decode_maps(maps: torch.Tensor, decode: str = DEFAULT_DECODE) -> torch.Tensor:
    """``maps [B, K, H, W]`` -> ``[B, 2K]`` with the decoder named ``decode`` (a key of :data:`DECODERS`)."""
    return DECODERS[check_decode(decode)](maps)


class HeatmapHead(nn.Module):
    """FPN-style top-down merge of the taps, K heatmaps, soft-argmax (integral regression).

    ``forward`` takes the tapped feature maps ordered fine -> coarse and returns ``[B, 2K]``.
    """

    def __init__(self, tap_channels: Sequence[int], width: int, landmarks: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in tap_channels)
        self.smooth = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            )
            for _ in tap_channels[:-1]
        )
        self.to_maps = nn.Conv2d(width, landmarks, 1)
        self.last_maps: torch.Tensor | None = None

    def reset_output(self) -> None:
        """Near-zero map logits, so an untrained head predicts the image centre (stable start)."""
        nn.init.normal_(self.to_maps.weight, std=1e-3)
        if self.to_maps.bias is not None:
            nn.init.zeros_(self.to_maps.bias)

    def heatmaps(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """Logit maps ``[B, K, H_f, W_f]`` at the finest tap's resolution."""
        y = self.lateral[-1](feats[-1])
        for i in range(len(feats) - 2, -1, -1):
            y = F.interpolate(y, size=feats[i].shape[-2:], mode="bilinear", align_corners=False)
            y = self.smooth[i](y + self.lateral[i](feats[i]))
        return self.to_maps(y)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        maps = self.heatmaps(feats)
        # Kept for a loss on the maps themselves (crop training's MapLoss); only while training, so
        # inference, export and tracing see a forward without side effects.
        self.last_maps = maps if self.training else None
        return soft_argmax(maps)


def select_taps(shapes: Sequence[Shape], in_hw: tuple[int, int], finest_stride: int = 4) -> list[int]:
    """Layer indices feeding the heatmap head, fine -> coarse, the last layer always included.

    A tap is the last layer at each spatial resolution. From the last layer the chain walks to
    finer taps down to the finest one whose stride is at least ``finest_stride`` (4 by default:
    ResNet stages 1-4, a 40x30 map for a 160x120 input; 8 uses stages 2-4 at a quarter of the
    head's cost), or the finest available.
    """
    last = len(shapes) - 1
    if shapes[last][1] * shapes[last][2] <= 1:
        raise SpecError(
            f"head 'heatmap' needs a spatial last layer; layer {last} outputs (C, H, W) = {shapes[last]}. "
            "Remove the final flatten/fc/global_avg_pool or use head='gap'."
        )
    chain = [last]
    for i in range(last - 1, -1, -1):
        c, h, w = shapes[i]
        prev = shapes[chain[-1]]
        if shapes[i + 1][1:] != (h, w) and h * w > prev[1] * prev[2]:
            chain.append(i)

    def stride(i: int) -> float:
        return math.sqrt(in_hw[0] * in_hw[1] / (shapes[i][1] * shapes[i][2]))

    in_range = [n for n, i in enumerate(chain) if stride(i) + 1e-9 >= finest_stride]
    stop = in_range[-1] if in_range else len(chain) - 1
    return chain[: stop + 1][::-1]


def make_head(
    kind: str, opts: Mapping[str, Any], shapes: Sequence[Shape], in_hw: tuple[int, int], outputs: int
) -> tuple[nn.Module, tuple[int, ...]]:
    """Build the head; returns it and the tapped layer indices (empty unless 'heatmap')."""
    if kind == "flatten":
        return FlattenHead(shapes[-1], outputs), ()
    if kind == "gap":
        return GapHead(shapes[-1], outputs), ()
    taps = select_taps(shapes, in_hw, opts["stride"])
    return HeatmapHead([shapes[i][0] for i in taps], opts["width"], outputs // 2), tuple(taps)


#: Radius, in heatmap cells, of the disc whose probability mass is the heatmap likelihood.
#: Chosen on lips-via's `extra` split (bench/accuracy/lips_likelihood.py; docs/ACCURACY.md).
LIKELIHOOD_RADIUS = 1.5


def heatmap_likelihood(maps: torch.Tensor, radius: float = LIKELIHOOD_RADIUS) -> torch.Tensor:
    """Confidence per landmark: the share of its map's probability within ``radius`` cells of its point.

    The head predicts each landmark as the mean of a spatial softmax over its map
    (:func:`soft_argmax`). A sharp single peak puts nearly all the probability near that mean
    (likelihood near 1); a broad, flat or split map (two candidate places) leaves little there
    (near 0). The forward output and the parameters of the head are untouched: this reads the
    maps it already made.

    Shapes:
        maps ``[B, K, H, W]`` logits -> ``[B, K]`` in [0, 1] (NaN where a map is not finite).

    Example:
        >>> sharp = torch.full((1, 1, 8, 8), -20.0); sharp[0, 0, 3, 4] = 20.0
        >>> flat = torch.zeros(1, 1, 8, 8)
        >>> [round(float(heatmap_likelihood(m)[0, 0]), 3) for m in (sharp, flat)]
        [1.0, 0.062]
    """
    b, k, h, w = maps.shape
    prob = F.softmax(maps.float().reshape(b, k, h * w), dim=-1).reshape(b, k, h, w)
    xs = torch.arange(w, device=maps.device, dtype=prob.dtype) + 0.5  # cell centres, in cells
    ys = torch.arange(h, device=maps.device, dtype=prob.dtype) + 0.5
    mx = (prob.sum(dim=2) * xs).sum(dim=-1)[..., None, None]  # [B, K, 1, 1]
    my = (prob.sum(dim=3) * ys).sum(dim=-1)[..., None, None]
    near = (xs.view(1, 1, 1, w) - mx) ** 2 + (ys.view(1, 1, h, 1) - my) ** 2 <= radius**2
    return (prob * near).sum(dim=(2, 3)).clamp(0.0, 1.0)
