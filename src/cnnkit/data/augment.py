"""Batched augmentation that moves the landmarks with the image: flip with a left/right swap,
rotation, scale, shift, colour jitter, blur and noise.

Why batched on the device: after the loader hands over a uint8 batch, one affine grid per
image and a few element-wise colour ops are cheap on the accelerator (and still cheap on CPU
compared with a forward/backward pass, see ``bench/perf/augment.py`` and docs/PERFORMANCE.md),
while the loader workers stay free for JPEG decoding, which dominates on CPU.

Convention:
    Points are ``(x, y)`` pixels with the origin at the top-left CORNER of the image, x right,
    y down, continuous (pixel ``(i, j)`` covers ``[j, j+1] x [i, i+1]``; its centre is
    ``(j + 0.5, i + 0.5)``). With ``align_corners=False`` the normalised grid coordinate -1
    is the left/top edge (x=0) and +1 the right/bottom edge (x=W), so
    ``x_norm = 2 x / W - 1`` exactly, and image and points are moved by the same matrix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

from cnnkit.errors import ConfigError, DataError, did_you_mean

Tensor = torch.Tensor
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 weights, as Pillow's "L" conversion
_BLUR_RADIUS = 2  # 5-tap separable kernel: "small" blur, sigma drawn in [0.5, 1.5] px
_BLUR_SIGMA = (0.5, 1.5)


@dataclass(frozen=True)
class Augment:
    """Random augmentation settings. ``Augment()`` does nothing; use it at evaluation.

    Attributes:
        flip: mirror left/right with probability 0.5 (needs left/right pairs for landmarks).
        force_flip: allow ``flip`` for landmarks without declared pairs (points keep labels).
        rotate: maximum rotation in degrees, drawn uniformly in ``[-rotate, rotate]``.
        scale: (low, high) zoom factor range, drawn uniformly; > 1 zooms in.
        shift: maximum translation as a fraction of width (x) and height (y), uniform ±.
        brightness, contrast, saturation: jitter strength s; factor drawn in [1 - s, 1 + s].
        blur: probability of a small Gaussian blur per image.
        noise: std of additive Gaussian noise, in [0, 1] intensity units.
    """

    flip: bool = False
    force_flip: bool = False
    rotate: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    shift: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    blur: float = 0.0
    noise: float = 0.0

    def __post_init__(self) -> None:
        for name in ("flip", "force_flip"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"augment.{name} must be true or false. Received: {getattr(self, name)!r}")
        scale = self.scale
        if not (isinstance(scale, (list, tuple)) and len(scale) == 2):
            raise ConfigError(
                f"augment.scale must be a pair (low, high), e.g. (0.9, 1.1). Received: {scale!r}"
            )
        object.__setattr__(self, "scale", (_number("scale[0]", scale[0]), _number("scale[1]", scale[1])))
        if not 0.0 < self.scale[0] <= self.scale[1]:
            raise ConfigError(f"augment.scale must satisfy 0 < low <= high. Received: {self.scale!r}")
        limits = {"rotate": 180.0, "shift": 1.0, "brightness": 1.0, "contrast": 1.0,
                  "saturation": 1.0, "blur": 1.0, "noise": 1.0}  # fmt: skip
        for name, high in limits.items():
            value = _number(name, getattr(self, name))
            if not 0.0 <= value <= high:
                raise ConfigError(f"augment.{name} must be in [0, {high:g}]. Received: {value!r}")
            object.__setattr__(self, name, value)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Augment:
        """Build from a dict (experiment file). Unknown keys raise ConfigError with a suggestion."""
        names = [f.name for f in fields(cls)]
        for key in data:
            if key not in names:
                raise ConfigError(
                    f"unknown augment key {key!r}.{did_you_mean(key, names)} Allowed: {', '.join(names)}."
                )
        return cls(**dict(data))

    @classmethod
    def default_landmarks(cls, *, flip: bool = False) -> Augment:
        """The preset for landmarks: rotation ±15°, scale 0.9-1.1, shift ±8%, brightness/contrast 0.2;
        ``flip`` for sets with declared left/right pairs (docs/ACCURACY.md)."""
        return cls(flip=flip, rotate=15.0, scale=(0.9, 1.1), shift=0.08, brightness=0.2, contrast=0.2)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, not tuples) that ``from_mapping`` reads back."""
        out = asdict(self)
        out["scale"] = list(self.scale)
        return out

    @property
    def geometric(self) -> bool:
        """True when any op moves pixels (flip, rotate, scale, shift)."""
        return self.flip or self.rotate > 0 or self.scale != (1.0, 1.0) or self.shift > 0

    @property
    def enabled(self) -> bool:
        """True when ``augment_batch`` would change anything."""
        colour = (self.brightness, self.contrast, self.saturation, self.blur, self.noise)
        return self.geometric or any(v > 0 for v in colour)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"augment.{name} must be a finite number. Received: {value!r}")
    return float(value)


