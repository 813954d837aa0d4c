"""Load torchvision ResNet weights (``.pth`` or ``.safetensors``) into a preset-built ``SpecNet``.

torchvision names map onto the preset's layers in order: ``conv1`` -> the first ``conv``,
``bn1`` -> the first ``bn``, ``layer<s>.<b>.*`` -> the b-th residual block of stage s (a stage
starts at the first block and at every block with a stride above 1), ``fc.*`` -> the 'gap'
head's ``head_net.fc`` when the shapes agree, else skipped and reported.
Files are read with ``torch.load(..., weights_only=True)``: nothing is unpickled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from cnnkit.errors import CheckpointError
from cnnkit.model.net import SpecNet
from cnnkit.spec.validate import to_hw


@dataclass(frozen=True)
class PretrainedReport:
    """What ``load_pretrained`` did: keys loaded (model names), skipped, missing and unexpected."""

    loaded: tuple[str, ...]
    skipped: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.pth``/``.pt`` (weights only) or ``.safetensors`` file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data: object = load_file(str(path))
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, unsafe (pickled code) or unknown format
        raise CheckpointError(f"{path}: cannot read weights ({type(exc).__name__}: {exc}).") from exc
    if isinstance(data, Mapping) and "state_dict" in data and isinstance(data["state_dict"], Mapping):
        data = data["state_dict"]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: expected a state dict (name -> tensor).")
    return {str(k).removeprefix("module."): v for k, v in data.items()}


def torchvision_names(model: SpecNet) -> dict[str, str]:
    """torchvision prefix -> model prefix, e.g. ``'layer2.0'`` -> ``'layers.8'``, ``'fc'`` -> ``'head_net.fc'``."""
    names: dict[str, str] = {}
    stage, block = 0, 0
    for i, kind in enumerate(model.layer_kinds):
        if kind == "conv" and "conv1" not in names:
            names["conv1"] = f"layers.{i}"
        elif kind == "bn" and "bn1" not in names:
            names["bn1"] = f"layers.{i}"
        elif kind in ("res_131", "res_33"):
            params = model.spec[i][1] if len(model.spec[i]) > 1 else {}
            stride = to_hw(params.get("stride", params.get("strides", 1)))[0]
            if stage == 0 or stride > 1:
                stage, block = stage + 1, 0
            names[f"layer{stage}.{block}"] = f"layers.{i}"
            block += 1
    if model.head == "gap":
        names["fc"] = "head_net.fc"
    return names


def _map_key(key: str, names: Mapping[str, str]) -> str | None:
    prefix, _, rest = key.partition(".")
    if prefix.startswith("layer"):
        block, _, rest = rest.partition(".")
        prefix = f"{prefix}.{block}"
    return f"{names[prefix]}.{rest}" if prefix in names and rest else None


def load_pretrained(model: SpecNet, path: str | Path, *, strict: bool = True) -> PretrainedReport:
    """Copy torchvision ResNet weights into ``model`` (built from a ``resnet*`` preset or alike).

    Args:
        model: the target; its backbone tensors are overwritten in place.
        path: ``.pth``/``.pt`` state dict (read with ``weights_only=True``) or ``.safetensors``.
        strict: raise unless every backbone tensor is loaded and every file tensor is used
            (``fc`` may always be skipped when the head differs).

    Raises:
        CheckpointError: unreadable file; or, when strict, listing missing and unexpected keys.
    """
    source = read_state_dict(path)
    names = torchvision_names(model)
    target = model.state_dict()
    updates: dict[str, torch.Tensor] = {}
    skipped, unexpected = [], []
    for key, value in source.items():
        mapped = _map_key(key, names)
        if mapped in target and target[mapped].shape == value.shape:
            updates[mapped] = value
        elif key.startswith("fc."):
            skipped.append(key)  # a head of another size: the caller trains a new one
        else:
            shape = (
                f" (shape {tuple(value.shape)} vs {tuple(target[mapped].shape)})" if mapped in target else ""
            )
            unexpected.append(f"{key}{shape}")
    missing = [k for k in target if k not in updates and not k.startswith("head_net.")]
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{path}: weights do not fit the model ({len(missing)} missing, {len(unexpected)} unexpected). "
            f"Missing: {missing[:10]}{' ...' if len(missing) > 10 else ''}; "
            f"unexpected: {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}. "
            "Use the matching preset (e.g. resnet50 weights with build_model('resnet50', ...)) or strict=False."
        )
    with torch.no_grad():
        for key, value in updates.items():
            target[key].copy_(value)
    return PretrainedReport(tuple(updates), tuple(skipped), tuple(missing), tuple(unexpected))
