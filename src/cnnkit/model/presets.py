"""ResNet presets as editable spec lists (``resnet18`` .. ``resnet152``).

The tables are plain data kept in ``cnnkit.spec.parse`` (so ``load_spec('resnet50')`` works
without torch); this module is the model-side entry point. With ``outputs=1000`` and the
'gap' head at 224x224 the presets have exactly torchvision's parameter counts.

Example:
    >>> preset_spec('resnet50')[0]
    ['conv', {'filter_size': 7, 'layer_depth': 64, 'strides': [1, 2, 2, 1], 'padding': 3, 'bias': False}]
"""

from __future__ import annotations

from cnnkit.spec.parse import PRESET_NAMES, preset_spec

# torchvision's ResNet parameter counts with a 1000-class fc (the parity target).
TORCHVISION_PARAMS: dict[str, int] = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}


def presets() -> tuple[str, ...]:
    """The preset names."""
    return PRESET_NAMES


def is_preset(name: object) -> bool:
    """Whether ``name`` is a preset name."""
    return isinstance(name, str) and name in PRESET_NAMES


__all__ = ["PRESET_NAMES", "TORCHVISION_PARAMS", "is_preset", "preset_spec", "presets"]
