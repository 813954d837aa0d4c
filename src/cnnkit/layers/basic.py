"""Built-in plain layer kinds with the seed's names, options and defaults.

Kinds: ``conv``, ``depthwise_conv``, ``bn``, ``relu``, ``relu6``, ``max_pool``, ``avg_pool``,
``global_avg_pool``, ``flatten``, ``drop_out``, ``fc``. Tensors stay 4-D ``[B, C, H, W]`` all the way: ``flatten`` and ``fc``
produce ``[B, N, 1, 1]`` so that any kind may follow any other and shapes stay ``(C, H, W)``.

Convention (TF padding, exactly as TensorFlow computes it):
    'SAME':  out = ceil(n / s); total pad = max((out - 1) * s + k - n, 0), the extra odd pixel
             at the bottom/right. 'VALID': out = ceil((n - k + 1) / s), no padding.
    int p:   PyTorch-style symmetric padding, out = floor((n + 2p - k) / s) + 1.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.layers.registry import register
from cnnkit.spec.validate import (
    REQUIRED,
    Option,
    Shape,
    check_bool,
    check_decay,
    check_hw,
    check_keep_prob,
    check_padding,
    check_positive_float,
    check_positive_int,
    to_hw,
)

Pads = tuple[int, int, int, int]  # (left, right, top, bottom), the order F.pad takes


def pad_1d(n: int, k: int, s: int, padding: str | int) -> tuple[int, int, int]:
    """(pad_before, pad_after, out) along one axis of size ``n``, kernel ``k``, stride ``s``.

    Example:
        >>> pad_1d(5, 3, 2, 'SAME'), pad_1d(6, 3, 2, 'SAME'), pad_1d(7, 3, 2, 'VALID'), pad_1d(6, 3, 2, 1)
        ((1, 1, 3), (0, 1, 3), (0, 0, 3), (1, 1, 3))
    """
    if isinstance(padding, int):
        return padding, padding, (n + 2 * padding - k) // s + 1
    if padding.upper() == "VALID":
        return 0, 0, -(-(n - k + 1) // s)
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2, out


def pads_2d(
    hw: tuple[int, int], k: tuple[int, int], s: tuple[int, int], padding: str | int
) -> tuple[Pads, tuple[int, int]]:
    """F.pad-ordered pads and the output (H, W) for a 2-D window op."""
    top, bottom, h = pad_1d(hw[0], k[0], s[0], padding)
    left, right, w = pad_1d(hw[1], k[1], s[1], padding)
    return (left, right, top, bottom), (h, w)


class Conv2dTF(nn.Conv2d):
    """``nn.Conv2d`` that also does TF 'SAME' padding (asymmetric when the pad is odd).

    State-dict keys are those of ``nn.Conv2d`` (``weight``, ``bias``). ``groups=cin`` makes it
    depthwise (one filter set per input channel).
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        k: tuple[int, int],
        s: tuple[int, int],
        pads: Pads,
        bias: bool,
        groups: int = 1,
    ) -> None:
        symmetric = pads[0] == pads[1] and pads[2] == pads[3]
        padding = (pads[2], pads[0]) if symmetric else 0
        super().__init__(cin, cout, k, s, padding=padding, bias=bias, groups=groups)
        self.extra_pad: Pads | None = None if symmetric else pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.extra_pad is not None:
            x = F.pad(x, self.extra_pad)
        return super().forward(x)


class Pool2dTF(nn.Module):
    """Max or average pooling with TF/explicit padding; padding never enters a max or a mean."""

    def __init__(self, mode: str, k: tuple[int, int], s: tuple[int, int], pads: Pads) -> None:
        super().__init__()
        self.mode, self.kernel, self.stride, self.pads = mode, k, s, pads
        self.symmetric = pads[0] == pads[1] and pads[2] == pads[3]

    def extra_repr(self) -> str:
        return f"{self.mode}, kernel={self.kernel}, stride={self.stride}, pads(l,r,t,b)={self.pads}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s, p = self.kernel, self.stride, self.pads
        if self.mode == "max":
            if self.symmetric:
                return F.max_pool2d(x, k, s, padding=(p[2], p[0]))
            return F.max_pool2d(F.pad(x, p, value=float("-inf")), k, s)
        if self.symmetric:
            return F.avg_pool2d(x, k, s, padding=(p[2], p[0]), count_include_pad=False)
        # Asymmetric 'SAME': divide window sums by the count of real pixels, as TF does.
        ones = torch.ones_like(x[:1, :1])
        return F.avg_pool2d(F.pad(x, p), k, s) / F.avg_pool2d(F.pad(ones, p), k, s)


