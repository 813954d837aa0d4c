"""Self-describing model files and training state for exact resume.

Model file (``save_model`` / ``load_model``): a safetensors file. The weights are its
tensors; its metadata holds ONE key, ``'cnnkit'``, a JSON string with ``format_version``,
``model`` (``model.config()``: spec, size, channels, outputs, head; enough to rebuild the
network with ``cnnkit.model.builder.build_model``) and whatever the caller adds (task,
landmarks, classes, normalisation, size, channels, flip_pairs, ...). Nothing is ever
unpickled: safetensors holds raw tensors and JSON only.

Training state for resume: ``cnnkit.io.state`` (``save_state`` / ``load_state``, re-exported here).

Every write is atomic (``cnnkit.atomic``): a crash leaves the previous file intact.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch
from torch import nn

from cnnkit.atomic import atomic_path
from cnnkit.errors import CheckpointError
from cnnkit.io.meta import FORMAT_VERSION as FORMAT_VERSION
from cnnkit.io.meta import CheckpointMeta
from cnnkit.io.model_checks import check_memory, check_names
from cnnkit.io.state import Staging, to_cpu
from cnnkit.io.state import capture_rng as capture_rng
from cnnkit.io.state import load_state as load_state
from cnnkit.io.state import restore_rng as restore_rng
from cnnkit.io.state import save_state as save_state
from cnnkit.io.state import snapshot_state as snapshot_state
from cnnkit.io.state import write_state as write_state

META_KEY = "cnnkit"
PathLike = str | os.PathLike[str]
Builder = Callable[[dict[str, Any]], nn.Module]


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _model_config(model: nn.Module) -> dict[str, Any]:
    config = getattr(model, "config", None)
    if not callable(config):
        raise CheckpointError(
            f"save_model: {type(model).__name__} has no config() method, so the file could not rebuild it. "
            "Build the model with cnnkit.build_model (or give it a config() returning build_model's arguments)."
        )
    return dict(config())


@dataclass(frozen=True)
class ModelSnapshot:
    """A model's weights copied to CPU memory plus its metadata text: what ``save_model`` writes."""

    tensors: dict[str, torch.Tensor]
    metadata: str


def snapshot_model(model: nn.Module, meta: Mapping[str, Any], tensors: dict[str, torch.Tensor] | None = None,
                   staging: Staging | None = None) -> ModelSnapshot:
    """Copy ``model``'s weights to CPU and render its metadata (see ``save_model``); training may go on.

    ``tensors``: an earlier snapshot's copies of these same weights, reused instead of copying again.
    ``staging``: buffers to copy into (see ``Staging``).
    """
    config = _model_config(model)
    # size and channels default to the model's own, so predict needs nothing else
    record = CheckpointMeta.from_dict({"size": config.get("size"), "channels": config.get("channels"), **dict(meta),
                                       "format_version": FORMAT_VERSION, "model": config}, where="save_model")
    try:
        text = json.dumps(record.to_dict(), default=_json_default, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"save_model: metadata is not JSON serialisable: {err}") from None
    # Copies, not views: safetensors refuses tensors that share memory (tied weights, views).
    if tensors is None:
        tensors = {k: to_cpu(v, staging, k) for k, v in model.state_dict().items()}
    return ModelSnapshot(tensors, text)


def write_model(path: PathLike, snapshot: ModelSnapshot) -> Path:
    """Write a ``snapshot_model`` result as a safetensors model file, atomically (streamed to the file:
    no second copy of the weights in memory)."""
    with atomic_path(path, keep_suffix=False) as tmp:  # '.best.safetensors.x.tmp': no *.safetensors glob sees it
        safetensors.torch.save_file(snapshot.tensors, str(tmp), metadata={META_KEY: snapshot.metadata})
    return Path(path)


def save_model(path: PathLike, model: nn.Module, meta: Mapping[str, Any]) -> Path:
    """Write ``model``'s weights and everything needed to rebuild and use it.

    Args:
        path: destination (conventionally ``*.safetensors``); replaced atomically.
        model: a module with ``config()`` (as built by ``cnnkit.model.builder.build_model``).
        meta: JSON-serialisable facts for prediction: task, landmarks, classes,
            normalisation {mean, std}, size, channels, flip_pairs, and any extra keys.
            ``format_version`` and ``model`` are set here and override the caller's.

    Returns:
        The path written.
    """
    try:
        snapshot = snapshot_model(model, meta)
    except CheckpointError as err:
        raise CheckpointError(f"save_model({path}): {str(err).removeprefix('save_model: ')}") from None
    return write_model(path, snapshot)


def _not_safetensors(path: Path, err: Exception) -> CheckpointError:
    with path.open("rb") as f:  # only the first bytes, to name the format in the message
        head = f.read(4)
    kind = ("a torch.save / zip file" if head.startswith(b"PK") else
            "a pickle" if head[:1] == b"\x80" else "not a safetensors file")  # fmt: skip
    return CheckpointError(
        f"{path}: cannot read as a cnnkit model file ({kind}: {err}). cnnkit model files are safetensors "
        "written by cnnkit.save_model; pickled files are never loaded because unpickling can run code."
    )


