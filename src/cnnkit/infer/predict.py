"""``predict``: a checkpoint and some images or videos in, a DataFrame in ORIGINAL image pixels out.

Landmark predictions carry ``<name>_likelihood`` in [0, 1] beside ``<name>_x``, ``<name>_y``
(its meaning per head: :mod:`cnnkit.infer.landmarks`). Videos: :mod:`cnnkit.infer.video_predict`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

from cnnkit import geometry
from cnnkit.config import CropConfig
from cnnkit.data.augment import flip_permutation
from cnnkit.data.dataset import TableDataset
from cnnkit.data.decode import Geometry
from cnnkit.data.loader import make_loader
from cnnkit.data.table import AnnotationTable
from cnnkit.data.views import ViewDataset, collate_frames, cut_view, views_geometry, whole_view
from cnnkit.engine.device import resolve_device
from cnnkit.engine.step import Outputs, StepSetup, run_inference
from cnnkit.engine.views import score_views, two_pass
from cnnkit.errors import ConfigError
from cnnkit.infer.inputs import images_table, video_paths
from cnnkit.infer.landmarks import LandmarkScorer, score_batch
from cnnkit.infer.views import check_views, refine_views, score_full_frame
from cnnkit.io.checkpoint import load_model

log = logging.getLogger("cnnkit")


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
    """A loaded model plus what it needs to read images the way it was trained.

    ``model`` is what ``run`` (and ``evaluate``) call: the network, wrapped in ``FlipTTA`` for
    test-time flip. ``scorer`` (landmark models) gives points and their likelihoods.
    """

    model: nn.Module
    meta: dict[str, Any]
    setup: StepSetup
    scorer: LandmarkScorer | None = None
    views: str = "two-pass"  # as resolved by check_views: 'two-pass' or 'full-frame' (cnnkit.infer.views)
    net: nn.Module | None = None  # the plain network (full-frame reads its heatmaps)
    perm: list[int] | None = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str = "auto", precision: str = "fp32",
                        tta_flip: bool = False, views: str = "auto") -> Predictor:
        dev = resolve_device(device)
        net, meta = load_model(path, device=str(dev))
        model, scorer = net, None
        perm = _flip_perm(meta, path, required=tta_flip)
        if tta_flip:
            model = FlipTTA(net, meta["task"], perm).to(dev).eval()
        if meta["task"] == "landmarks":
            scorer = LandmarkScorer(net, perm=perm, tta_flip=tta_flip, size=tuple(meta["size"])).to(dev).eval()
        norm = meta["normalisation"]
        setup = StepSetup(task=meta["task"], size=tuple(meta["size"]), mean=tuple(norm["mean"]),
                          std=tuple(norm["std"]), device=dev, precision=precision, crop=crop_of(meta))
        resolved = check_views(views, net, setup.crop, meta.get("subject_share"))
        if views == "auto" and setup.crop is not None:
            share = meta.get("subject_share")
            why = "not recorded" if share is None else f"{share:.2f} of the frame in training"
            log.info(f"views: auto -> {resolved} (subject span {why}; docs/resolution.md)")
        return cls(model, meta, setup, scorer, resolved, net, perm if tta_flip else None)

    @property
    def landmarks(self) -> list[str]:
        return list(self.meta.get("landmarks") or [])

    @property
    def classes(self) -> list[str]:
        return list(self.meta.get("classes") or [])

    def dataset(self, table: AnnotationTable) -> Dataset[Any]:
        """The images as the model reads them: resized frames, or (crop models) the frames to cut views from."""
        if self.setup.crop is not None:
            return ViewDataset(table, crop=self.setup.crop, grayscale=bool(self.meta.get("grayscale")), mode="frames")
        return TableDataset(table, size=tuple(self.meta["size"]), grayscale=bool(self.meta.get("grayscale")),
                            letterbox=bool(self.meta.get("letterbox")))

    def loader(self, table: AnnotationTable, *, batch_size: int = 32, workers: int = 0) -> Any:
        return make_loader(self.dataset(_as_unlabelled(table, self)), batch_size=batch_size, shuffle=False,
                           workers=workers, collate_fn=collate_frames if self.setup.crop is not None else None)

    def run(self, table: AnnotationTable, *, batch_size: int = 32, workers: int = 0) -> Outputs:
        """Stream the table through the model, batch by batch (crop models: in two passes, or full-frame)."""
        loader = self.loader(table, batch_size=batch_size, workers=workers)
        if self.views == "full-frame":
            return self._run_full_frame(loader)
        return run_inference(self.model, loader, self.setup)

    def _run_full_frame(self, loader: Any) -> Outputs:
        index, preds, trues, geos = [], [], [], []
        for batch in loader:
            geos.extend(batch["geometry"])
            index.append(np.asarray(batch["index"], dtype=np.int64))
            preds.append(self.score_batch(batch)[0])
            trues.append(np.stack(batch["points"]))
        # the whole views' geometry, where the mean-shape baseline is placed (as in two-pass)
        assert self.setup.crop is not None
        scale, offset = views_geometry([whole_view(g.orig_size, self.setup.crop.size) for g in geos])
        return Outputs(index=np.concatenate(index), pred=np.concatenate(preds), true=np.concatenate(trues),
                       scale=scale.numpy().astype(np.float64), offset=offset.numpy().astype(np.float64))

    def score(self, table: AnnotationTable, *, batch_size: int = 32, workers: int = 0) -> pd.DataFrame:
        """Landmarks with likelihoods for every image of the table (indexed like its rows)."""
        if self.scorer is None:
            raise ConfigError("score() needs a landmark model; this model predicts classes (use run())")
        index, points, liks = [], [], []
        for batch in self.loader(table, batch_size=batch_size, workers=workers):
            p, lik = self.score_batch(batch)
            index.append(np.asarray(batch["index"]))
            points.append(p)
            liks.append(lik)
        rows = table.df.iloc[np.concatenate(index) if index else np.zeros(0, np.int64)]
        columns = {"image": rows["image"].astype(str).to_numpy(),
                   **self.landmark_columns(_cat(points, (0, len(self.landmarks), 2)),
                                           _cat(liks, (0, len(self.landmarks))))}
        return pd.DataFrame(columns, index=rows.index).sort_index()

    def score_batch(self, batch: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """One loader batch -> (points (B, K, 2) ORIGINAL px, likelihood (B, K)); crop models in two passes."""
        assert self.scorer is not None
        if self.views == "full-frame":
            return self._score_full_frame(batch["frame"], batch["geometry"])
        if self.setup.crop is not None:
            result = two_pass(self.scorer, self.setup, self.setup.crop, batch["frame"], batch["geometry"])
            return result.points, result.likelihood
        p, lik = score_batch(self.scorer, self.setup, batch["image"], batch["scale"], batch["offset"])
        return p.numpy(), lik.numpy()

    def _score_full_frame(self, frames: Sequence[np.ndarray], geos: Sequence[Geometry]) -> tuple[np.ndarray, np.ndarray]:
        """Find the subject over the whole frame, then refine in the training view around it.

        The full-frame peaks place every landmark (the agreeing ones give the subject's box, see
        ``infer.views.subject_box``); the refining view is the one the model trained on, read by
        the same soft-argmax as in training, and gives the points and likelihoods returned.
        """
        assert self.scorer is not None and self.setup.crop is not None and self.net is not None
        crop = self.setup.crop
        found = [score_full_frame(self.net, self.setup, crop, f, g, perm=self.perm)
                 for f, g in zip(frames, geos, strict=True)]
        points, lik = np.stack([p for p, _ in found]), np.stack([q for _, q in found])
        views = refine_views(list(points), geos, crop)
        todo = [i for i, v in enumerate(views) if v is not None]
        chosen = [v for v in views if v is not None]
        if todo:
            images = np.stack([cut_view(frames[i], geos[i], v, crop.size) for i, v in zip(todo, chosen, strict=True)])
            fine, fine_lik, _ = score_views(self.scorer, self.setup,
                                            torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), chosen)
            points[todo], lik[todo] = fine, fine_lik
        return points, lik

    def landmark_columns(self, points: np.ndarray, likelihood: np.ndarray) -> dict[str, np.ndarray]:
        """(N, K, 2) points and (N, K) likelihoods -> ``<name>_x``, ``<name>_y``, ``<name>_likelihood``."""
        columns: dict[str, np.ndarray] = {}
        for k, name in enumerate(self.landmarks):
            columns[f"{name}_x"] = points[:, k, 0]
            columns[f"{name}_y"] = points[:, k, 1]
            columns[f"{name}_likelihood"] = likelihood[:, k]
        return columns

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
            workers: int = 0, images: str | Path | None = None, tta_flip: bool = False,
            progress: bool = False, views: str = "auto") -> pd.DataFrame:
    """Predict landmarks (original pixels, with likelihoods) or classes for images or videos.

    ``source``: image paths, a folder, a .zip, an annotation file/DataFrame, an
    AnnotationTable, or one or more video files (``.mp4 .avi .mov .mkv`` ...).
    ``tta_flip``: also predict on the mirrored image and average (landmark models need
    left/right flip pairs in their checkpoint). ``progress``: a progress bar per video.
    ``views`` (crop-trained models, docs/resolution.md): 'auto' (the default: full-frame for a
    heatmap head, else two-pass), 'full-frame' (heatmap head: the network over the whole frame
    at the training scale, tiled when large, finds the subject; a training view around it gives
    the points) or 'two-pass' (the whole frame shrunk into one view, then a view around the
    points found: cheaper, any head).

    Returns:
        Images: indexed like the input rows; ``image`` then ``<name>_x, <name>_y,
        <name>_likelihood`` per landmark (or ``label, confidence, prob_<class>``).
        Videos: one row per decoded frame, none dropped: ``video`` (several videos only),
        ``frame, time_s`` and the same prediction columns; frame ``i`` is the ``i``-th
        decoded frame (:mod:`cnnkit.data.video`).
    """
    videos = video_paths(source)
    predictor = Predictor.from_checkpoint(model_path, device=device, tta_flip=tta_flip, views=views)
    if videos:
        from cnnkit.infer.video_predict import predict_video, predict_videos

        if len(videos) == 1 and not isinstance(source, (list, tuple)):
            return predict_video(predictor, videos[0], batch_size=batch_size, progress=progress)
        return predict_videos(predictor, videos, batch_size=batch_size, progress=progress)
    table = images_table(source, images=images)
    with torch.inference_mode():
        if predictor.scorer is not None:
            return predictor.score(table, batch_size=batch_size, workers=workers)
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



def crop_of(meta: dict[str, Any]) -> CropConfig | None:
    """The crop settings a checkpoint was trained with (None: whole-frame resize); refused for classes."""
    crop = CropConfig.parse(meta.get("crop"))
    if crop is not None and meta["task"] != "landmarks":
        raise ConfigError("this checkpoint records data.crop for a class model; crop training is for landmarks")
    return crop


def _flip_perm(meta: dict[str, Any], path: str | Path, *, required: bool) -> list[int] | None:
    """The landmark flip permutation from the checkpoint's pairs; None without pairs (or for classes)."""
    if meta["task"] != "landmarks":
        return None
    pairs = [tuple(p) for p in meta.get("flip_pairs") or []]
    if not pairs:
        if required:
            raise ConfigError(
                f"{path}: test-time flip needs the model's left/right landmark pairs, and this model "
                "was trained on a table without them (its mirrored predictions would put left-side "
                "names on right-side points). Train with flip_pairs='auto' or a list of pairs "
                "(experiment file: data.flip_pairs), or predict without tta_flip / --tta-flip."
            )
        return None
    return flip_permutation(meta["landmarks"], pairs)


def _cat(parts: list[np.ndarray], empty_shape: tuple[int, ...]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(empty_shape)
