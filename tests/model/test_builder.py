"""Tests for cnnkit.model.builder: the seed's lists, errors before building, init, config round trip."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnkit.errors import ConfigError, SpecError
from cnnkit.layers.registry import register, unregister
from cnnkit.model.builder import build_model
from cnnkit.spec.parse import dump_spec_yaml, preset_spec

SEED_SIMPLE = [
    ["conv", {"filter_size": 3, "layer_depth": 2}],
    ["bn"],
    ["relu"],
    ["max_pool", {"kernel": [1, 2, 2, 1], "strides": [1, 1, 1, 1], "padding": "SAME"}],
    ["drop_out", {"prop": 0.9}],
    ["res_131", {"depths": [4, 4, 8]}],
]


def seed_deep(blocks_in_stage4: int) -> list:
    """The seed document's "50 layer" (6) and "101 layer" (23) lists, as written."""
    model = [
        ["conv", {"filter_size": 7, "layer_depth": 64, "strides": [1, 2, 2, 1]}],
        ["bn"],
        ["relu"],
        ["max_pool", {"kernel": [1, 3, 3, 1], "strides": [1, 2, 2, 1], "padding": "SAME"}],
    ]
    for depths, count in (([64, 64, 256], 3), ([128, 128, 512], 4), ([256, 256, 1024], blocks_in_stage4)):
        model.extend([["res_131", {"depths": depths}] for _ in range(count)])
    model.extend([["res_131", {"depths": [512, 512, 2048]}] for _ in range(3)])
    return model


@pytest.mark.parametrize(
    ("spec", "n_layers"),
    [
        (SEED_SIMPLE, 6),
        pytest.param(seed_deep(6), 20, marks=pytest.mark.slow),
        pytest.param(seed_deep(23), 37, marks=pytest.mark.slow),
    ],
    ids=["simple", "50", "101"],
)
def test_seed_lists_build_and_run(spec: list, n_layers: int) -> None:
    model = build_model(spec, size=(64, 92), outputs=22)
    assert len(model.layers) == n_layers and model.head == "flatten"
    with torch.no_grad():  # forward cost only; gradients are tested elsewhere
        out = model(torch.randn(2, 3, 92, 64))
    assert out.shape == (2, 22) and torch.isfinite(out).all()
    # no spatial downsampling inside the seed's blocks: everything after the stem is 23x16
    assert model.layer_shapes[-1] == ((8, 92, 64) if n_layers == 6 else (2048, 23, 16))


def test_caller_spec_is_not_mutated() -> None:
    spec = [["conv", {"strides": [1, 2, 2, 1]}], ["drop_out", {"prop": 0.9}]]
    before = json.dumps(spec)
    model = build_model(spec, size=(8, 8), outputs=2)
    model.spec[0][1]["strides"][1] = 5
    assert json.dumps(spec) == before


def test_aliases_and_plain_ints() -> None:
    model = build_model(
        [["conv", {"kernel": 5, "filters": 4, "stride": 2}], ["fc", {"units": 3}]], size=(9, 7), outputs=2
    )
    conv = model.layers[0]
    assert conv.kernel_size == (5, 5) and conv.out_channels == 4 and conv.stride == (2, 2)
    assert model.layer_shapes == ((4, 4, 5), (3, 1, 1))


def test_errors_are_raised_before_any_module_is_built() -> None:
    built: list[int] = []

    @register("test_probe")
    def test_probe(in_shape: tuple[int, int, int]) -> tuple[nn.Module, tuple[int, int, int]]:
        built.append(1)
        return nn.Identity(), in_shape

    try:
        with pytest.raises(SpecError) as err:
            build_model(
                [["test_probe"], ["conv", {"layer_dept": 4}], ["max_pool", {"strides": 0}], ["drop_out"]],
                size=(8, 8),
                outputs=2,
            )
    finally:
        unregister("test_probe")
    assert built == []
    p = err.value.problems
    assert len(p) == 3
    assert "layer 1 (conv): unknown option 'layer_dept'. Did you mean 'layer_depth'?" in p[0]
    assert "layer 2 (max_pool): option 'strides' expected an integer >= 1" in p[1] and "Received: 0." in p[1]
    assert "layer 3 (drop_out): missing required option 'prop'" in p[2]