def _read_header(p: Path) -> dict[str, str]:
    if not p.is_file():
        raise CheckpointError(f"{p}: model file not found")
    try:
        with safetensors.safe_open(str(p), framework="pt", device="cpu") as f:
            return dict(f.metadata() or {})
    except Exception as err:  # safetensors raises its own error types; all mean "not readable"
        raise _not_safetensors(p, err) from None


def read_meta(path: PathLike) -> CheckpointMeta:
    """The ``'cnnkit'`` metadata of a model file, without loading weights.

    Raises:
        CheckpointError: missing file, not safetensors, no cnnkit metadata, a ``format_version``
            other than ``FORMAT_VERSION``, or no task.
    """
    p = Path(path)
    header = _read_header(p)
    if META_KEY not in header:
        raise CheckpointError(
            f"{p}: safetensors file without '{META_KEY}' metadata (keys: {sorted(header)}); "
            "it was not written by cnnkit.save_model. To use raw weights, build the model and load them yourself."
        )
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{p}: '{META_KEY}' metadata is not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{p}: '{META_KEY}' metadata must be a JSON object; found {type(meta).__name__}")
    return CheckpointMeta.from_dict(meta, where=str(p))


def _default_builder(config: dict[str, Any]) -> nn.Module:
    from cnnkit.model.builder import build_model  # lazy: io must not pull the model stack in on import

    cfg = dict(config)
    return build_model(cfg.pop("spec"), **cfg)


def _read_tensors(p: Path) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load_file(str(p), device="cpu")
    except Exception as err:
        raise _not_safetensors(p, err) from None


def _load_weights(p: Path, model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(expected[k].shape)}"
             for k in sorted(set(expected) & set(tensors)) if tensors[k].shape != expected[k].shape]  # fmt: skip
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{p}: weights do not match the rebuilt model. Missing keys: {missing}; unexpected keys: "
            f"{unexpected}; shape mismatches: {wrong}. The file's 'model' metadata and weights disagree."
        )
    model.load_state_dict(tensors, strict=True)


def load_weights_into(model: nn.Module, path: PathLike) -> CheckpointMeta:
    """Load a ``save_model`` file's weights into an existing model (strict); returns its meta.

    The model keeps its device, dtype and memory format (e.g. channels-last).

    Raises:
        CheckpointError: see ``read_meta``; also missing / unexpected keys or wrong shapes.
    """
    p = Path(path)
    meta = read_meta(p)
    check_names(p, meta, getattr(model, "outputs", None))
    _load_weights(p, model, _read_tensors(p))
    return meta


def load_model(
    path: PathLike, *, device: str | torch.device = "cpu", builder: Builder | None = None
) -> tuple[nn.Module, CheckpointMeta]:
    """Rebuild a model from a ``save_model`` file.

    Args:
        path: the model file.
        device: where to put the model.
        builder: ``config -> module`` (default: ``cnnkit.model.builder.build_model(
            config.pop('spec'), **config)``); mainly for tests and custom models.

    Returns:
        ``(model in eval mode on device, meta)``: the file's ``CheckpointMeta`` (``meta.model`` is
        the rebuild config).

    Raises:
        CheckpointError: see ``read_meta``; also when the landmark or class names do not match the
            head's outputs, when one image at the model's input size cannot fit in ``device``'s memory
            (estimated on the meta device before anything is built), and when weights and rebuilt model
            disagree (missing / unexpected keys, shapes).
    """
    p = Path(path)
    meta = read_meta(p)
    config = meta.model
    if not isinstance(config, dict) or "spec" not in config:
        raise CheckpointError(f"{p}: metadata key 'model' must be an object with a 'spec'; found {config!r}")
    check_names(p, meta, config.get("outputs"))
    build = builder or _default_builder
    check_memory(p, config, build, torch.device(device))
    try:
        model = build(dict(config))
    except CheckpointError:
        raise
    except ValueError as err:  # SpecError, ConfigError: the stored architecture is not buildable
        raise CheckpointError(f"{p}: cannot rebuild the model from its metadata: {err}") from None
    _load_weights(p, model, _read_tensors(p))
    return model.to(device).eval(), meta


def update_meta(path: PathLike, **values: Any) -> Path:
    """Set top-level metadata keys of a model file (weights unchanged), rewriting it atomically.

    For facts known only after the file was written, e.g. the inference strategy a run measured
    at its end (``views_measured``). ``format_version`` and ``model`` cannot be changed this way.
    """
    p = Path(path)
    meta = read_meta(p)
    if {"format_version", "model"} & values.keys():
        raise CheckpointError(f"update_meta({p}): format_version and model describe the weights; they are not updated")
    text = json.dumps(meta.with_values(**values).to_dict(), default=_json_default, allow_nan=True)
    return write_model(p, ModelSnapshot(_read_tensors(p), text))
