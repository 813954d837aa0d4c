"""Tests for cnnkit.layers.registry: user kinds, duplicates, every kind builds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnkit.errors import SpecError
from cnnkit.layers.registry import get_builder, kind_infos, kinds, register, unregister
from cnnkit.model.builder import build_model

BUILTIN = {
    "conv", "bn", "relu", "max_pool", "avg_pool", "global_avg_pool", "flatten", "drop_out", "fc", "res_131", "res_33",
    "depthwise_conv", "relu6", "mbconv",
}  # fmt: skip


@pytest.fixture
def scale_kind() -> Iterator[str]:
    @register("test_scale")
    def test_scale(
        in_shape: tuple[int, int, int], *, factor: float = 2.0
    ) -> tuple[nn.Module, tuple[int, int, int]]:
        class Scale(nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return x * factor

        return Scale(), in_shape

    yield "test_scale"
    unregister("test_scale")


def test_builtin_kinds_are_registered() -> None:
    assert BUILTIN <= set(kinds())


def test_every_registered_kind_builds() -> None:
    x = torch.randn(2, 4, 9, 8)
    for kind in kinds():
        params = {"prop": 0.5} if kind == "drop_out" else {}
        module, shape = get_builder(kind)((4, 9, 8), **params)
        assert isinstance(module, nn.Module), kind
        assert tuple(module.eval()(x).shape[1:]) == shape, kind


def test_duplicate_kind_raises(scale_kind: str) -> None:
    with pytest.raises(SpecError, match="'test_scale' is registered twice"):
        register(scale_kind)(lambda in_shape: (nn.Identity(), in_shape))
    with pytest.raises(SpecError, match="registered twice"):
        register("conv")(lambda in_shape: (nn.Identity(), in_shape))


def test_user_kind_options_come_from_signature(scale_kind: str) -> None:
    assert {n: o.default for n, o in kind_infos()[scale_kind].options.items()} == {"factor": 2.0}
    assert kind_infos()[scale_kind].shape is None
    with pytest.raises(
        SpecError, match=r"layer 1 \(test_scale\): option 'factor' expected a number\. Received: 'x'"
    ):
        build_model([["relu"], [scale_kind, {"factor": "x"}]], size=(4, 4), outputs=2)
    with pytest.raises(SpecError, match="unknown option 'factr'. Did you mean 'factor'"):
        build_model([[scale_kind, {"factr": 3.0}]], size=(4, 4), outputs=2)


def test_user_kind_from_a_yaml_file(scale_kind: str, tmp_path: Path) -> None:
    path = tmp_path / "net.yaml"
    path.write_text(
        "- [conv, {filter_size: 3, layer_depth: 2}]\n- [test_scale, {factor: 0.0}]\n", encoding="utf-8"
    )
    model = build_model(path, size=(6, 5), outputs=3)
    assert model.layer_kinds == ("conv", "test_scale")
    out = model(torch.randn(2, 3, 5, 6))
    # factor 0 zeroes the features, so the output is the head's bias alone.
    assert torch.allclose(out, model.head_net.fc.bias.expand(2, 3))


def test_unknown_kind_lookup_suggests() -> None:
    with pytest.raises(SpecError, match="unknown layer type 'res131'. Did you mean 'res_131'"):
        get_builder("res131")
    with pytest.raises(SpecError, match="not registered"):
        unregister("never_registered")


def test_user_builder_failure_names_the_layer() -> None:
    @register("test_broken")
    def test_broken(in_shape: tuple[int, int, int]) -> tuple[nn.Module, tuple[int, int, int]]:
        return nn.Identity(), (in_shape[0], 0, in_shape[2])

    try:
        with pytest.raises(
            SpecError, match=r"layer 1 \(test_broken\): output size \(C, H, W\) = \(3, 0, 4\)"
        ):
            build_model([["relu"], ["test_broken"]], size=(4, 4), outputs=2)
    finally:
        unregister("test_broken")


def test_a_declared_option_keeps_its_default_in_one_place() -> None:
    from cnnkit.spec.validate import Option

    with pytest.raises(SpecError, match=r"defaults of \['factor'\] are given in both"):
        register("twice", options={"factor": Option(2.0)})(lambda in_shape, *, factor=2.0: (nn.Identity(), in_shape))
    assert "twice" not in kinds()
