"""Tests for cnnkit.layers.basic: shapes, TF padding arithmetic and values, seed semantics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.errors import SpecError
from cnnkit.layers.basic import (
    Conv2dTF,
    Pool2dTF,
    avg_pool,
    bn,
    conv,
    depthwise_conv,
    drop_out,
    fc,
    max_pool,
    pad_1d,
    relu6,
)
from cnnkit.layers.registry import get_builder, kind_infos
from cnnkit.model.builder import build_model


@pytest.mark.parametrize(
    ("n", "k", "s", "padding", "expected"),
    [
        (6, 3, 2, "SAME", (0, 1, 3)),  # even: the odd pad goes bottom/right
        (5, 3, 2, "SAME", (1, 1, 3)),
        (7, 1, 2, "SAME", (0, 0, 4)),
        (224, 7, 2, "SAME", (2, 3, 112)),
        (6, 3, 2, "VALID", (0, 0, 2)),
        (7, 3, 2, "VALID", (0, 0, 3)),
        (6, 3, 2, 1, (1, 1, 3)),
    ],
)
def test_pad_1d(n: int, k: int, s: int, padding: str | int, expected: tuple[int, int, int]) -> None:
    assert pad_1d(n, k, s, padding) == expected


def _row(values: list[float]) -> torch.Tensor:
    return torch.tensor(values).reshape(1, 1, 1, -1)


@pytest.mark.parametrize(("n", "expected"), [(6, [3.0, 9.0, 9.0]), (5, [1.0, 6.0, 7.0])])
def test_conv_same_stride2_matches_tensorflow(n: int, expected: list[float]) -> None:
    # 1x3 kernel of ones over 0..n-1, stride 2: TF pads (0, 1) for n=6 and (1, 1) for n=5.
    module, shape = conv((1, 1, n), filter_size=[1, 3], layer_depth=1, strides=[1, 1, 2, 1], bias=False)
    assert shape == (1, 1, 3)
    with torch.no_grad():
        module.weight.fill_(1.0)
    out = module(_row([float(i) for i in range(n)]))
    assert out.flatten().tolist() == expected


@pytest.mark.parametrize("hw", [(9, 7), (10, 8), (1, 1), (13, 2)])
def test_stride2_same_shape_is_ceil(hw: tuple[int, int]) -> None:
    x = torch.randn(2, 3, *hw)
    for build in (conv, max_pool, avg_pool):
        kw = {"layer_depth": 5} if build is conv else {"kernel": [1, 3, 3, 1]}
        module, shape = build((3, *hw), strides=[1, 2, 2, 1], **kw)
        assert shape[1:] == (-(-hw[0] // 2), -(-hw[1] // 2))
        assert tuple(module(x).shape[1:]) == shape


def test_valid_padding_shape() -> None:
    module, shape = conv((3, 9, 8), filter_size=3, layer_depth=4, strides=2, padding="VALID")
    assert shape == (4, 4, 3)
    assert tuple(module(torch.randn(1, 3, 9, 8)).shape) == (1, 4, 4, 3)


def test_max_pool_ignores_padding() -> None:
    module, _ = max_pool((1, 1, 6), kernel=[1, 1, 3, 1], strides=[1, 1, 2, 1])
    out = module(_row([-6.0, -5.0, -4.0, -3.0, -2.0, -1.0]))
    assert out.flatten().tolist() == [-4.0, -2.0, -1.0]  # never the pad's value


def test_avg_pool_excludes_padding_like_tf() -> None:
    module, _ = avg_pool((1, 1, 6), kernel=[1, 1, 3, 1], strides=[1, 1, 2, 1])
    out = module(_row([0.0, 1.0, 2.0, 3.0, 4.0, 5.0]))
    assert out.flatten().tolist() == pytest.approx([1.0, 3.0, 4.5])
    sym, _ = avg_pool((1, 1, 5), kernel=[1, 1, 3, 1], strides=[1, 1, 2, 1])
    assert sym(_row([0.0, 1.0, 2.0, 3.0, 4.0])).flatten().tolist() == pytest.approx([0.5, 2.0, 3.5])


def test_seed_max_pool_default_keeps_size() -> None:
    module, shape = max_pool((2, 92, 64))
    assert shape == (2, 92, 64)
    assert isinstance(module, Pool2dTF) and module.kernel == (2, 2) and module.stride == (1, 1)


def test_conv_defaults_are_the_seeds() -> None:
    module, shape = conv((3, 10, 10))
    assert isinstance(module, Conv2dTF)
    assert shape == (8, 10, 10) and module.kernel_size == (3, 3) and module.bias is not None


def test_conv_explicit_symmetric_padding() -> None:
    module, shape = conv((3, 224, 224), filter_size=7, layer_depth=64, strides=2, padding=3, bias=False)
    assert shape == (64, 112, 112) and module.padding == (3, 3) and module.extra_pad is None
    assert module.bias is None


def test_bn_decay_is_one_minus_momentum() -> None:
    module, shape = bn((6, 4, 4))
    assert isinstance(module, nn.BatchNorm2d) and module.momentum == pytest.approx(0.5)
    assert bn((6, 4, 4), decay=0.9)[0].momentum == pytest.approx(0.1)
    assert shape == (6, 4, 4)


def test_drop_out_prop_is_keep_probability() -> None:
    module, _ = drop_out((3, 4, 4), prop=0.9)
    assert isinstance(module, nn.Dropout) and module.p == pytest.approx(0.1)
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(module.eval()(x), x)


def test_fc_flattens_and_stays_4d() -> None:
    module, shape = fc((3, 4, 5), n=7)
    x = torch.randn(2, 3, 4, 5)
    out = module(x)
    assert shape == (7, 1, 1) and tuple(out.shape) == (2, 7, 1, 1)
    assert torch.allclose(out.flatten(1), F.linear(x.flatten(1), module.weight, module.bias))


def test_every_builtin_shape_function_matches_its_module() -> None:
    infos = kind_infos()
    x = torch.randn(2, 4, 11, 10)
    for kind, info in infos.items():
        if info.shape is None:
            continue
        params = {n: (0.5 if n == "prop" else o.default) for n, o in info.options.items()}
        module, shape = get_builder(kind)((4, 11, 10), **params)
        assert info.shape((4, 11, 10), **params) == shape, kind
        assert tuple(module.eval()(x).shape[1:]) == shape, kind


@pytest.mark.parametrize(("n", "expected"), [(6, [3.0, 9.0, 9.0]), (5, [1.0, 6.0, 7.0])])
def test_depthwise_conv_same_stride2_matches_tensorflow(n: int, expected: list[float]) -> None:
    module, shape = depthwise_conv((2, 1, n), filter_size=[1, 3], strides=[1, 1, 2, 1], bias=False)
    assert shape == (2, 1, 3) and module.groups == 2
    with torch.no_grad():
        module.weight.fill_(1.0)
        module.weight[1].fill_(-2.0)  # channel 1 has its own filter: never mixed with channel 0
    out = module(torch.cat([_row([float(i) for i in range(n)])] * 2, dim=1))
    assert out[0, 0].flatten().tolist() == expected
    assert out[0, 1].flatten().tolist() == [-2.0 * v for v in expected]


def test_depthwise_conv_multiplier_and_aliases() -> None:
    model = build_model(
        [["depthwise_conv", {"kernel": 3, "depth_multiplier": 2, "stride": 2, "bias": False}]],
        size=(9, 7),
        channels=3,
        outputs=2,
    )
    assert model.layer_shapes == ((6, 4, 5),)
    assert tuple(model.layers[0].weight.shape) == (6, 1, 3, 3) and model.layers[0].bias is None
    with pytest.raises(SpecError, match=r"layer 0 \(depthwise_conv\): unknown option 'layer_depth'"):
        build_model([["depthwise_conv", {"layer_depth": 4}]], size=(8, 8), outputs=2)


def test_relu6_clips_both_ends() -> None:
    module, shape = relu6((1, 1, 4))
    out = module(torch.tensor([-1.0, 0.5, 6.0, 9.0]).reshape(1, 1, 1, 4))
    assert shape == (1, 1, 4) and out.flatten().tolist() == [0.0, 0.5, 6.0, 6.0]
