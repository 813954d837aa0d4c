"""Check a parsed spec against the known layer kinds, all problems at once, before any module exists.

This module is torch-free. The layer registry is passed in as a mapping ``kind -> KindInfo``
(see ``cnnkit.layers.registry.kind_infos``), so validation can run anywhere.

Convention:
    Shapes are ``(C, H, W)`` tuples of ints. TF-style ``[1, s, s, 1]`` strides and kernels are
    accepted as written, as plain ints, or as ``[h, w]`` pairs; ``to_hw`` turns any of them
    into ``(h, w)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from cnnkit.errors import SpecError, did_you_mean
from cnnkit.spec.parse import LayerSpec

Shape = tuple[int, int, int]
Check = Callable[[Any], "str | None"]  # returns what was expected when the value is bad, else None


class _Required:
    """Marker for an option without a default."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Option:
    """One option of a layer kind: default, value check, accepted aliases, one-line doc."""

    default: Any = REQUIRED
    check: Check | None = None
    aliases: tuple[str, ...] = ()
    doc: str = ""


@dataclass(frozen=True)
class KindInfo:
    """What validation knows about a layer kind.

    ``shape`` is a pure ``(in_shape, **params) -> out_shape`` function; when it is None
    (user kinds registered without one) shapes are not followed past that layer.
    """

    kind: str
    options: Mapping[str, Option] = field(default_factory=dict)
    shape: Callable[..., Shape] | None = None


# ---------------------------------------------------------------- value helpers (pure)


def to_hw(value: int | Sequence[int]) -> tuple[int, int]:
    """Turn an int, ``[h, w]`` or TF-style ``[1, h, w, 1]`` into ``(h, w)``.

    Example:
        >>> to_hw(2), to_hw([1, 3, 3, 1]), to_hw([2, 1])
        ((2, 2), (3, 3), (2, 1))
    """
    if isinstance(value, int):
        return value, value
    items = list(value)
    return (int(items[1]), int(items[2])) if len(items) == 4 else (int(items[0]), int(items[1]))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_positive_int(v: Any) -> str | None:
    """Expect an int >= 1."""
    return None if _is_int(v) and v >= 1 else "an integer >= 1"


def check_hw(v: Any) -> str | None:
    """Expect an int >= 1, ``[h, w]`` or ``[1, h, w, 1]`` (TF NHWC) with entries >= 1."""
    expected = "an integer >= 1, [h, w] or TF-style [1, h, w, 1]"
    if _is_int(v):
        return None if v >= 1 else expected
    if not isinstance(v, (list, tuple)) or len(v) not in (2, 4) or not all(_is_int(x) for x in v):
        return expected
    if len(v) == 4 and (v[0] != 1 or v[3] != 1):
        return expected + " (batch and channel entries must be 1)"
    return None if min(to_hw(v)) >= 1 else expected


def check_padding(v: Any) -> str | None:
    """Expect 'SAME', 'VALID' (any case) or an int >= 0 (explicit symmetric padding)."""
    if _is_int(v):
        return None if v >= 0 else "'SAME', 'VALID' or an integer >= 0"
    if isinstance(v, str) and v.upper() in ("SAME", "VALID"):
        return None
    return "'SAME', 'VALID' or an integer >= 0"


def check_bool(v: Any) -> str | None:
    """Expect true or false."""
    return None if isinstance(v, bool) else "true or false"


def check_keep_prob(v: Any) -> str | None:
    """Expect a keep probability in (0, 1]."""
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 < v <= 1.0
    return None if ok else "a keep probability in (0, 1]"


def check_decay(v: Any) -> str | None:
    """Expect a moving-average decay in [0, 1)."""
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v < 1.0
    return None if ok else "a number in [0, 1)"


def check_positive_float(v: Any) -> str | None:
    """Expect a number > 0."""
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
    return None if ok else "a number > 0"


def check_int_list(n: int) -> Check:
    """Expect a list of ``n`` ints >= 1 (``n == 2`` also accepts one int)."""

    def check(v: Any) -> str | None:
        expected = f"a list of {n} integers >= 1" + (" or one integer" if n == 2 else "")
        if n == 2 and _is_int(v):
            return None if v >= 1 else expected
        if isinstance(v, (list, tuple)) and len(v) == n and all(_is_int(x) and x >= 1 for x in v):
            return None
        return expected

    return check


