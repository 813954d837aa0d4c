"""``predict``: a checkpoint and some images in, a DataFrame in ORIGINAL image pixels out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from cnnkit import geometry
from cnnkit.data.augment import flip_permutation
from cnnkit.data.dataset import TableDataset
from cnnkit.data.loader import make_loader
from cnnkit.data.table import AnnotationTable
from cnnkit.engine.device import resolve_device
from cnnkit.engine.step import Outputs, StepSetup, run_inference
from cnnkit.errors import ConfigError
from cnnkit.infer.inputs import images_table
from cnnkit.io.checkpoint import load_model


class FlipTTA(nn.Module):
    """Test-time flip: average the model's output on the image and on its mirror image.

    Landmarks: the mirror's x (normalised) becomes ``1 - x`` and left/right partners are swapped
    by ``perm``, so both passes describe the same points. Classes: logits are averaged.
    """

    def __init__(self, model: nn.Module, task: str, perm: list[int] | None) -> None:
        super().__init__()
        self.model, self.task = model, task
        self.register_buffer("perm", torch.tensor(perm if perm is not None else [], dtype=torch.long))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model(images)
        mirrored = self.model(images.flip(-1))
        if self.task != "landmarks":
            return (out + mirrored) / 2
        points = geometry.flat_to_points(mirrored)[..., self.perm, :]  # (B, K, 2), partners swapped
        points = torch.stack([1.0 - points[..., 0], points[..., 1]], dim=-1)
        return (out + geometry.points_to_flat(points)) / 2


@dataclass
class Predictor:
    """A loaded model plus what it needs to read images the way it was trained."""

    model: nn.Module
    meta: dict[str, Any]
    setup: StepSetup

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str = "auto", precision: str = "fp32",
                        tta_flip: bool = False) -> Predictor:
        dev = resolve_device(device)
        model, meta = load_model(path, device=str(dev))
        if tta_flip:
            perm = None
            if meta["task"] == "landmarks":
                pairs = [tuple(p) for p in meta.get("flip_pairs") or []]
                if not pairs:
                    raise ConfigError(
                        f"{path}: test-time flip needs the model's left/right landmark pairs, and this model "
                        "was trained on a table without them (its mirrored predictions would put left-side "
                        "names on right-side points). Train with flip_pairs='auto' or a list of pairs "
                        "(experiment file: data.flip_pairs), or predict without tta_flip / --tta-flip."
                    )
                perm = flip_permutation(meta["landmarks"], pairs)
            model = FlipTTA(model, meta["task"], perm).to(dev).eval()
        norm = meta["normalisation"]
        setup = StepSetup(task=meta["task"], size=tuple(meta["size"]), mean=tuple(norm["mean"]),
                          std=tuple(norm["std"]), device=dev, precision=precision)
        return cls(model, meta, setup)

    @property
    def landmarks(self) -> list[str]:
        return list(self.meta.get("landmarks") or [])

    @property
    def classes(self) -> list[str]:
        return list(self.meta.get("classes") or [])

    def dataset(self, table: AnnotationTable) -> TableDataset:
        return TableDataset(table, size=tuple(self.meta["size"]), grayscale=bool(self.meta.get("grayscale")),
                            letterbox=bool(self.meta.get("letterbox")))

    def run(self, table: AnnotationTable, *, batch_size: int = 32, workers: int = 0) -> Outputs:
        """Stream the table through the model, batch by batch."""
        loader = make_loader(self.dataset(_as_unlabelled(table, self)), batch_size=batch_size, shuffle=False,
                             workers=workers)
        return run_inference(self.model, loader, self.setup)

    def frame(self, table: AnnotationTable, outputs: Outputs) -> pd.DataFrame:
        """Outputs -> one row per image: image, <name>_x/_y (original pixels) or label/probabilities."""
        rows = table.df.iloc[outputs.index]
        columns: dict[str, Any] = {"image": rows["image"].astype(str).to_numpy()}
        if self.setup.task == "landmarks":
            for k, name in enumerate(self.landmarks):
                columns[f"{name}_x"] = outputs.pred[:, k, 0]
                columns[f"{name}_y"] = outputs.pred[:, k, 1]
        else:
            columns["label"] = [self.classes[i] for i in outputs.pred.argmax(-1)]
            columns["confidence"] = outputs.pred.max(-1)
            for c, name in enumerate(self.classes):
                columns[f"prob_{name}"] = outputs.pred[:, c]
        df = pd.DataFrame(columns, index=rows.index)  # built at once: no fragmented frame with many points
        return df.sort_index()


def predict(model_path: str | Path, source: Any, *, batch_size: int = 32, device: str = "auto",
            workers: int = 0, images: str | Path | None = None, tta_flip: bool = False) -> pd.DataFrame:
    """Predict landmarks (original pixels) or classes for every image in ``source``.

    ``source``: image paths, a folder, a .zip, an annotation file/DataFrame, or an AnnotationTable.
    ``tta_flip``: also predict on the mirrored image and average (landmark models need
    left/right flip pairs in their checkpoint). The result is indexed like the input rows; its
    ``image`` column holds the image paths.
    """
    predictor = Predictor.from_checkpoint(model_path, device=device, tta_flip=tta_flip)
    table = images_table(source, images=images)
    with torch.inference_mode():
        outputs = predictor.run(table, batch_size=batch_size, workers=workers)
    return predictor.frame(table, outputs)


def predictions_table(preds: pd.DataFrame, landmarks: list[str], *, source: str = "<predictions>") -> AnnotationTable:
    """Landmark predictions -> an AnnotationTable (e.g. to write a VIA project for review)."""
    return AnnotationTable(preds.reset_index(drop=True), landmarks=tuple(landmarks), source=source)


def _as_unlabelled(table: AnnotationTable, predictor: Predictor) -> AnnotationTable:
    """Keep the table's annotations only when they match the model (so predict works on any table)."""
    if table.landmarks == tuple(predictor.landmarks) or table.classes == tuple(predictor.classes):
        return table
    return AnnotationTable(table.df[["image"]].copy(), source=table.source, zip=table.zip)

