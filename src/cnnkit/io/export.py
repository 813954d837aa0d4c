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

Ensembles (an ensemble folder or its ``ensemble.json``, :mod:`cnnkit.io.ensemble`):
:func:`export_ensemble` exports each member as above, with its own parity check, into one folder,
and writes ``ensemble.json`` beside them (format ``cnnkit-ensemble-export``): the members' files,
how to combine them (``combine``: the median point, the spread) and the uncertainty calibration.
A deployment runs every member on the same input, maps each one's points to pixels, and takes the
median per landmark and axis (:mod:`cnnkit.engine.ensemble`).
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
from cnnkit.io.ensemble import MANIFEST, find_model, is_ensemble

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


@dataclass(frozen=True)
class ExportedEnsemble:
    manifest: Path
    members: tuple[Exported, ...]

    def __str__(self) -> str:
        return "\n".join([f"{self.manifest} (ensemble of {len(self.members)})", *(f"  {m}" for m in self.members)])


#: What a deployment does with the members' outputs (written into the exported ensemble's manifest).
COMBINE = {
    "points": "map each member's output to original-image pixels, then take the median over the members per "
              "landmark and axis",
    "likelihood": "the mean over the members",
    "spread": "per landmark: sqrt of the mean over x and y of the members' variance (ddof 0) of those pixel "
              "positions; the <name>_spread column of cnnkit predict",
    "uncertainty": "calibration (cnnkit.trajectories.ErrorCalibration.from_dict): expected error in px from its signal",
}


def export_model(model_path: str | Path, out: str | Path | None = None, *, format: str = "onnx",
                 atol: float = 1e-3, batch: int = 2) -> Exported | ExportedEnsemble:
    """Write the exported file, check it against PyTorch on a random batch, return the figures.

    An ensemble (its folder or ``ensemble.json``) goes to :func:`export_ensemble`, ``out`` naming the folder.
    """
    if is_ensemble(model_path):
        return export_ensemble(model_path, out, format=format, atol=atol, batch=batch)
    return _export_file(model_path, out, format=format, atol=atol, batch=batch)


def _export_file(model_path: str | Path, out: str | Path | None, *, format: str, atol: float, batch: int) -> Exported:
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


def export_ensemble(path: str | Path, out: str | Path | None = None, *, format: str = "onnx", atol: float = 1e-3,
                    batch: int = 2) -> ExportedEnsemble:
    """Export every member of an ensemble into ``out`` (default: ``<ensemble folder>/exported-<format>``), each
    with its parity check, and write the deployment manifest ``ensemble.json`` there (module docstring)."""
    if format not in FORMATS:
        raise ConfigError(f"export format {format!r} is not supported. Use one of: {', '.join(FORMATS)}")
    manifest = find_model(path).manifest
    assert manifest is not None
    folder = Path(out) if out else manifest.path.parent / f"exported-{format}"
    if folder.resolve() == manifest.path.parent.resolve():
        raise ConfigError(f"{folder}: export an ensemble into a folder of its own, not the run folder (it holds "
                          f"the training manifest); e.g. --out {folder / ('exported-' + format)}")
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".onnx" if format == "onnx" else ".pt"
    done = tuple(_export_file(f, folder / f"member-{i}{suffix}", format=format, atol=atol, batch=batch)
                 for i, f in enumerate(manifest.files, start=1))
    record = {"format": "cnnkit-ensemble-export", "version": 1, "graph_format": format,
              "members": [{"file": d.path.name, "metadata": d.path.name + ".json"} for d in done], "combine": COMBINE, "calibration": manifest.calibration,
              "uncertainty": manifest.uncertainty, "source": str(manifest.path)}
    target = folder / MANIFEST
    atomic_write_text(target, json.dumps(record, indent=2))
    return ExportedEnsemble(target, done)


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
