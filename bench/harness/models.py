"""Untrained landmark checkpoints for the speed benchmarks (the speed does not depend on the weights)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

#: eight landmarks, the lips' count
NAMES = [f"p{i}" for i in range(8)]
IMAGENET_NORM = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def landmark_checkpoint(path: Path, spec: str, size: Sequence[int], *, names: Sequence[str] = NAMES,
                        head: str | Mapping[str, Any] | None = None) -> Path:
    """``spec`` at ``size`` (w, h) with ``head`` (None: the landmark default), seeded, saved at ``path``."""
    from cnnkit.io.checkpoint import save_model
    from cnnkit.model.builder import build_model

    torch.manual_seed(0)
    model = build_model(spec, size=tuple(size), channels=3, outputs=2 * len(names), head=head, task="landmarks")
    meta = {"task": "landmarks", "landmarks": list(names), "classes": [], "size": list(size), "channels": 3,
            "normalisation": IMAGENET_NORM, "grayscale": False, "letterbox": False, "flip_pairs": []}
    return save_model(path, model, meta)