def test_spatial_size_shrinking_to_zero_is_a_spec_error() -> None:
    spec = [["conv", {"filter_size": 5, "padding": "VALID"}], ["max_pool", {"kernel": 3, "padding": "VALID"}]]
    with pytest.raises(SpecError, match=r"layer 1 \(max_pool\): output size \(C, H, W\) = \(8, 0, 0\)"):
        build_model(spec, size=(6, 6), outputs=2)


def test_pool_padding_larger_than_half_kernel_is_refused() -> None:
    with pytest.raises(
        SpecError, match=r"layer 0 \(max_pool\): option 'padding' expected at most half the kernel"
    ):
        build_model([["max_pool", {"kernel": 3, "padding": 2}]], size=(6, 6), outputs=2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": (0, 4), "outputs": 2}, r"size\[0\] \(width\) expected an integer >= 1"),
        ({"size": 4, "outputs": 2}, r"size expected \(width, height\)"),
        ({"size": (4, 4), "outputs": 0}, "outputs expected an integer >= 1"),
        ({"size": (4, 4), "outputs": 2, "channels": 1.5}, "channels expected"),
        ({"size": (4, 4), "outputs": 2, "head": "gapp"}, "unknown type 'gapp'. Did you mean 'gap'"),
        ({"size": (4, 4), "outputs": 3, "head": "heatmap"}, "outputs must be even"),
        ({"size": (4, 4), "outputs": 2, "head": {"type": "heatmap", "widht": 8}}, "Did you mean 'width'"),
    ],
)
def test_argument_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_model([["relu"]], **kwargs)


def test_default_heads(tmp_path: Path) -> None:
    assert build_model([["relu"]], size=(4, 4), outputs=2).head == "flatten"
    assert build_model("resnet18", size=(32, 32), outputs=2).head == "gap"
    saved = tmp_path / "r18.yaml"
    saved.write_text(dump_spec_yaml(preset_spec("resnet18")), encoding="utf-8")
    assert build_model(saved, size=(32, 32), outputs=2).head == "gap"  # a preset saved unchanged
    edited = preset_spec("resnet18")[:-1]
    assert build_model(edited, size=(32, 32), outputs=2).head == "flatten"


def test_kaiming_init_and_zero_init_residual() -> None:
    model = build_model("resnet18", size=(32, 32), outputs=2, zero_init_residual=True)
    w = model.layers[0].weight
    assert w.std().item() == pytest.approx(math.sqrt(2.0 / (64 * 7 * 7)), rel=0.1)  # fan_out
    blocks = model.layers[4:]
    assert all(int(torch.count_nonzero(b.bn2.weight)) == 0 for b in blocks)
    assert torch.equal(model.layers[1].weight.detach(), torch.ones(64))  # other BN gammas start at 1
    plain = build_model("resnet18", size=(32, 32), outputs=2)
    assert torch.equal(plain.layers[4].bn2.weight.detach(), torch.ones(64))


def test_config_rebuilds_identical_architecture(tmp_path: Path) -> None:
    for model in (
        build_model("resnet18", size=(40, 36), outputs=4),
        build_model(SEED_SIMPLE, size=(16, 12), channels=1, outputs=6, head={"type": "heatmap", "width": 16}),
    ):
        cfg = json.loads(json.dumps(model.config()))
        again = build_model(cfg.pop("spec"), **cfg)
        assert {k: v.shape for k, v in again.state_dict().items()} == {
            k: v.shape for k, v in model.state_dict().items()
        }
        assert (again.size, again.channels, again.outputs, again.head) == (
            model.size, model.channels, model.outputs, model.head,
        )  # fmt: skip


def test_traces_with_torchscript() -> None:
    model = build_model(SEED_SIMPLE + [["max_pool", {"strides": 2}]], size=(15, 11), outputs=4).eval()
    x = torch.randn(2, 3, 11, 15)
    traced = torch.jit.trace(model, x)
    assert torch.allclose(traced(x), model(x))
    assert torch.allclose(traced(x * 2), model(x * 2))
