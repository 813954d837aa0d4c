"""Layer kinds: the registry and the built-in kinds (importing this package registers them)."""

from __future__ import annotations

from cnnkit.layers import basic, blocks, mobile  # noqa: F401  (registers the built-in kinds)
from cnnkit.layers.registry import get_builder, kind_infos, kinds, register, unregister

__all__ = ["get_builder", "kind_infos", "kinds", "register", "unregister"]
