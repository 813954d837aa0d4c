"""Point geometry, once: the flat model layout, input <-> original pixels, the mean-shape baseline.

Conventions (docs/data.md): points are ``(..., K, 2)`` in ``(x, y)`` order, pixels with the
origin at the top-left CORNER. The model's flat layout is ``[x0..xK-1, y0..yK-1]``. A decoded
image relates to its original by ``input_px = original_px * scale + offset`` per axis (``scale``
is the resize ratio, ``offset`` the letterbox padding), and the network works in
``norm = input_px / (width, height)`` of its input. Every function takes numpy arrays or torch
tensors and returns the same kind; none modifies its input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def _stack(a: Array, b: Array) -> Array:
    return torch.stack([a, b], dim=-1) if isinstance(a, torch.Tensor) else np.stack([a, b], axis=-1)


def flat_to_points(flat: Array) -> Array:
    """``(..., 2K)`` laid out ``[x0..xK-1, y0..yK-1]`` -> ``(..., K, 2)``. Inverse: ``points_to_flat``.

    Example:
        >>> flat_to_points(np.array([1.0, 2.0, 3.0, 4.0])).tolist()
        [[1.0, 3.0], [2.0, 4.0]]
    """
    if flat.shape[-1] % 2:
        raise ValueError(f"flat landmark values need an even last dimension (2K). Received shape {tuple(flat.shape)}")
    k = flat.shape[-1] // 2
    return _stack(flat[..., :k], flat[..., k:])


def points_to_flat(points: Array) -> Array:
    """``(..., K, 2)`` -> ``(..., 2K)`` laid out ``[x0..xK-1, y0..yK-1]``.

    Example:
        >>> points_to_flat(torch.tensor([[1.0, 3.0], [2.0, 4.0]])).tolist()
        [1.0, 2.0, 3.0, 4.0]
    """
    if points.shape[-1] != 2:
        raise ValueError(f"points need a last dimension of 2 (x, y). Received shape {tuple(points.shape)}")
    if isinstance(points, torch.Tensor):
        return torch.cat([points[..., 0], points[..., 1]], dim=-1)
    return np.concatenate([points[..., 0], points[..., 1]], axis=-1)


def _frame(size: Sequence[float], like: Array) -> Array:
    """(width, height) as a (2,) array or tensor matching ``like`` (device and float dtype)."""
    if isinstance(like, torch.Tensor):
        dtype = like.dtype if like.is_floating_point() else torch.float32
        return torch.tensor([float(size[0]), float(size[1])], dtype=dtype, device=like.device)
    return np.array([float(size[0]), float(size[1])])


def input_to_norm(points_px: Array, size: Sequence[float]) -> Array:
    """``(..., 2)`` input pixels -> fractions of the input frame (0 = left/top edge, 1 = right/bottom).

    Example:
        >>> input_to_norm(np.array([[32.0, 12.0]]), (64, 48)).tolist()
        [[0.5, 0.25]]
    """
    return points_px / _frame(size, points_px)


def norm_to_input(points_norm: Array, size: Sequence[float]) -> Array:
    """Inverse of ``input_to_norm``."""
    return points_norm * _frame(size, points_norm)


def input_to_original(points_px: Array, scale: Array, offset: Array) -> Array:
    """``(N, K, 2)`` input pixels -> original-image pixels, with ``(N, 2)`` per-image scale and offset.

    Example:
        >>> input_to_original(np.array([[[12.0, 7.0]]]), np.array([[0.5, 0.25]]), np.array([[2.0, 2.0]])).tolist()
        [[[20.0, 20.0]]]
    """
    return (points_px - offset[:, None, :]) / scale[:, None, :]


def original_to_input(points_px: Array, scale: Array, offset: Array) -> Array:
    """Inverse of ``input_to_original``: ``(N, K, 2)`` original pixels -> input pixels."""
    return points_px * scale[:, None, :] + offset[:, None, :]


def mean_shape_in_original(shape_norm: np.ndarray, size: Sequence[float], scale: np.ndarray,
                           offset: np.ndarray) -> np.ndarray:
    """The mean-shape baseline: a ``(K, 2)`` normalised mean training shape placed in each image.

    Returns ``(N, K, 2)`` original pixels for ``N`` images with ``(N, 2)`` scale and offset: the
    prediction of a model that always answers the average training shape, which every landmark
    error in cnnkit is reported next to.
    """
    in_px = norm_to_input(np.asarray(shape_norm, dtype=np.float64), size)[None]
    return input_to_original(np.broadcast_to(in_px, (len(scale), *in_px.shape[1:])), np.asarray(scale),
                             np.asarray(offset))
