"""Training state for exact resume: the optimizer, schedule, epoch, RNG and extras of a run.

``save_state`` / ``load_state``: ``torch.save`` of plain containers, tensors and numbers only,
read back with ``torch.load(weights_only=True)``; ``snapshot_state`` checks that before anything
is written. Every write is atomic (``cnnkit.atomic``). Model files: ``cnnkit.io.checkpoint``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnkit.atomic import atomic_open
from cnnkit.errors import CheckpointError
from cnnkit.io.meta import FORMAT_VERSION

PathLike = str | os.PathLike[str]

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


def load_state(path: PathLike, *, mmap: bool = False) -> dict[str, Any]:
    """Read a ``save_state`` file (``weights_only=True``: no arbitrary objects).

    ``mmap``: map the tensors instead of reading them (to look at the epoch and identity cheaply).

    Returns:
        dict with format_version, epoch, optimizer, scheduler, rng, extra (files written
        before this version also hold ``'scaler': None``, which is ignored).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: training state file not found")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:
        raise CheckpointError(f"{p}: not a readable cnnkit training state ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        found = state.get("format_version") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{p}: training state format_version {found!r}; expected {FORMAT_VERSION}")
    return state