def check_from_default(default: Any) -> Check | None:
    """Infer a type check for a user option from its default value (bool, int, float, str)."""
    for kind, name in ((bool, "true or false"), (int, "an integer"), (float, "a number"), (str, "a string")):
        if isinstance(default, kind):
            ok_types: tuple[type, ...] = (int, float) if kind is float else (kind,)
            return lambda v, t=ok_types, n=name, k=kind: (  # type: ignore[misc]
                None if isinstance(v, t) and (k is bool or not isinstance(v, bool)) else n
            )
    return None


# ---------------------------------------------------------------- validation


def _canonical_params(spec: LayerSpec, info: KindInfo) -> tuple[dict[str, Any], list[str]]:
    """Map aliases to option names, fill defaults, check values. Returns (params, problems)."""
    where = f"layer {spec.index} ({spec.kind})"
    alias_of = {a: name for name, opt in info.options.items() for a in opt.aliases}
    allowed = list(info.options) + list(alias_of)
    params: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in spec.params.items():
        name = alias_of.get(key, key)
        if name not in info.options:
            listed = ", ".join(info.options) or "none"
            problems.append(
                f"{where}: unknown option {key!r}.{did_you_mean(key, allowed)} Allowed options: {listed}."
            )
        elif name in params:
            problems.append(f"{where}: option {name!r} given twice (as {key!r} and an alias); keep one.")
        else:
            params[name] = value
    for name, opt in info.options.items():
        if name not in params:
            if opt.default is REQUIRED:
                problems.append(
                    f"{where}: missing required option {name!r}" + (f" ({opt.doc})." if opt.doc else ".")
                )
                continue
            params[name] = opt.default
        elif opt.check is not None and (expected := opt.check(params[name])) is not None:
            problems.append(f"{where}: option {name!r} expected {expected}. Received: {params[name]!r}.")
    return params, problems


def _next_shape(spec: LayerSpec, info: KindInfo, shape: Shape, params: dict[str, Any]) -> Shape | None:
    """Apply the kind's pure shape function; None when it has none."""
    if info.shape is None:
        return None
    return tuple(int(d) for d in info.shape(shape, **params))  # type: ignore[return-value]


def _shape_problem(
    spec: LayerSpec, info: KindInfo, shape: Shape, params: dict[str, Any]
) -> tuple[Shape | None, str | None]:
    """Next shape, or a problem: a shape function raising ValueError, or a size shrinking to zero."""
    try:
        new = _next_shape(spec, info, shape, params)
    except ValueError as exc:  # cross-option problems found by the kind's shape function
        return None, f"layer {spec.index} ({spec.kind}): {exc}"
    if new is not None and min(new) < 1:
        return None, (
            f"layer {spec.index} ({spec.kind}): output size (C, H, W) = {new} from input {shape}; "
            "a dimension shrinks to zero. Use a larger input size, 'SAME' padding or fewer strides."
        )
    return new, None


def validate_spec(
    specs: Sequence[LayerSpec], kinds: Mapping[str, KindInfo], in_shape: Shape
) -> tuple[LayerSpec, ...]:
    """Check every layer and follow shapes; return specs with canonical option names and defaults.

    Args:
        specs: parsed layers (``parse_spec``).
        kinds: the registry's view, ``kind -> KindInfo``.
        in_shape: ``(C, H, W)`` of the input image.

    Raises:
        SpecError: listing every problem (unknown kind/option, wrong value, missing option,
            spatial size shrinking to zero), each naming the layer index and type.
    """
    if not specs:
        raise SpecError(
            "the spec is empty: expected at least one layer such as ['conv', {'layer_depth': 8}]."
        )
    problems: list[str] = []
    out: list[LayerSpec] = []
    shape: Shape | None = in_shape
    for spec in specs:
        info = kinds.get(spec.kind)
        if info is None:
            problems.append(
                f"layer {spec.index}: unknown layer type {spec.kind!r}.{did_you_mean(spec.kind, kinds)} "
                f"Known types: {', '.join(sorted(kinds))}."
            )
            shape = None
            continue
        params, bad = _canonical_params(spec, info)
        problems += bad
        out.append(replace(spec, params=MappingProxyType(params)))
        if bad or shape is None:
            shape = None
            continue
        shape, problem = _shape_problem(spec, info, shape, params)
        problems += [problem] if problem else []
    if problems:
        raise SpecError(problems)
    return tuple(out)
