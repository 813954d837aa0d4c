"""Tests for cnnkit.model.presets: reference parameter counts (on the meta device) and the stages."""

from __future__ import annotations

import pytest
import torch

from cnnkit.model.builder import build_model
from cnnkit.model.presets import PRESET_NAMES, REFERENCE_PARAMS, preset_resolution, preset_spec


def _params(name: str, size: int = 224, head: str | None = None) -> int:
    with torch.device("meta"):  # counting only: no memory, no initialisation cost
        model = build_model(name, size=(size, size), outputs=1000, head=head)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list(REFERENCE_PARAMS))
def test_parameter_counts_equal_the_reference(name: str) -> None:
    assert _params(name, preset_resolution(name)) == REFERENCE_PARAMS[name]


def test_literal_counts() -> None:
    assert _params("resnet50", head="gap") == 25_557_032  # torchvision
    assert _params("efficientnet_lite0", head="gap") == 4_652_008  # the pip package's 296 tensors


def test_stage_shapes_at_224() -> None:
    with torch.device("meta"):
        model = build_model("resnet50", size=(224, 224), outputs=1000)
    shapes = model.layer_shapes
    assert shapes[0] == (64, 112, 112) and shapes[3] == (64, 56, 56)
    ends = [shapes[i] for i in (6, 10, 16, 19)]
    assert ends == [(256, 56, 56), (512, 28, 28), (1024, 14, 14), (2048, 7, 7)]


def test_lite0_stage_shapes_at_224() -> None:
    with torch.device("meta"):
        model = build_model("efficientnet_lite0", size=(224, 224), outputs=1000)
    shapes = model.layer_shapes
    assert shapes[0] == (32, 112, 112) and shapes[3] == (16, 112, 112)
    # last block of each stage (EfficientNet-B0, Tan & Le 2019, Table 1), then the 1280 head conv
    ends = [shapes[i] for i in (5, 7, 10, 13, 17, 18, 21)]
    assert ends == [(24, 56, 56), (40, 28, 28), (80, 14, 14), (112, 14, 14), (192, 7, 7), (320, 7, 7), (1280, 7, 7)]


def test_lite_odd_sizes_round_up_as_tf_same() -> None:
    with torch.device("meta"):
        model = build_model("efficientnet_lite0", size=(161, 121), outputs=2)
    assert model.layer_shapes[-1] == (1280, 4, 6)  # ceil(121 / 32), ceil(161 / 32)


def test_preset_helpers() -> None:
    assert PRESET_NAMES[:5] == ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
    assert PRESET_NAMES[5:] == ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
    assert preset_spec("resnet18")[0][1]["bias"] is False
    assert [preset_resolution(f"efficientnet_lite{n}") for n in range(3)] == [224, 240, 260]


def test_lite_heatmap_head_merges_stages_to_stride_4() -> None:
    model = build_model("efficientnet_lite0", size=(160, 120), outputs=2 * 5, head="heatmap").eval()
    taps = [model.layer_shapes[i] for i in model.taps]
    # the last block of the stride-4, 8 and 16 stages and the 1280-channel head conv (as ResNet's stages 1-4)
    assert taps == [(24, 30, 40), (40, 15, 20), (112, 8, 10), (1280, 4, 5)]
    assert model.taps == (5, 7, 13, 21) and model.layer_kinds[5] == "mbconv"
    with torch.no_grad():
        out = model(torch.randn(2, 3, 120, 160))
    assert out.shape == (2, 10) and bool(((out > 0) & (out < 1)).all())
    with torch.device("meta"):
        coarse = build_model("efficientnet_lite0", size=(160, 120), outputs=10, head={"type": "heatmap", "stride": 8})
    assert [coarse.layer_shapes[i][0] for i in coarse.taps] == [40, 112, 1280]


@pytest.mark.parametrize(("head", "params"), [("gap", 1280 * 10 + 10), ("flatten", 1280 * 4 * 5 * 10 + 10)])
def test_lite_direct_heads(head: str, params: int) -> None:
    with torch.device("meta"):
        model = build_model("efficientnet_lite0", size=(160, 120), outputs=10, head=head)
        out = model(torch.empty(1, 3, 120, 160))
    assert model.head == head and sum(p.numel() for p in model.head_parameters()) == params
    assert out.shape == (1, 10)
