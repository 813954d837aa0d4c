"""Tests for cnnkit.layers.blocks: the residual sum, projections, strides, keys."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnkit.layers.blocks import BasicBlock, Bottleneck, res_33, res_131


def _zero_convs(block: nn.Module) -> None:
    with torch.no_grad():
        for name, m in block.named_modules():
            if isinstance(m, nn.Conv2d) and not name.startswith("downsample"):
                m.weight.zero_()


@pytest.mark.parametrize(("build", "depths"), [(res_131, [4, 4, 6]), (res_33, [6, 6])])
def test_residual_sum_is_really_there(build: object, depths: list[int]) -> None:
    block, shape = build((6, 5, 7), depths=depths)  # type: ignore[operator]
    assert block.downsample is None and shape == (6, 5, 7)
    _zero_convs(block)
    x = torch.randn(2, 6, 5, 7)
    assert torch.allclose(block.eval()(x), torch.relu(x))


@pytest.mark.parametrize("build", [res_131, res_33])
def test_zero_init_last_bn_gives_relu_of_input(build: object) -> None:
    block, _ = build((8, 4, 4), depths=[2, 2, 8] if build is res_131 else 8)  # type: ignore[operator]
    block.zero_init_last_bn()
    x = torch.randn(3, 8, 4, 4)
    assert torch.allclose(block.eval()(x), torch.relu(x))


def test_projection_when_channels_change() -> None:
    block, shape = res_131((4, 6, 6), depths=[4, 4, 8])
    assert shape == (8, 6, 6)
    proj = block.downsample
    assert isinstance(proj[0], nn.Conv2d) and proj[0].kernel_size == (1, 1) and proj[0].stride == (1, 1)
    assert isinstance(proj[1], nn.BatchNorm2d)
    _zero_convs(block)
    x = torch.randn(1, 4, 6, 6)
    assert torch.allclose(block.eval()(x), torch.relu(proj.eval()(x)))  # shortcut path only


@pytest.mark.parametrize("stride", [2, [1, 2, 2, 1]])
def test_stride_on_the_3x3_and_on_the_projection(stride: object) -> None:
    block, shape = res_131((8, 9, 10), depths=[4, 4, 8], stride=stride)
    assert shape == (8, 5, 5)
    assert block.conv2.stride == (2, 2) and block.conv1.stride == (1, 1)
    assert block.downsample[0].stride == (2, 2)
    assert tuple(block(torch.randn(2, 8, 9, 10)).shape) == (2, 8, 5, 5)
    basic, bshape = res_33((8, 9, 10), depths=[16, 16], stride=stride)
    assert bshape == (16, 5, 5) and tuple(basic(torch.randn(2, 8, 9, 10)).shape) == (2, 16, 5, 5)


def test_keys_follow_torchvision() -> None:
    keys = set(Bottleneck(64, (64, 64, 256), 1).state_dict())
    for k in ("conv1.weight", "bn1.weight", "conv2.weight", "bn3.running_var", "downsample.0.weight"):
        assert k in keys
    assert "downsample.1.bias" in BasicBlock(64, (128, 128), 2).state_dict()


def test_unequal_strides_are_refused() -> None:
    with pytest.raises(ValueError, match="same stride on both axes"):
        res_33((4, 8, 8), depths=4, stride=[1, 2, 1, 1])
