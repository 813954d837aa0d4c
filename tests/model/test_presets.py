"""Tests for cnnkit.model.presets: reference parameter counts (on the meta device) and the stages."""

from __future__ import annotations

import pytest
import torch

from cnnkit.model.builder import build_model
from cnnkit.model.presets import REFERENCE_PARAMS, is_preset, preset_resolution, preset_spec, presets


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
    assert presets()[:5] == ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
    assert presets()[5:] == ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
    assert is_preset("resnet101") and is_preset("efficientnet_lite1") and not is_preset("resnet100")
    assert not is_preset(None)
    assert preset_spec("resnet18")[0][1]["bias"] is False
    assert [preset_resolution(f"efficientnet_lite{n}") for n in range(3)] == [224, 240, 260]
