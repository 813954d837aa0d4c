"""Tests for cnnkit.model.presets: torchvision parameter parity and the paper's stages."""

from __future__ import annotations

import pytest

from cnnkit.model.builder import build_model
from cnnkit.model.presets import TORCHVISION_PARAMS, is_preset, preset_spec, presets


@pytest.mark.parametrize("name", list(TORCHVISION_PARAMS))
def test_parameter_counts_equal_torchvision(name: str) -> None:
    model = build_model(name, size=(224, 224), outputs=1000)
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_PARAMS[name]


def test_resnet50_exact_count_literal() -> None:
    model = build_model("resnet50", size=(224, 224), outputs=1000, head="gap")
    assert sum(p.numel() for p in model.parameters()) == 25_557_032


def test_stage_shapes_at_224() -> None:
    model = build_model("resnet50", size=(224, 224), outputs=1000)
    shapes = model.layer_shapes
    assert shapes[0] == (64, 112, 112) and shapes[3] == (64, 56, 56)
    ends = [shapes[i] for i in (6, 10, 16, 19)]
    assert ends == [(256, 56, 56), (512, 28, 28), (1024, 14, 14), (2048, 7, 7)]


def test_preset_helpers() -> None:
    assert presets() == ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
    assert is_preset("resnet101") and not is_preset("resnet100") and not is_preset(None)
    assert preset_spec("resnet18")[0][1]["bias"] is False
