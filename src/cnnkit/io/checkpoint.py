"""Self-describing model files and training state for exact resume.

Model file (``save_model`` / ``load_model``): a safetensors file. The weights are its
tensors; its metadata holds ONE key, ``'cnnkit'``, a JSON string with ``format_version``,
``model`` (``model.config()``: spec, size, channels, outputs, head; enough to rebuild the
network with ``cnnkit.model.builder.build_model``) and whatever the caller adds (task,
landmarks, classes, normalisation, size, channels, flip_pairs, ...). Nothing is ever
unpickled: safetensors holds raw tensors and JSON only.

Training state (``save_state`` / ``load_state``): ``torch.save`` of plain containers,
tensors and numbers only, read back with ``torch.load(weights_only=True)``; ``save_state``
checks that before it writes.

Every write is atomic (``cnnkit.atomic``): a crash leaves the previous file intact.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch
from torch import nn

from cnnkit.atomic import atomic_open, atomic_path
from cnnkit.errors import CheckpointError

FORMAT_VERSION = 1
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


Staging = dict[str, torch.Tensor]
"""CPU buffers reused by successive snapshots (keyed by tensor name): a copy into memory already
paged in costs a memcpy, a fresh allocation also faults in (and zeroes) every page of it. The
caller must not snapshot into buffers that a write still reads."""


def to_cpu(value: torch.Tensor, staging: Staging | None = None, key: str = "") -> torch.Tensor:
    """A contiguous CPU copy of ``value`` (into ``staging[key]`` when that has the shape and dtype)."""
    if staging is None:
        return value.detach().to("cpu", copy=True).contiguous()
    buf = staging.get(key)
    if buf is None or buf.shape != value.shape or buf.dtype != value.dtype:
        buf = staging[key] = torch.empty(value.shape, dtype=value.dtype)
    return buf.copy_(value.detach())


def snapshot_model(model: nn.Module, meta: Mapping[str, Any], tensors: dict[str, torch.Tensor] | None = None,
                   staging: Staging | None = None) -> ModelSnapshot:
    """Copy ``model``'s weights to CPU and render its metadata (see ``save_model``); training may go on.

    ``tensors``: an earlier snapshot's copies of these same weights, reused instead of copying again.
    ``staging``: buffers to copy into (see ``Staging``).
    """
    config = _model_config(model)
    # size and channels default to the model's own, so predict needs nothing else
    record = {"size": config.get("size"), "channels": config.get("channels"), **meta,
              "format_version": FORMAT_VERSION, "model": config}  # fmt: skip
    try:
        text = json.dumps(record, default=_json_default, allow_nan=True)
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


def read_meta(path: PathLike) -> dict[str, Any]:
    """The ``'cnnkit'`` metadata of a model file, without loading weights.

    Raises:
        CheckpointError: missing file, not safetensors, no cnnkit metadata, or a
            ``format_version`` other than ``FORMAT_VERSION``.
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
    found = meta.get("format_version")
    if found != FORMAT_VERSION:
        raise CheckpointError(
            f"{p}: format_version {found!r}; this cnnkit reads format_version {FORMAT_VERSION}. "
            "Load it with the cnnkit version that wrote it, or retrain."
        )
    return meta


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


def load_weights_into(model: nn.Module, path: PathLike) -> dict[str, Any]:
    """Load a ``save_model`` file's weights into an existing model (strict); returns its meta.

    The model keeps its device, dtype and memory format (e.g. channels-last).

    Raises:
        CheckpointError: see ``read_meta``; also missing / unexpected keys or wrong shapes.
    """
    p = Path(path)
    meta = read_meta(p)
    _load_weights(p, model, _read_tensors(p))
    return meta


