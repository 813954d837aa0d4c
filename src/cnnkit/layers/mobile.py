"""Inverted-residual block ``mbconv`` (MobileNetV2, Sandler et al. 2018; EfficientNet-Lite).

1x1 expand conv -> BN -> ReLU6 -> kxk depthwise conv (stride) -> BN -> ReLU6 -> 1x1 project
conv -> BN (no activation: a linear bottleneck), plus the input when the block keeps its shape
(stride 1, same channels). ``expand: 1`` drops the expand conv (EfficientNet's first block).
No squeeze-excite: EfficientNet-Lite removed it.

Convention: the depthwise conv pads as TensorFlow's 'SAME' by default (for stride 2 on an even
size the extra pixel goes at the bottom/right), which is how the published EfficientNet-Lite
weights were trained; an int gives PyTorch-style symmetric padding. BN layers default to the
EfficientNet values (eps 1e-3, TF decay 0.99, i.e. PyTorch momentum 0.01). State-dict keys
follow ``efficientnet_pytorch`` without its leading underscores: ``expand_conv``, ``bn0``,
``depthwise_conv``, ``bn1``, ``project_conv``, ``bn2``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnnkit.layers.basic import Conv2dTF, pads_2d
from cnnkit.layers.registry import register
from cnnkit.spec.validate import (
    Option,
    Shape,
    check_decay,
    check_hw,
    check_padding,
    check_positive_float,
    check_positive_int,
    to_hw,
)


class MBConv(nn.Module):
    """Inverted residual: expand, depthwise, project; identity shortcut when shapes match.

    Shapes:
        ``[B, C_in, H, W] -> [B, layer_depth, H', W']`` with ``H', W'`` as for a conv of the
        same kernel, stride and padding (``ceil(H / s)`` for 'SAME').
    """

    def __init__(
        self, cin: int, cout: int, expand: int, depthwise: Conv2dTF, skip: bool, eps: float, momentum: float
    ) -> None:
        super().__init__()
        inner = cin * expand
        self.expand_conv: nn.Conv2d | None = None
        self.bn0: nn.BatchNorm2d | None = None
        if expand != 1:
            self.expand_conv = nn.Conv2d(cin, inner, 1, bias=False)
            self.bn0 = nn.BatchNorm2d(inner, eps=eps, momentum=momentum)
        self.depthwise_conv = depthwise
        self.bn1 = nn.BatchNorm2d(inner, eps=eps, momentum=momentum)
        self.project_conv = nn.Conv2d(inner, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=eps, momentum=momentum)
        self.act = nn.ReLU6(inplace=True)
        self.skip = skip

    def zero_init_last_bn(self) -> None:
        """Zero the project BN's gamma so a block with a shortcut starts as the identity."""
        if self.skip:
            nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.expand_conv is not None and self.bn0 is not None:
            out = self.act(self.bn0(self.expand_conv(out)))
        out = self.act(self.bn1(self.depthwise_conv(out)))
        out = self.bn2(self.project_conv(out))
        return out + x if self.skip else out

    def extra_repr(self) -> str:
        return f"skip={self.skip}"


def mbconv_shape(
    in_shape: Shape,
    *,
    filter_size: Any,
    layer_depth: int,
    expand: int,
    strides: Any,
    padding: Any,
    eps: float,
    decay: float,
) -> Shape:
    _, (h, w) = pads_2d(in_shape[1:], to_hw(filter_size), to_hw(strides), padding)
    return (layer_depth, h, w)


@register(
    "mbconv",
    options={
        "filter_size": Option(3, check_hw, ("kernel", "kernel_size"), "depthwise kernel: int or [kh, kw]"),
        "layer_depth": Option(16, check_positive_int, ("filters", "out_channels", "out"), "output channels"),
        "expand": Option(
            6, check_positive_int, ("expand_ratio",), "inner channels = input channels x expand"
        ),
        "strides": Option(
            [1, 1, 1, 1], check_hw, ("stride",), "on the depthwise conv; TF [1, s, s, 1] or an int"
        ),
        "padding": Option("SAME", check_padding, (), "of the depthwise conv: 'SAME' (TF), 'VALID' or an int"),
        "eps": Option(1e-3, check_positive_float, ("epsilon",), "BN epsilon (EfficientNet: 1e-3)"),
        "decay": Option(0.99, check_decay, (), "BN moving-average decay (TF); momentum = 1 - decay"),
    },
    shape=mbconv_shape,
)
def mbconv(
    in_shape: Shape,
    *,
    filter_size: Any,
    layer_depth: int,
    expand: int,
    strides: Any,
    padding: Any,
    eps: float,
    decay: float,
) -> tuple[nn.Module, Shape]:
    """Inverted-residual block (no squeeze-excite), ReLU6 activations."""
    k, s = to_hw(filter_size), to_hw(strides)
    inner = in_shape[0] * expand
    pads, (h, w) = pads_2d(in_shape[1:], k, s, padding)
    depthwise = Conv2dTF(inner, inner, k, s, pads, bias=False, groups=inner)
    out_shape = (layer_depth, h, w)
    skip = out_shape == in_shape
    # TF's decay weighs the OLD moving average; PyTorch's momentum weighs the NEW batch statistic.
    block = MBConv(in_shape[0], layer_depth, expand, depthwise, skip, eps, 1.0 - decay)
    return block, out_shape
