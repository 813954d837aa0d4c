"""``build_model``: spec (preset name, list or YAML/JSON path) -> ``SpecNet``.

A fold over the validated layers that tracks ``(C, H, W)``; no branch on the layer kind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

import cnnkit.layers  # noqa: F401  (registers the built-in kinds)
from cnnkit.errors import ConfigError, SpecError
from cnnkit.layers.registry import get_builder, kind_infos
from cnnkit.model.defaults import default_head
from cnnkit.model.heads import HeatmapHead, make_head, parse_head
from cnnkit.model.net import Shape, SpecNet
from cnnkit.spec.parse import LayerSpec, load_spec, parse_spec
from cnnkit.spec.validate import validate_spec


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} expected an integer >= 1. Received: {value!r}.")
    return value


def _check_size(size: Any) -> tuple[int, int]:
    if not isinstance(size, Sequence) or isinstance(size, str) or len(size) != 2:
        raise ConfigError(f"size expected (width, height), e.g. (64, 92). Received: {size!r}.")
    return _positive_int("size[0] (width)", size[0]), _positive_int("size[1] (height)", size[1])


def _fold(specs: Sequence[LayerSpec], in_shape: Shape) -> tuple[list[nn.Module], list[Shape]]:
    """Build every layer in order; shapes come from each builder."""
    modules: list[nn.Module] = []
    shapes: list[Shape] = []
    shape = in_shape
    for spec in specs:
        try:
            module, out = get_builder(spec.kind)(shape, **spec.params)
        except SpecError:
            raise
        except (TypeError, ValueError) as exc:  # user builders: name the layer
            raise SpecError(
                f"layer {spec.index} ({spec.kind}): building from input {shape} failed: {exc}"
            ) from exc
        sizes = tuple(int(d) for d in out)
        if len(sizes) != 3 or min(sizes) < 1:
            raise SpecError(
                f"layer {spec.index} ({spec.kind}): output size (C, H, W) = {sizes} from input {shape}; "
                "expected three sizes >= 1. Use a larger input size or fewer strides."
            )
        shape = (sizes[0], sizes[1], sizes[2])
        modules.append(module)
        shapes.append(shape)
    return modules, shapes


def init_weights(net: nn.Module, zero_init_residual: bool = False) -> None:
    """Kaiming-normal (fan_out, ReLU) convs, BN to identity; optionally zero each block's last BN.

    A heatmap head's final 1x1 conv then gets near-zero weights (centre prediction at start).
    """
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in net.modules():
        if isinstance(m, HeatmapHead):
            m.reset_output()
        zero_last = getattr(m, "zero_init_last_bn", None)  # built-in blocks, and user blocks that opt in
        if zero_init_residual and callable(zero_last):
            zero_last()


def build_model(
    spec: str | Path | Sequence[Any],
    *,
    size: Sequence[int],
    channels: int = 3,
    outputs: int,
    head: str | Mapping[str, Any] | None = None,
    task: str | None = None,
    zero_init_residual: bool = False,
) -> SpecNet:
    """Build a model from a preset name, a raw layer list, or a YAML/JSON file.

    Args:
        spec: ``'resnet18'`` .. ``'resnet152'``, ``[['conv', {...}], ['bn'], ...]`` or a path.
        size: input ``(width, height)``.
        channels: input channels (3 for RGB, 1 for grey).
        outputs: head outputs (classes, or 2K for K landmarks laid out ``[x.., y..]``).
        head: 'flatten', 'gap', 'heatmap', or a dict such as ``{'type': 'heatmap', 'width': 64}``;
            None = ``model.defaults.default_head(spec, task)`` (one rule for names, lists and files).
        task: 'landmarks' or 'classes' when known; only the default head depends on it.
        zero_init_residual: zero the last BN gamma of every residual block.

    Shapes:
        input ``[B, channels, height, width]`` float -> output ``[B, outputs]``.

    Raises:
        SpecError: every problem of the spec, before any module is built.
        ConfigError: bad size, channels, outputs or head.
    """
    raw = load_spec(spec)
    width, height = _check_size(size)
    channels = _positive_int("channels", channels)
    outputs = _positive_int("outputs", outputs)
    head_kind, head_opts = parse_head(head, default_head(raw, task), outputs)
    in_shape = (channels, height, width)
    specs = validate_spec(parse_spec(raw), kind_infos(), in_shape)
    modules, shapes = _fold(specs, in_shape)
    head_net, taps = make_head(head_kind, head_opts, shapes, (height, width), outputs)
    net = SpecNet(
        modules,
        head_net,
        spec=raw,
        size=(width, height),
        channels=channels,
        outputs=outputs,
        head=head_kind,
        head_options={k: v for k, v in head_opts.items()},
        layer_kinds=[s.kind for s in specs],
        layer_shapes=shapes,
        taps=taps,
        zero_init_residual=bool(zero_init_residual),
    )
    init_weights(net, zero_init_residual)
    return net
