"""cnnkit.geometry: the one home of the flat layout and of input <-> original pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnkit.geometry import (
    flat_to_points,
    input_to_norm,
    input_to_original,
    mean_shape_in_original,
    norm_to_input,
    original_to_input,
    points_to_flat,
)


def test_flat_points_round_trip_and_layout() -> None:
    flat = torch.arange(8.0).reshape(1, 8)  # x0..x3 = 0..3, y0..y3 = 4..7
    pts = flat_to_points(flat)
    assert pts.shape == (1, 4, 2)
    assert pts[0, 2].tolist() == [2.0, 6.0]
    assert torch.equal(points_to_flat(pts), flat)
    with pytest.raises(ValueError, match="even"):
        flat_to_points(torch.zeros(1, 3))



def test_flat_layout_is_the_same_for_numpy_and_torch() -> None:
    flat = np.arange(6.0)
    assert np.array_equal(flat_to_points(flat), flat_to_points(torch.from_numpy(flat)).numpy())
    assert np.array_equal(points_to_flat(flat_to_points(flat)), flat)


def test_pixels_round_trip_through_input_and_norm() -> None:
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 500, size=(4, 3, 2))
    scale, offset = rng.uniform(0.1, 2, size=(4, 2)), rng.uniform(0, 10, size=(4, 2))
    back = input_to_original(original_to_input(pts, scale, offset), scale, offset)
    assert np.allclose(back, pts)
    as_tensor = input_to_original(torch.from_numpy(original_to_input(pts, scale, offset)), torch.from_numpy(scale),
                                  torch.from_numpy(offset))
    assert np.allclose(as_tensor.numpy(), pts)
    assert np.allclose(norm_to_input(input_to_norm(pts, (64, 48)), (64, 48)), pts)


def test_mean_shape_baseline_lands_in_each_image() -> None:
    shape = np.array([[0.5, 0.5], [0.25, 1.0]])  # (K, 2) fractions of the input frame
    # image 0: input 64x48 is the original halved; image 1: a letterboxed copy
    scale, offset = np.array([[0.5, 0.5], [0.25, 0.25]]), np.array([[0.0, 0.0], [0.0, 8.0]])
    out = mean_shape_in_original(shape, (64, 48), scale, offset)
    assert out.shape == (2, 2, 2)
    assert out[0].tolist() == [[64.0, 48.0], [32.0, 96.0]]
    assert out[1].tolist() == [[128.0, 64.0], [64.0, 160.0]]