class Flatten4d(nn.Module):
    """``[B, C, H, W] -> [B, C*H*W, 1, 1]`` (stays 4-D so every kind can follow)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :, None, None]


class GlobalAvgPool(nn.Module):
    """``[B, C, H, W] -> [B, C, 1, 1]``, the mean over H and W."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


class Dense(nn.Linear):
    """Fully connected on the flattened input; ``[B, C, H, W] -> [B, n, 1, 1]``. Keys as nn.Linear."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.flatten(1))[:, :, None, None]


# ---------------------------------------------------------------- shape functions (pure)


def _window_shape(in_shape: Shape, k: Any, s: Any, padding: str | int, out_c: int | None = None) -> Shape:
    kh, kw = to_hw(k)
    if isinstance(padding, int) and out_c is None and 2 * padding > min(kh, kw):
        raise ValueError(
            f"option 'padding' expected at most half the kernel ({min(kh, kw) // 2}). Received: {padding}."
        )
    _, (h, w) = pads_2d(in_shape[1:], (kh, kw), to_hw(s), padding)
    return (in_shape[0] if out_c is None else out_c, h, w)


def conv_shape(
    in_shape: Shape, *, filter_size: Any, layer_depth: int, strides: Any, padding: Any, bias: bool
) -> Shape:
    return _window_shape(in_shape, filter_size, strides, padding, out_c=layer_depth)


def depthwise_conv_shape(
    in_shape: Shape, *, filter_size: Any, multiplier: int, strides: Any, padding: Any, bias: bool
) -> Shape:
    return _window_shape(in_shape, filter_size, strides, padding, out_c=in_shape[0] * multiplier)


def pool_shape(in_shape: Shape, *, kernel: Any, strides: Any, padding: Any) -> Shape:
    return _window_shape(in_shape, kernel, strides, padding)


def same_shape(in_shape: Shape, **_: Any) -> Shape:
    return in_shape


# ---------------------------------------------------------------- builders

_STRIDES = Option([1, 1, 1, 1], check_hw, ("stride",), "TF [1, s, s, 1], [sh, sw] or an int")
_PADDING = Option("SAME", check_padding, (), "'SAME', 'VALID' or an int (symmetric, PyTorch-style)")
_CONV_OPTIONS = {
    "filter_size": Option(3, check_hw, ("kernel", "kernel_size"), "kernel size: int or [kh, kw]"),
    "layer_depth": Option(8, check_positive_int, ("filters", "out_channels", "out"), "output channels"),
    "strides": _STRIDES,
    "padding": _PADDING,
    "bias": Option(True, check_bool, (), "add a bias (the seed's default); presets use false before BN"),
}


@register("conv", options=_CONV_OPTIONS, shape=conv_shape)
def conv(
    in_shape: Shape,
    *,
    filter_size: Any,
    layer_depth: int,
    strides: Any,
    padding: Any,
    bias: bool,
) -> tuple[nn.Module, Shape]:
    """2-D convolution to ``layer_depth`` channels."""
    k, s = to_hw(filter_size), to_hw(strides)
    pads, (h, w) = pads_2d(in_shape[1:], k, s, padding)
    return Conv2dTF(in_shape[0], layer_depth, k, s, pads, bias), (layer_depth, h, w)


@register(
    "depthwise_conv",
    options={
        "filter_size": _CONV_OPTIONS["filter_size"],
        "multiplier": Option(
            1,
            check_positive_int,
            ("depth_multiplier", "channel_multiplier"),
            "output channels per input channel",
        ),
        "strides": _STRIDES,
        "padding": _PADDING,
        "bias": _CONV_OPTIONS["bias"],
    },
    shape=depthwise_conv_shape,
)
def depthwise_conv(
    in_shape: Shape,
    *,
    filter_size: Any,
    multiplier: int,
    strides: Any,
    padding: Any,
    bias: bool,
) -> tuple[nn.Module, Shape]:
    """Depthwise 2-D convolution (TF ``depthwise_conv2d``): each channel filtered on its own."""
    k, s = to_hw(filter_size), to_hw(strides)
    pads, (h, w) = pads_2d(in_shape[1:], k, s, padding)
    cout = in_shape[0] * multiplier
    return Conv2dTF(in_shape[0], cout, k, s, pads, bias, groups=in_shape[0]), (cout, h, w)


@register(
    "bn",
    options={
        "decay": Option(0.5, check_decay, (), "moving-average decay (TF); momentum = 1 - decay"),
        "eps": Option(1e-5, check_positive_float, ("epsilon",), "added to the variance"),
    },
    shape=same_shape,
)
def bn(in_shape: Shape, *, decay: float, eps: float) -> tuple[nn.Module, Shape]:
    """Batch normalisation over channels."""
    # TF's decay weighs the OLD moving average; PyTorch's momentum weighs the NEW batch statistic.
    return nn.BatchNorm2d(in_shape[0], eps=eps, momentum=1.0 - decay), in_shape


@register("relu", options={}, shape=same_shape)
def relu(in_shape: Shape) -> tuple[nn.Module, Shape]:
    """ReLU."""
    return nn.ReLU(inplace=True), in_shape


@register("relu6", options={}, shape=same_shape)
def relu6(in_shape: Shape) -> tuple[nn.Module, Shape]:
    """ReLU clipped at 6 (MobileNet, EfficientNet-Lite)."""
    return nn.ReLU6(inplace=True), in_shape


def _pool(mode: str, in_shape: Shape, kernel: Any, strides: Any, padding: Any) -> tuple[nn.Module, Shape]:
    k, s = to_hw(kernel), to_hw(strides)
    pads, (h, w) = pads_2d(in_shape[1:], k, s, padding)
    return Pool2dTF(mode, k, s, pads), (in_shape[0], h, w)


_POOL_OPTIONS = {
    "kernel": Option(
        [1, 2, 2, 1], check_hw, ("kernel_size", "ksize", "pool_size"), "TF [1, k, k, 1], [kh, kw] or an int"
    ),
    "strides": _STRIDES,
    "padding": _PADDING,
}


@register("max_pool", options=_POOL_OPTIONS, shape=pool_shape)
def max_pool(
    in_shape: Shape, *, kernel: Any, strides: Any, padding: Any
) -> tuple[nn.Module, Shape]:
    """Max pooling (default: 2x2 window, stride 1, 'SAME', as the seed)."""
    return _pool("max", in_shape, kernel, strides, padding)


@register("avg_pool", options=_POOL_OPTIONS, shape=pool_shape)
def avg_pool(
    in_shape: Shape, *, kernel: Any, strides: Any, padding: Any
) -> tuple[nn.Module, Shape]:
    """Average pooling; padded pixels are excluded from each mean (TF 'SAME')."""
    return _pool("avg", in_shape, kernel, strides, padding)


@register("global_avg_pool", options={}, shape=lambda s: (s[0], 1, 1))
def global_avg_pool(in_shape: Shape) -> tuple[nn.Module, Shape]:
    """Mean over the spatial axes: ``(C, H, W) -> (C, 1, 1)``."""
    return GlobalAvgPool(), (in_shape[0], 1, 1)


@register("flatten", options={}, shape=lambda s: (s[0] * s[1] * s[2], 1, 1))
def flatten(in_shape: Shape) -> tuple[nn.Module, Shape]:
    """``(C, H, W) -> (C*H*W, 1, 1)``."""
    return Flatten4d(), (math.prod(in_shape), 1, 1)


@register(
    "drop_out",
    options={
        "prop": Option(REQUIRED, check_keep_prob, ("keep_prob",), "the KEEP probability, e.g. {'prop': 0.9}"),
    },
    shape=same_shape,
)
def drop_out(in_shape: Shape, *, prop: float) -> tuple[nn.Module, Shape]:
    """Dropout, active in training only."""
    return nn.Dropout(p=1.0 - prop), in_shape  # the seed's `prop` is the KEEP probability


@register(
    "fc",
    options={
        "n": Option(22, check_positive_int, ("units", "out_features", "out"), "output units"),
    },
    shape=lambda s, n: (n, 1, 1),
)
def fc(in_shape: Shape, *, n: int) -> tuple[nn.Module, Shape]:
    """Fully connected to ``n`` units, flattening a spatial input."""
    return Dense(math.prod(in_shape), n), (n, 1, 1)