def flip_permutation(
    landmarks: Sequence[str], pairs: Sequence[tuple[str, str]], *, force: bool = False
) -> list[int]:
    """Index map for a horizontal flip: ``flipped[:, k] = moved[:, perm[k]]``.

    Args:
        landmarks: landmark names in table order.
        pairs: (left, right) name pairs that swap under a mirror; unpaired points map to themselves.
        force: allow an empty ``pairs`` for a non-empty landmark set (points keep their labels).

    Raises:
        ConfigError: unknown name, a name in two pairs, or no pairs without ``force``.

    Example:
        >>> flip_permutation(["l_eye", "nose", "r_eye"], [("l_eye", "r_eye")])
        [2, 1, 0]
    """
    names = list(landmarks)
    if names and not pairs and not force:
        raise ConfigError(
            "flip=True but the landmark set declares no left/right pairs: a mirrored image would keep "
            "'left' labels on right-side points and teach the model wrong positions. Declare the "
            "pairs, e.g. flip_pairs=[('left_eye', 'right_eye'), ...], or set force_flip=True when "
            "every point lies on the symmetry axis or labels do not depend on side."
        )
    perm = list(range(len(names)))
    seen: set[str] = set()
    for i, pair in enumerate(pairs):
        if len(pair) != 2:
            raise ConfigError(f"flip_pairs[{i}] must be a (left, right) pair. Received: {pair!r}")
        for name in pair:
            if name not in names:
                raise ConfigError(f"flip_pairs[{i}]: unknown landmark {name!r}.{did_you_mean(name, names)}")
            if name in seen:
                raise ConfigError(f"flip_pairs[{i}]: landmark {name!r} appears in more than one pair.")
            seen.add(name)
        a, b = names.index(pair[0]), names.index(pair[1])
        perm[a], perm[b] = b, a
    return perm


