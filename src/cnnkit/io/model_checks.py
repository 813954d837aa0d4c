"""What a model file must satisfy before it is used: names that match its head, and room to run it.

Both are checked by ``cnnkit.io.checkpoint.load_model`` before the model is built for real.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnkit.errors import CheckpointError

PathLike = str | Path


def check_names(path: PathLike, meta: Mapping[str, Any], outputs: Any) -> None:
    """The landmark or class names must match the head: 2 outputs per landmark, one per class.

    A file whose names were edited (or written by a script) would otherwise predict the first
    outputs under the wrong names, or class probabilities that do not sum to 1.
    """
    task, landmarks, classes = meta.get("task"), meta.get("landmarks") or [], meta.get("classes") or []
    if not isinstance(outputs, int) or task not in ("landmarks", "classes"):
        return
    names, per_name = (landmarks, 2) if task == "landmarks" else (classes, 1)
    if len(names) * per_name != outputs:
        need = "2 x landmarks (x and y)" if task == "landmarks" else "one per class"
        raise CheckpointError(
            f"{path}: metadata names {len(names)} {task} but the model has {outputs} outputs ({need}): the "
            f"file's 'cnnkit' metadata and weights disagree. Use the file the training run wrote.")


def check_memory(p: Path, config: Mapping[str, Any], build: Callable[[dict[str, Any]], nn.Module], device: torch.device) -> None:
    """Refuse a model whose one-image prediction cannot fit in memory, before building it for real."""
    from cnnkit.model.memory import available_bytes, check_fits, footprint, on_meta  # lazy, as the builder

    size, channels = config.get("size"), config.get("channels")
    if not (isinstance(size, list) and len(size) == 2 and isinstance(channels, int)):
        return
    try:
        probe = footprint(on_meta(lambda: build(dict(config))), (int(size[0]), int(size[1])), channels)
    except Exception:  # noqa: BLE001 - not buildable on the meta device: the real build reports what is wrong
        return
    check_fits(probe.inference(), available_bytes(device), f"{p}: one prediction at its input size "
               f"{size[0]}x{size[1]}", "The file's metadata is wrong, or it needs a machine with more memory.",
               error=CheckpointError)
