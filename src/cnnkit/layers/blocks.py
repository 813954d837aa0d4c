"""Residual blocks (He et al. 2015): ``res_131`` bottleneck and ``res_33`` basic block.

Both add a real residual sum before the last ReLU: the identity, or a projection
(1x1 conv with the block's stride + BN) whenever the channel count or the stride changes.
The stride sits on the 3x3 conv (torchvision "ResNet v1.5"). The 3x3 convs use symmetric
padding 1, which gives the same sizes as TF 'SAME' (``ceil(n / s)``) and the layout of
torchvision's ResNet; state-dict keys match it too (``conv1``, ``bn1``, ..., ``downsample.0``).
BatchNorm layers in blocks use PyTorch's defaults (momentum 0.1, i.e. TF decay 0.9).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnnkit.layers.registry import register
from cnnkit.spec.validate import Option, Shape, check_hw, check_int_list, to_hw


def _stride_of(stride: Any) -> int:
    sh, sw = to_hw(stride)
    if sh != sw:
        raise ValueError(f"option 'stride' expected the same stride on both axes. Received: {stride!r}.")
    return sh


def _out_hw(in_shape: Shape, s: int) -> tuple[int, int]:
    return -(-in_shape[1] // s), -(-in_shape[2] // s)


def _projection(cin: int, cout: int, s: int) -> nn.Sequential | None:
    if cin == cout and s == 1:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, s, bias=False), nn.BatchNorm2d(cout))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1, each followed by BN; ReLU between; sum; ReLU.

    Shapes:
        ``[B, C_in, H, W] -> [B, depths[2], ceil(H / s), ceil(W / s)]``.
    """

    def __init__(self, cin: int, depths: tuple[int, int, int], stride: int) -> None:
        super().__init__()
        d1, d2, d3 = depths
        self.conv1, self.bn1 = nn.Conv2d(cin, d1, 1, bias=False), nn.BatchNorm2d(d1)
        self.conv2, self.bn2 = nn.Conv2d(d1, d2, 3, stride, padding=1, bias=False), nn.BatchNorm2d(d2)
        self.conv3, self.bn3 = nn.Conv2d(d2, d3, 1, bias=False), nn.BatchNorm2d(d3)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _projection(cin, d3, stride)

    def zero_init_last_bn(self) -> None:
        """Zero the last BN's gamma so the block starts as its shortcut (Goyal et al. 2017)."""
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class BasicBlock(nn.Module):
    """3x3 (stride) -> 3x3, each followed by BN; ReLU between; sum; ReLU.

    Shapes:
        ``[B, C_in, H, W] -> [B, depths[1], ceil(H / s), ceil(W / s)]``.
    """

    def __init__(self, cin: int, depths: tuple[int, int], stride: int) -> None:
        super().__init__()
        d1, d2 = depths
        self.conv1, self.bn1 = nn.Conv2d(cin, d1, 3, stride, padding=1, bias=False), nn.BatchNorm2d(d1)
        self.conv2, self.bn2 = nn.Conv2d(d1, d2, 3, padding=1, bias=False), nn.BatchNorm2d(d2)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _projection(cin, d2, stride)

    def zero_init_last_bn(self) -> None:
        """Zero the last BN's gamma so the block starts as its shortcut."""
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


_STRIDE = Option(1, check_hw, ("strides",), "int, or TF [1, s, s, 1]; on the 3x3 conv")


def res_131_shape(in_shape: Shape, *, depths: Any, stride: Any) -> Shape:
    return (depths[2], *_out_hw(in_shape, _stride_of(stride)))


def _pair(depths: Any) -> tuple[int, int]:
    return (depths, depths) if isinstance(depths, int) else (depths[0], depths[1])


def res_33_shape(in_shape: Shape, *, depths: Any, stride: Any) -> Shape:
    return (_pair(depths)[1], *_out_hw(in_shape, _stride_of(stride)))


@register(
    "res_131",
    options={
        "depths": Option([4, 4, 8], check_int_list(3), (), "channels of the 1x1, 3x3 and last 1x1 convs"),
        "stride": _STRIDE,
    },
    shape=res_131_shape,
)
def res_131(in_shape: Shape, *, depths: Any, stride: Any) -> tuple[nn.Module, Shape]:
    """Bottleneck residual block."""
    block = Bottleneck(in_shape[0], (depths[0], depths[1], depths[2]), _stride_of(stride))
    return block, res_131_shape(in_shape, depths=depths, stride=stride)


@register(
    "res_33",
    options={
        "depths": Option([8, 8], check_int_list(2), (), "channels of the two 3x3 convs, or one int"),
        "stride": _STRIDE,
    },
    shape=res_33_shape,
)
def res_33(in_shape: Shape, *, depths: Any, stride: Any) -> tuple[nn.Module, Shape]:
    """Basic residual block."""
    block = BasicBlock(in_shape[0], _pair(depths), _stride_of(stride))
    return block, res_33_shape(in_shape, depths=depths, stride=stride)