def augment_batch(
    images: Tensor,
    points: Tensor,
    aug: Augment,
    *,
    generator: torch.Generator,
    flip_perm: Sequence[int] | Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Augment a batch on its own device; image and points move through one matrix per image.

    Args:
        images: float (B, C, H, W) in [0, 1], before normalisation. Not modified.
        points: (B, K, 2) (x, y) corner-origin input pixels, NaN = missing; K may be 0. Not modified.
        aug: the settings; ``Augment()`` returns unchanged copies.
        generator: CPU generator all random draws come from, so a seed reproduces the batch.
        flip_perm: from ``flip_permutation``; needed when ``aug.flip`` and K > 0, unless
            ``aug.force_flip``.

    Returns:
        New (images, points): images clamped to [0, 1]; points that leave ``[0, W] x [0, H]``
        become NaN (never clamped).

    Shapes:
        images (B, C, H, W) -> (B, C, H, W); points (B, K, 2) -> (B, K, 2).
    """
    perm = _check_inputs(images, points, aug, flip_perm)
    out_img, out_pts = images.clone(), points.clone()
    if not aug.enabled or images.shape[0] == 0:
        return out_img, out_pts
    b, _, h, w = images.shape
    if aug.geometric:
        matrix, flipped = _random_matrices(aug, b, w, h, generator)
        out_img = _warp_images(out_img, matrix)
        out_pts = _move_points(out_pts, matrix, flipped, perm, w, h)
    out_img = _colour(out_img, aug, generator)
    return out_img.clamp_(0.0, 1.0), out_pts


def _check_inputs(images: Tensor, points: Tensor, aug: Augment, flip_perm: Any) -> Tensor | None:
    if images.ndim != 4 or not images.is_floating_point():
        raise DataError(
            f"images must be a float (B, C, H, W) tensor. Received: {images.dtype} {tuple(images.shape)}"
        )
    if points.ndim != 3 or points.shape[-1] != 2 or points.shape[0] != images.shape[0]:
        raise DataError(
            f"points must be (B, K, 2) with B={images.shape[0]} like the images. Received: {tuple(points.shape)}"
        )
    k = points.shape[1]
    if flip_perm is None:
        if aug.flip and k > 0 and not aug.force_flip:
            flip_permutation([f"point {i}" for i in range(k)], [])  # raises the explanatory ConfigError
        return None
    perm = torch.as_tensor(flip_perm, dtype=torch.long).cpu()
    if sorted(perm.tolist()) != list(range(k)):
        raise ConfigError(f"flip_perm must be a permutation of 0..{k - 1}. Received: {perm.tolist()}")
    return perm


def _random_matrices(aug: Augment, b: int, w: int, h: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """(B, 3, 3) float64 forward maps in pixels, and the (B,) bool flip mask, drawn on CPU.

    Forward map: ``T(c + shift) @ R(angle) @ S(scale) @ Flip @ T(-c)`` with c the image centre,
    i.e. flip first, then zoom and rotate about the centre, then translate. With y down, a
    positive angle turns the image clockwise on screen.
    """

    def uniform(low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(b, generator=gen, dtype=torch.float64)

    flipped = (
        torch.rand(b, generator=gen, dtype=torch.float64) < 0.5
        if aug.flip
        else torch.zeros(b, dtype=torch.bool)
    )
    angle = torch.deg2rad(uniform(-aug.rotate, aug.rotate))
    zoom = uniform(*aug.scale)
    tx, ty = uniform(-aug.shift, aug.shift) * w, uniform(-aug.shift, aug.shift) * h
    sx = torch.where(flipped, -zoom, zoom)
    cos, sin = torch.cos(angle), torch.sin(angle)
    cx, cy = w / 2.0, h / 2.0
    m = torch.zeros(b, 3, 3, dtype=torch.float64)
    m[:, 0, 0], m[:, 0, 1] = cos * sx, -sin * zoom
    m[:, 1, 0], m[:, 1, 1] = sin * sx, cos * zoom
    m[:, 0, 2] = cx + tx - m[:, 0, 0] * cx - m[:, 0, 1] * cy
    m[:, 1, 2] = cy + ty - m[:, 1, 0] * cx - m[:, 1, 1] * cy
    m[:, 2, 2] = 1.0
    return m, flipped


def _warp_images(images: Tensor, matrix: Tensor) -> Tensor:
    """Resample with the inverse map expressed in align_corners=False normalised coordinates."""
    b, c, h, w = images.shape
    to_norm = torch.tensor([[2.0 / w, 0.0, -1.0], [0.0, 2.0 / h, -1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    from_norm = torch.linalg.inv(to_norm)
    theta = (to_norm @ torch.linalg.inv(matrix) @ from_norm)[:, :2, :]  # output coords -> input coords
    theta = theta.to(dtype=images.dtype).to(images.device)  # cast on CPU: MPS has no float64
    grid = F.affine_grid(theta, [b, c, h, w], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _move_points(
    points: Tensor, matrix: Tensor, flipped: Tensor, perm: Tensor | None, w: int, h: int
) -> Tensor:
    """Apply the forward maps, swap left/right labels on flipped images, NaN out-of-frame points."""
    if points.shape[1] == 0:
        return points
    # (B, K, 2) is tiny: do it in float64 on the CPU (MPS has no float64), then move back.
    m, p = matrix, points.detach().to("cpu").to(torch.float64)
    moved = p @ m[:, :2, :2].transpose(1, 2) + m[:, None, :2, 2]
    if perm is not None:
        swap = flipped[:, None, None]
        moved = torch.where(swap, moved[:, perm, :], moved)
    x, y = moved[..., 0], moved[..., 1]
    outside = (x < 0) | (x > w) | (y < 0) | (y > h) | moved.isnan().any(-1)
    moved = moved.masked_fill(outside[..., None], float("nan"))
    return moved.to(points.dtype).to(points.device)


def _colour(images: Tensor, aug: Augment, gen: torch.Generator) -> Tensor:
    """Per-image brightness, contrast, saturation, then optional blur and noise."""
    b, c = images.shape[:2]

    def factors(strength: float) -> Tensor:
        f = 1.0 + strength * (2.0 * torch.rand(b, generator=gen) - 1.0)
        return f.to(device=images.device, dtype=images.dtype)[:, None, None, None]

    out = images
    if aug.brightness > 0:
        out = (out * factors(aug.brightness)).clamp_(0.0, 1.0)
    if aug.contrast > 0:
        mean = _grey(out).mean(dim=(1, 2, 3), keepdim=True)
        out = ((out - mean) * factors(aug.contrast) + mean).clamp_(0.0, 1.0)
    if aug.saturation > 0 and c == 3:  # grey images have no saturation to change
        grey = _grey(out)
        out = ((out - grey) * factors(aug.saturation) + grey).clamp_(0.0, 1.0)
    if aug.blur > 0:
        out = _blur(out, aug.blur, gen)
    if aug.noise > 0:
        out = out + aug.noise * torch.randn(
            out.shape, generator=_device_generator(gen, out.device), device=out.device, dtype=out.dtype
        )
    return out


def _grey(images: Tensor) -> Tensor:
    """(B, 1, H, W) luma for RGB, the channel mean otherwise."""
    if images.shape[1] != 3:
        return images.mean(dim=1, keepdim=True)
    weights = torch.tensor(_LUMA, device=images.device, dtype=images.dtype)[None, :, None, None]
    return (images * weights).sum(dim=1, keepdim=True)


def _blur(images: Tensor, prob: float, gen: torch.Generator) -> Tensor:
    """Separable 5-tap Gaussian on a random subset of images; the rest get a delta kernel.

    Written as a weighted sum of shifted slices: per-image kernels broadcast over channels with
    no reshaping; on CPU it costs about the same as ``conv2d(groups=B*C)`` (~1.5 ms for 32x3x92x64).
    """
    b = images.shape[0]
    chosen = torch.rand(b, generator=gen) < prob
    sigma = _BLUR_SIGMA[0] + (_BLUR_SIGMA[1] - _BLUR_SIGMA[0]) * torch.rand(b, generator=gen)
    if not bool(chosen.any()):
        return images
    taps = torch.arange(-_BLUR_RADIUS, _BLUR_RADIUS + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps[None, :] / sigma[:, None]) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    kernel = torch.where(chosen[:, None], kernel, (taps == 0).float().expand(b, -1))  # (B, 5)
    kernel = kernel.to(device=images.device, dtype=images.dtype)[:, :, None, None, None]
    h, w = images.shape[-2:]
    x = F.pad(images, [_BLUR_RADIUS, _BLUR_RADIUS, 0, 0], mode="replicate")
    out = kernel[:, 0] * x[..., :, 0:w]
    for t in range(1, kernel.shape[1]):  # along x
        out = out + kernel[:, t] * x[..., :, t : t + w]
    x = F.pad(out, [0, 0, _BLUR_RADIUS, _BLUR_RADIUS], mode="replicate")
    out = kernel[:, 0] * x[..., 0:h, :]
    for t in range(1, kernel.shape[1]):  # along y
        out = out + kernel[:, t] * x[..., t : t + h, :]
    return out


def _device_generator(gen: torch.Generator, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded from ``gen``: bulk noise is drawn where it is used
    (copying B*C*H*W numbers from the CPU would cost more than the op) yet stays reproducible."""
    seed = int(torch.randint(0, 2**62, (1,), generator=gen).item())
    return torch.Generator(device=device).manual_seed(seed)
