"""The one table of layer kinds: ``@register(kind)`` adds a builder, ``kinds()`` lists them.

Every builder has the signature ``(in_shape: (C, H, W), **params) -> (nn.Module, out_shape)``.
Built-in kinds also declare their options (defaults, checks, aliases) and a pure shape
function so a spec is validated before any module is built. User kinds may omit both: the
options are then read from the builder's signature (a type check inferred from each
default), and shapes are checked after that layer is built.

Example:
    >>> import torch.nn as nn
    >>> @register("doc_identity")
    ... def doc_identity(in_shape, *, scale: float = 1.0):
    ...     return nn.Identity(), in_shape
    >>> "doc_identity" in kinds()
    True
    >>> unregister("doc_identity")
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from torch import nn

from cnnkit.errors import SpecError, did_you_mean
from cnnkit.spec.validate import REQUIRED, KindInfo, Option, Shape, check_from_default

Builder = Callable[..., tuple[nn.Module, Shape]]


@dataclass(frozen=True)
class LayerKind:
    """A registered kind: what validation needs (``info``) and the module builder."""

    info: KindInfo
    builder: Builder


# The registry is the only module-level table (STYLE.md, convention 1). It grows only
# through register(), which refuses duplicates, so a kind's meaning never changes.
_KINDS: dict[str, LayerKind] = {}


def _options_from_signature(fn: Builder) -> dict[str, Option]:
    opts: dict[str, Option] = {}
    params = list(inspect.signature(fn).parameters.values())[1:]  # skip in_shape
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = REQUIRED if p.default is p.empty else p.default
        check = None if default is REQUIRED else check_from_default(default)
        opts[p.name] = Option(default=default, check=check)
    return opts


def _defaults_live_in_options(kind: str, fn: Builder) -> None:
    """A kind that declares ``options`` keeps each default there only: validation fills every option
    before the builder is called, so a second default in the signature could only drift apart."""
    doubled = [p.name for p in list(inspect.signature(fn).parameters.values())[1:] if p.default is not p.empty]
    if doubled:
        raise SpecError(f"layer kind {kind!r}: defaults of {doubled} are given in both options= and the builder's "
                        f"signature; keep them in options= only.")


def _defaults_from_options(fn: Builder, options: Mapping[str, Option]) -> None:
    """The builder's keyword defaults, written from ``options``: one declaration serves validation,
    docs and direct calls (``conv(in_shape)`` in a notebook) alike."""
    fn.__kwdefaults__ = {name: opt.default for name, opt in options.items() if opt.default is not REQUIRED}


def register(
    kind: str,
    *,
    options: Mapping[str, Option] | None = None,
    shape: Callable[..., Shape] | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator adding a layer kind usable in spec lists and YAML/JSON files.

    Args:
        kind: the name used as the first element of a layer, e.g. ``'my_block'``.
        options: option name -> ``Option``; default: read from the builder's keyword parameters.
        shape: pure ``(in_shape, **params) -> out_shape``; lets validation follow shapes
            past this layer without building it.

    Raises:
        SpecError: when ``kind`` is already registered.
    """
    if not isinstance(kind, str) or not kind:
        raise SpecError(f"a layer kind must be a non-empty string. Received: {kind!r}.")

    def add(fn: Builder) -> Builder:
        if kind in _KINDS:
            raise SpecError(
                f"layer kind {kind!r} is registered twice ({fn.__module__}.{fn.__name__}); choose another name."
            )
        if options is not None:
            _defaults_live_in_options(kind, fn)
            _defaults_from_options(fn, options)
        opts = dict(options) if options is not None else _options_from_signature(fn)
        _KINDS[kind] = LayerKind(KindInfo(kind, MappingProxyType(opts), shape), fn)
        return fn

    return add


def unregister(kind: str) -> None:
    """Remove a kind (for tests and notebooks that re-run a cell defining a layer)."""
    if kind not in _KINDS:
        raise SpecError(f"layer kind {kind!r} is not registered.{did_you_mean(kind, _KINDS)}")
    del _KINDS[kind]


def kinds() -> tuple[str, ...]:
    """Names of every registered kind, sorted."""
    return tuple(sorted(_KINDS))


def kind_infos() -> Mapping[str, KindInfo]:
    """A read-only snapshot ``kind -> KindInfo`` to pass to ``cnnkit.spec.validate_spec``."""
    return MappingProxyType({k: v.info for k, v in _KINDS.items()})


def get_builder(kind: str) -> Builder:
    """The builder of ``kind``; SpecError with a suggestion when unknown."""
    if kind not in _KINDS:
        raise SpecError(
            f"unknown layer type {kind!r}.{did_you_mean(kind, _KINDS)} Known types: {', '.join(kinds())}."
        )
    return _KINDS[kind].builder