def load_model(
    path: PathLike, *, device: str | torch.device = "cpu", builder: Builder | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model from a ``save_model`` file.

    Args:
        path: the model file.
        device: where to put the model.
        builder: ``config -> module`` (default: ``cnnkit.model.builder.build_model(
            config.pop('spec'), **config)``); mainly for tests and custom models.

    Returns:
        ``(model in eval mode on device, meta)`` with meta as written (``meta['model']`` is
        the rebuild config).

    Raises:
        CheckpointError: see ``read_meta``; also when weights and rebuilt model disagree
            (missing / unexpected keys, shapes).
    """
    p = Path(path)
    meta = read_meta(p)
    if not isinstance(meta.get("model"), dict) or "spec" not in meta["model"]:
        raise CheckpointError(f"{p}: metadata key 'model' must be an object with a 'spec'; found {meta.get('model')!r}")
    try:
        model = (builder or _default_builder)(dict(meta["model"]))
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
    text = json.dumps({**meta, **values}, default=_json_default, allow_nan=True)
    return write_model(p, ModelSnapshot(_read_tensors(p), text))


# -- training state -------------------------------------------------------------------


def capture_rng() -> dict[str, Any]:
    """Snapshot the RNGs a training run draws from: torch's global generator (+ CUDA's).

    Initial weights and dropout masks come from torch's global RNG (seeded inside ``fit``'s
    ``fork_rng``); shuffles and augmentation use per-epoch generators made from (seed, epoch),
    which need no saving. numpy's and python's global RNGs belong to the caller: a run never
    draws from them, so they are neither saved nor restored.
    """
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Put back what ``capture_rng`` took; torch's next random numbers repeat exactly.

    Older state files also hold numpy's and python's global states: those are ignored, so a
    resume never changes the caller's ``np.random`` / ``random``.
    """
    if "torch" not in state:
        raise CheckpointError(f"RNG state lacks 'torch' (keys: {sorted(state)}); expected a capture_rng() result")
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(value: Any, staging: Staging | None = None, key: str = "") -> Any:
    """A detached CPU copy: tensors cloned, numpy values -> python numbers / tensors, containers rebuilt.

    The copy shares no memory with the live training objects, so training can go on while a
    background thread writes it; weights_only loading cannot read numpy, hence the conversion.
    """
    if isinstance(value, torch.Tensor):
        return to_cpu(value, staging, key)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, Mapping):
        return {k: _plain(v, staging, f"{key}/{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, staging, f"{key}/{i}") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return tuple(_plain(v, staging, f"{key}/{i}") for i, v in enumerate(value))
    return value


_LEAVES = (str, bytes, int, float, bool, type(None), torch.Tensor, torch.dtype, torch.device)


def _refused(value: Any, where: str = "state") -> str | None:
    """Where in ``value`` something sits that ``torch.load(weights_only=True)`` would refuse (None: nothing)."""
    if isinstance(value, dict):
        for k, v in value.items():
            found = _refused(k, f"{where} key") or _refused(v, f"{where}[{k!r}]")
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        return next((f for i, v in enumerate(value) if (f := _refused(v, f"{where}[{i}]"))), None)
    return None if isinstance(value, _LEAVES) else f"{where}: {type(value).__module__}.{type(value).__name__}"


def snapshot_state(
    *, optimizer: torch.optim.Optimizer, scheduler: Any = None, epoch: int, rng: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None, staging: Staging | None = None,
) -> dict[str, Any]:
    """The training state as a detached CPU record, ready for ``write_state`` (possibly on another thread).

    Args:
        optimizer, scheduler: objects with ``state_dict()``; scheduler optional.
        epoch: the number of epochs completed.
        rng: a ``capture_rng()`` result.
        extra: plain data (numbers, strings, lists, dicts, tensors; numpy is converted).
        staging: buffers to copy the tensors into (see ``Staging``).

    Raises:
        CheckpointError: something in the state would not load with ``weights_only=True``.
    """
    record = {
        "format_version": FORMAT_VERSION, "epoch": int(epoch),
        "optimizer": _plain(optimizer.state_dict(), staging, "optimizer"),
        "scheduler": None if scheduler is None else _plain(scheduler.state_dict(), staging, "scheduler"),
        "rng": _plain(dict(rng), staging, "rng"), "extra": _plain(dict(extra or {}), staging, "extra"),
    }  # fmt: skip
    found = _refused(record)
    if found:  # refuse to write a file that resume could not read safely
        raise CheckpointError(f"the training state holds an object weights_only loading refuses ({found}); "
                              "keep it to numbers, strings, lists, dicts and tensors")
    return record


def write_state(path: PathLike, record: Mapping[str, Any]) -> Path:
    """Write a ``snapshot_state`` record atomically (streamed: no second copy in memory)."""
    with atomic_open(path) as f, _no_crc32():
        torch.save(dict(record), f)
    return Path(path)


@contextlib.contextmanager
def _no_crc32() -> Iterator[None]:
    """``torch.save`` without its CRC-32 pass over every byte (torch >= 2.6; older ones compute it).

    The pass is a third of the state write's CPU time, and it guards against nothing the
    commit does not already exclude: the file is written to a temporary name, fsynced and
    renamed, so a reader never sees a torn one. The setting is process-wide while the state is
    written (torch has no per-call switch); cnnkit writes nothing else with ``torch.save``.
    """
    try:
        config = importlib.import_module("torch.utils.serialization").config.save
    except (ImportError, AttributeError):
        config = None
    if config is None or not hasattr(config, "compute_crc32"):
        yield
        return
    old = config.compute_crc32
    config.compute_crc32 = False
    try:
        yield
    finally:
        config.compute_crc32 = old


def save_state(
    path: PathLike, *, optimizer: torch.optim.Optimizer, scheduler: Any = None, epoch: int,
    rng: Mapping[str, Any], extra: Mapping[str, Any] | None = None,
) -> Path:
    """``write_state(path, snapshot_state(...))``: the training state needed to resume exactly.

    Raises:
        CheckpointError: see ``snapshot_state``.
    """
    return write_state(path, snapshot_state(optimizer=optimizer, scheduler=scheduler, epoch=epoch, rng=rng,
                                            extra=extra))


def load_state(path: PathLike) -> dict[str, Any]:
    """Read a ``save_state`` file (``weights_only=True``: no arbitrary objects).

    Returns:
        dict with format_version, epoch, optimizer, scheduler, rng, extra (files written
        before this version also hold ``'scaler': None``, which is ignored).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: training state file not found")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{p}: not a readable cnnkit training state ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        found = state.get("format_version") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{p}: training state format_version {found!r}; expected {FORMAT_VERSION}")
    return state
