"""Tests for cnnkit.layers.mobile: the inverted-residual block's layout, shortcut, padding and options."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.errors import SpecError
from cnnkit.layers.mobile import MBConv, mbconv
from cnnkit.model.builder import build_model


def test_keys_and_shapes_follow_efficientnet() -> None:
    block, shape = mbconv((16, 8, 10), filter_size=5, layer_depth=24, expand=6, strides=2)
    assert isinstance(block, MBConv) and shape == (24, 4, 5) and not block.skip
    shapes = {k: tuple(v.shape) for k, v in block.state_dict().items() if k.endswith("weight")}
    assert shapes == {
        "expand_conv.weight": (96, 16, 1, 1),
        "bn0.weight": (96,),
        "depthwise_conv.weight": (96, 1, 5, 5),
        "bn1.weight": (96,),
        "project_conv.weight": (24, 96, 1, 1),
        "bn2.weight": (24,),
    }
    assert block.bn1.eps == 1e-3 and block.bn1.momentum == pytest.approx(0.01)  # TF decay 0.99


def test_expand_one_has_no_expand_conv() -> None:
    block, shape = mbconv((32, 6, 6), layer_depth=16, expand=1)
    assert block.expand_conv is None and block.bn0 is None and shape == (16, 6, 6)
    assert not any(k.startswith(("expand_conv", "bn0")) for k in block.state_dict())


@pytest.mark.parametrize(("hw", "pads"), [((8, 10), (1, 2, 1, 2)), ((7, 9), (2, 2, 2, 2))])
def test_strided_depthwise_pads_as_tf_same(hw: tuple[int, int], pads: tuple[int, ...]) -> None:
    # k=5, s=2: 'SAME' pads 3 in total on an even size (1 before, 2 after), 4 on an odd one.
    block, shape = mbconv((4, *hw), filter_size=5, layer_depth=4, strides=[1, 2, 2, 1])
    assert shape == (4, -(-hw[0] // 2), -(-hw[1] // 2))
    dw = block.depthwise_conv
    assert (dw.extra_pad or (dw.padding[1], dw.padding[1], dw.padding[0], dw.padding[0])) == pads
    assert tuple(block.eval()(torch.randn(1, 4, *hw)).shape[1:]) == shape


def test_symmetric_padding_when_an_int() -> None:
    block, shape = mbconv((4, 8, 8), filter_size=3, layer_depth=4, strides=2, padding=1)
    assert block.depthwise_conv.extra_pad is None and block.depthwise_conv.padding == (1, 1) and shape == (4, 4, 4)


def test_identity_shortcut_only_when_shape_kept() -> None:
    block, _ = mbconv((8, 5, 5), layer_depth=8)
    assert block.skip
    block.zero_init_last_bn()  # the branch now outputs zeros (in eval), so the block is the identity
    x = torch.randn(2, 8, 5, 5)
    assert torch.equal(block.eval()(x), x)
    for shape_changing in ({"layer_depth": 12}, {"strides": 2}):
        other, _ = mbconv((8, 5, 5), **shape_changing)  # type: ignore[arg-type]
        other.zero_init_last_bn()
        assert not other.skip and other.bn2.weight.abs().sum() > 0  # nothing to zero: no shortcut


def test_forward_equals_the_written_out_block() -> None:
    block, _ = mbconv((3, 6, 6), filter_size=3, layer_depth=3, expand=2)
    block.eval()
    x = torch.randn(2, 3, 6, 6)

    def bn(m: nn.BatchNorm2d, t: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2), m.weight.uniform_(0.5, 2)
        h = F.relu6(bn(block.bn0, F.conv2d(x, block.expand_conv.weight)))
        h = F.relu6(bn(block.bn1, F.conv2d(h, block.depthwise_conv.weight, padding=1, groups=6)))
        expected = bn(block.bn2, F.conv2d(h, block.project_conv.weight)) + x
        assert torch.allclose(block(x), expected, atol=1e-6)


def test_options_are_checked_with_suggestions() -> None:
    with pytest.raises(SpecError) as err:
        build_model(
            [["mbconv", {"expand": 0, "layer_dept": 8}], ["mbconv", {"kernel": 3, "filter_size": 5}]],
            size=(8, 8),
            outputs=2,
        )
    text = str(err.value)
    assert "layer 0 (mbconv): unknown option 'layer_dept'. Did you mean 'layer_depth'?" in text
    assert "layer 0 (mbconv): option 'expand' expected an integer >= 1. Received: 0." in text
    assert "layer 1 (mbconv): option 'filter_size' given twice" in text


def test_summary_rows_name_the_block() -> None:
    from cnnkit.model.summary import summary

    table = summary([["conv", {"layer_depth": 8}], ["mbconv", {"layer_depth": 8}]], size=(8, 8), outputs=2)
    row = table.rows[1]
    # expand 8 -> 48 (384 weights + 96 BN), 3x3 depthwise (432 + 96), project 48 -> 8 (384 + 16)
    assert (row.kind, row.shape, row.params) == ("mbconv", (8, 8, 8), 384 + 96 + 432 + 96 + 384 + 16)
    assert row.macs == 64 * (384 + 432 + 384)
