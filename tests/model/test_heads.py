"""Tests for cnnkit.model.heads: soft-argmax convention, tap selection, the heatmap head."""

from __future__ import annotations

import warnings

import pytest
import torch

from cnnkit.errors import SpecError
from cnnkit.model.builder import build_model
from cnnkit.model.heads import HeatmapHead, parse_head, select_taps, soft_argmax


@pytest.mark.parametrize(("i", "j"), [(0, 0), (2, 5), (3, 7)])
def test_soft_argmax_peak_gives_cell_centre(i: int, j: int) -> None:
    maps = torch.full((1, 2, 4, 8), -1e4)
    maps[0, 0, i, j] = 1e4
    maps[0, 1] = 0.0  # flat map -> image centre
    out = soft_argmax(maps)
    assert out.shape == (1, 4)  # [x0, x1, y0, y1]
    assert out[0].tolist() == pytest.approx([(j + 0.5) / 8, 0.5, (i + 0.5) / 4, 0.5])


def test_select_taps_stops_at_the_finest_stride_option() -> None:
    model = build_model("resnet18", size=(224, 224), outputs=4, head="heatmap")
    assert model.taps == (5, 7, 9, 11)  # default stride 4: stages 1-4 at 56, 28, 14 and 7 pixels
    assert [model.layer_shapes[t][1] for t in model.taps] == [56, 28, 14, 7]
    coarser = build_model("resnet18", size=(224, 224), outputs=4, head={"type": "heatmap", "stride": 8})
    assert coarser.taps == (7, 9, 11)


def test_select_taps_finest_available_when_no_stride_4() -> None:
    shapes = [(8, 32, 32), (8, 32, 32), (16, 16, 16)]
    assert select_taps(shapes, (32, 32)) == [1, 2]


def test_heatmap_head_needs_spatial_last_layer() -> None:
    with pytest.raises(SpecError, match="head 'heatmap' needs a spatial last layer; layer 1"):
        build_model([["conv"], ["global_avg_pool"]], size=(8, 8), outputs=4, head="heatmap")


PYRAMID = [
    ["conv", {"layer_depth": 8, "strides": 2}],
    ["relu"],
    ["res_33", {"depths": 16, "stride": 2}],
    ["res_33", {"depths": 16, "stride": 2}],
    ["res_33", {"depths": 32, "stride": 2}],
]


def test_heatmap_model_outputs_normalised_coordinates_and_traces() -> None:
    model = build_model(PYRAMID, size=(64, 48), outputs=22, head={"type": "heatmap", "width": 16, "stride": 8}).eval()
    assert isinstance(model.head_net, HeatmapHead) and model.head_net.to_maps.out_channels == 11
    assert model.taps == (3, 4)  # strides 8, 16; stops at the default finest stride, 8
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 22) and float(out.min()) > 0.0 and float(out.max()) < 1.0
    assert out.mean().item() == pytest.approx(0.5, abs=0.05)  # near-zero map logits at start
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, x)
    assert torch.allclose(traced(x), out, atol=1e-6)


def test_heatmap_learns_a_point() -> None:
    torch.manual_seed(0)
    model = build_model([["conv", {"layer_depth": 4, "strides": 2}], ["relu"]], size=(16, 16), outputs=2,
                        head={"type": "heatmap", "width": 8})  # fmt: skip
    x = torch.zeros(4, 3, 16, 16)
    x[:, :, 2:4, 10:12] = 1.0  # bright square; its centre is (11/16, 3/16)
    target = torch.tensor([[0.6875, 0.1875]]).expand(4, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(40):
        opt.zero_grad()
        loss = ((model(x) - target) ** 2).mean()
        loss.backward()
        opt.step()
    assert loss.item() < 1e-3


def test_parse_head_forms() -> None:
    assert parse_head(None, "flatten", 3) == ("flatten", {})
    assert parse_head("heatmap", "gap", 4) == ("heatmap", {"width": 128, "stride": 4})
    assert parse_head({"type": "heatmap", "width": 16}, "gap", 4) == ("heatmap", {"width": 16, "stride": 4})
