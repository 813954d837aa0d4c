"""Between a loader batch and the network: pixels in, normalised tensors out, and back.

Convention: a batch from ``TableDataset`` holds landmark points in the network input's
pixels (corner origin). The network predicts them normalised to the input frame,
``x_norm = x_input_px / width`` (0 = left edge, 1 = right edge), laid out flat as
``[x0..xK-1, y0..yK-1]``. Original-image pixels are recovered through the per-image
resize geometry: ``orig = (input_px - offset) / scale``.
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


def input_frame(size: tuple[int, int], device: torch.device | str = "cpu") -> torch.Tensor:
    """(2,) tensor (width, height) of the network input, for (x, y) scaling."""
    return torch.tensor([float(size[0]), float(size[1])], device=device)


def points_to_norm(points_px: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, K, 2) input pixels -> (B, K, 2) normalised to [0, 1] of the input frame."""
    return points_px / input_frame(size, points_px.device)


def norm_to_points(points_norm: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Inverse of ``points_to_norm``."""
    return points_norm * input_frame(size, points_norm.device)


def output_to_norm_points(output: torch.Tensor) -> torch.Tensor:
    """Network output (B, 2K) laid out [x0..xK-1, y0..yK-1] -> (B, K, 2)."""
    k = output.shape[-1] // 2
    return torch.stack([output[..., :k], output[..., k:]], dim=-1)


def input_to_original(points_px: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """(B, K, 2) input pixels -> original-image pixels, using (B, 2) scale and offset."""
    return (points_px - offset[:, None, :]) / scale[:, None, :]
