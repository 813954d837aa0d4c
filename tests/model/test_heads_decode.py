"""Heatmap decoders on synthetic maps with known sub-cell peaks: the error of each, in cells."""

from __future__ import annotations

import math

import pytest
import torch

from cnnkit.errors import ConfigError
from cnnkit.model.heads import DECODERS, dark_decode, decode_maps, local_soft_argmax, soft_argmax

H, W = 30, 40  # the stride-4 map of a 160x120 input


def blob(cx: float, cy: float, sigma: float, weight: float = 1.0) -> torch.Tensor:
    """A Gaussian of ``sigma`` cells centred at (cx, cy) (cell units, corner origin), ``[H, W]`` float64."""
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64),
                            indexing="ij")
    return weight * torch.exp(-((xs + 0.5 - cx) ** 2 + (ys + 0.5 - cy) ** 2) / (2 * sigma**2))


def error_cells(decoder, prob: torch.Tensor, cx: float, cy: float) -> float:
    """Distance in cells between the decoded point of logits ``log(prob)`` and (cx, cy)."""
    out = decoder(prob.clamp_min(1e-12).log().float()[None, None])[0]
    return math.hypot(float(out[0]) * W - cx, float(out[1]) * H - cy)


@pytest.mark.parametrize(("cx", "cy", "sigma"), [(20.3, 14.7, 1.0), (20.3, 14.7, 2.0), (7.85, 21.1, 1.5)])
def test_one_interior_gaussian_every_decoder_is_sub_cell(cx: float, cy: float, sigma: float) -> None:
    prob = blob(cx, cy, sigma)
    assert error_cells(soft_argmax, prob, cx, cy) < 1e-3  # the mean of a whole Gaussian: exact
    assert error_cells(dark_decode, prob, cx, cy) < 1e-3  # its log is a quadratic: exact
    assert error_cells(lambda m: dark_decode(m, sigma=0.0), prob, cx, cy) < 1e-3
    # the window cuts the tails unevenly: exact only for narrow blobs
    assert error_cells(local_soft_argmax, prob, cx, cy) < (0.01 if sigma <= 1.0 else 0.1)


def test_bimodal_map_soft_argmax_averages_the_modes_local_and_dark_follow_the_stronger() -> None:
    prob = blob(12.4, 8.6, 1.5, 0.6) + blob(25.4, 20.6, 1.5, 0.4)  # modes 17.7 cells apart
    assert error_cells(soft_argmax, prob, 12.4, 8.6) > 6.0  # pulled 40 % of the way to the weaker mode
    assert error_cells(local_soft_argmax, prob, 12.4, 8.6) < 0.05
    assert error_cells(dark_decode, prob, 12.4, 8.6) < 0.01


def test_flat_background_pulls_soft_argmax_to_the_centre_not_the_peak_decoders() -> None:
    prob = blob(10.4, 8.6, 1.0) + 0.01  # 1 % of the peak everywhere: 1200 cells outweigh the blob
    assert error_cells(soft_argmax, prob, 10.4, 8.6) > 5.0
    assert error_cells(local_soft_argmax, prob, 10.4, 8.6) < 0.05
    assert error_cells(dark_decode, prob, 10.4, 8.6) < 0.01


@pytest.mark.parametrize(("cx", "cy"), [(0.3, 10.2), (1.2, 10.2), (39.6, 29.8)])
def test_peak_at_the_border(cx: float, cy: float) -> None:
    """Cut by the edge, the softmax mass is pushed inwards; the Taylor step is not (its stencil moves in)."""
    prob = blob(cx, cy, 1.5 if cx < 39 else 1.0)
    assert error_cells(soft_argmax, prob, cx, cy) > 0.5
    assert error_cells(lambda m: dark_decode(m, sigma=0.0), prob, cx, cy) < 1e-3
    assert error_cells(dark_decode, prob, cx, cy) < 0.6  # the smoothing itself is cut by the edge


def test_decoders_work_per_map_on_a_batch() -> None:
    centres = [(5.3, 4.2), (30.7, 22.9), (19.5, 0.6)]
    maps = torch.stack([blob(x, y, 1.0).clamp_min(1e-12).log().float() for x, y in centres]).view(1, 3, H, W)
    for name, decoder in DECODERS.items():
        out = decoder(torch.cat([maps, maps.flip(1)]))  # [2, 6]: the second image has the maps reversed
        assert out.shape == (2, 6), name
        assert torch.allclose(out[0, :3], out[1, :3].flip(0)) and torch.allclose(out[0, 3:], out[1, 3:].flip(0))
        xy = torch.stack([out[0, :3] * W, out[0, 3:] * H], dim=-1)
        err = (xy - torch.tensor(centres)).norm(dim=-1)
        assert err[:2].max() < 0.01, name
        assert err[2] < {"soft-argmax": 0.6, "local": 0.6, "dark": 0.5}[name], name  # (19.5, 0.6) is at the edge


def test_dark_keeps_the_cell_centre_on_a_flat_map() -> None:
    out = dark_decode(torch.zeros(1, 1, 6, 8))
    assert out[0].tolist() == pytest.approx([0.5 / 8, 0.5 / 6])  # first cell: no maximum to step to


def test_decode_maps_by_name_and_unknown_names() -> None:
    maps = blob(10.4, 8.6, 1.0).log().float()[None, None]
    assert torch.equal(decode_maps(maps, "dark"), dark_decode(maps))
    assert torch.equal(decode_maps(maps), soft_argmax(maps))
    with pytest.raises(ConfigError, match="unknown decoder 'drak'. Did you mean 'dark'"):
        decode_maps(maps, "drak")
