"""Layer-list specs: parsing, loading (names, lists, YAML/JSON files) and validation. Torch-free."""

from __future__ import annotations

from cnnkit.spec.parse import (
    PRESET_NAMES,
    LayerSpec,
    dump_spec_yaml,
    load_spec,
    parse_spec,
    preset_name_of,
    preset_spec,
)
from cnnkit.spec.validate import REQUIRED, KindInfo, Option, validate_spec

__all__ = [
    "PRESET_NAMES",
    "REQUIRED",
    "KindInfo",
    "LayerSpec",
    "Option",
    "dump_spec_yaml",
    "load_spec",
    "parse_spec",
    "preset_name_of",
    "preset_spec",
    "validate_spec",
]
