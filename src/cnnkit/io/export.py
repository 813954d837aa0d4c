"""Export a checkpoint to TorchScript or ONNX, with a parity check against PyTorch.

The exported graph takes float32 images ``[B, C, H, W]`` scaled to ``[0, 1]`` (pixel / 255) at
the checkpoint's input size, applies the checkpoint's normalisation itself, and returns the
raw network output: landmarks as ``[x0..xK-1, y0..yK-1]`` normalised to the input frame
(multiply x by the input width, y by its height), or class logits. A JSON file beside it
(``<file>.json``) carries the checkpoint's metadata (names, size, normalisation).

Crop-trained models (metadata ``crop``, docs/resolution.md): the graph is the network, one
VIEW in, points in that view out. The two-pass logic (whole view, then a view around the points
found) lives in cnnkit's predictor (``cnnkit.engine.two_pass``), not in the graph; the
JSON records the crop settings (``crop``) and ``"inference": "two-pass"``: what a deployment of
this fixed-size graph can repeat. (cnnkit's own predictor scores a crop model as its run measured
best on its validation split, ``views_measured``; full-frame runs the network on the whole frame at
any size: use cnnkit's predictor for that.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnkit.atomic import atomic_path, atomic_write_text
from cnnkit.errors import CheckpointError, ConfigError
from cnnkit.io.checkpoint import load_model

FORMATS = ("onnx", "torchscript")


class Normalised(nn.Module):
    """``model((x - mean) / std)``: so deployed graphs take plain [0, 1] pixels."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, model: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model((images - self.mean) / self.std)


@dataclass(frozen=True)
class Exported:
    path: Path
    format: str
    max_abs_diff: float  # largest |exported - PyTorch| on the check batch

    def __str__(self) -> str:
        return f"{self.path} ({self.format}; parity max |diff| = {self.max_abs_diff:.2e})"


def export_model(model_path: str | Path, out: str | Path | None = None, *, format: str = "onnx",
                 atol: float = 1e-3, batch: int = 2) -> Exported:
    """Write the exported file, check it against PyTorch on a random batch, return the figures."""
    if format not in FORMATS:
        raise ConfigError(f"export format {format!r} is not supported. Use one of: {', '.join(FORMATS)}")
    model, meta = load_model(model_path)
    wrapped = Normalised(model, meta["normalisation"]["mean"], meta["normalisation"]["std"]).eval()
    w, h = meta["size"]
    example = torch.rand(batch, int(meta["channels"]), int(h), int(w), generator=torch.Generator().manual_seed(0))
    suffix = ".onnx" if format == "onnx" else ".pt"
    target = Path(out) if out else Path(model_path).with_suffix(suffix)
    with torch.no_grad():
        expected = wrapped(example).numpy()
    writer = _write_onnx if format == "onnx" else _write_torchscript
    got = writer(wrapped, example, target)
    diff = float(np.max(np.abs(got - expected))) if got.size else 0.0
    if not diff <= atol:
        raise CheckpointError(f"{target}: exported outputs differ from PyTorch by {diff:.3g} (> {atol}); "
                              f"the file was written but should not be trusted")
    record = meta.to_dict()
    if meta.crop is not None:  # what a deployment must repeat around the graph (module docstring)
        record |= {"inference": "two-pass", "inference_note": "the graph scores one fixed-size view; see "
                "docs/resolution.md for the whole view and the subject view to cut (cnnkit's full-frame strategy, "
                "which the run may have measured best, needs the network on the whole frame)"}
    atomic_write_text(target.with_name(target.name + ".json"), json.dumps(record, indent=2))
    return Exported(target, format, diff)


def _write_torchscript(model: nn.Module, example: torch.Tensor, target: Path) -> np.ndarray:
    with torch.no_grad():
        traced = torch.jit.trace(model, example)
    with atomic_path(target) as tmp:
        traced.save(str(tmp))
    loaded = torch.jit.load(str(target))
    with torch.no_grad():
        return loaded(example).numpy()


def _write_onnx(model: nn.Module, example: torch.Tensor, target: Path) -> np.ndarray:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("ONNX export needs the optional extra: pip install 'cnnkit[onnx]'") from None
    with atomic_path(target) as tmp:
        torch.onnx.export(model, (example,), str(tmp), dynamo=True, verbose=False, external_data=False,
                          input_names=["images"], output_names=["outputs"],
                          dynamic_shapes=({0: torch.export.Dim("batch")},))
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: example.numpy()})[0]
