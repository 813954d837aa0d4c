"""Between a loader batch and the network: uint8 pixels in, normalised float tensors out.

Point coordinates are converted in ``cnnkit.geometry``; this module only handles image values.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# ImageNet statistics: the usual choice, and the one pretrained ResNet weights expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GRAY_MEAN = (0.449,)
GRAY_STD = (0.226,)


def default_normalisation(channels: int) -> dict[str, list[float]]:
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else (GRAY_MEAN, GRAY_STD)
    return {"mean": list(mean), "std": list(std)}


def to_unit_float(images_u8: torch.Tensor, *, channels_last: bool = False) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 in [0, 1] (on the images' device)."""
    images = images_u8.float().div_(255.0)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def normalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(B, C, H, W) in [0, 1] -> (x - mean) / std per channel."""
    m = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - m) / s
