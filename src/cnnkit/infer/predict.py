"""``predict``: a checkpoint and some images or videos in, a DataFrame in ORIGINAL image pixels out.

Landmark predictions carry ``<name>_likelihood`` in [0, 1] beside ``<name>_x``, ``<name>_y``
(its meaning per head: :mod:`cnnkit.engine.readout`), and where the model carries an uncertainty
calibration (models trained with a validation split, ensembles) ``<name>_uncertainty``: the
expected distance error in original pixels (:mod:`cnnkit.engine.uncertainty`); an ensemble
(:mod:`cnnkit.engine.ensemble`) adds ``<name>_spread``, its members' sd per axis in pixels. The
model is a model file, an ensemble (its folder or ``ensemble.json``) or a run folder
(:func:`cnnkit.io.ensemble.find_model`). Videos: :mod:`cnnkit.infer.video_predict`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

from cnnkit.config import CropConfig
from cnnkit.data.augment import flip_permutation
from cnnkit.data.dataset import TableDataset
from cnnkit.data.loader import make_loader
from cnnkit.data.table import AnnotationTable, points_to_columns
from cnnkit.data.views import ViewDataset, collate_frames
from cnnkit.engine.device import inference_channels_last, resolve_device
from cnnkit.engine.ensemble import EnsembleStrategy, check_members
from cnnkit.engine.inference import (
    INFERENCE_BATCH,
    Outputs,
    Strategy,
    describe_auto,
    make_strategy,
    resolve_views,
    run_inference,
)
from cnnkit.engine.readout import is_heatmap
from cnnkit.engine.scored import Scored
from cnnkit.engine.step import StepSetup
from cnnkit.engine.uncertainty import Calibrated
from cnnkit.errors import CheckpointError, ConfigError, DataError
from cnnkit.infer.inputs import images_table, video_paths
from cnnkit.io.checkpoint import load_model
from cnnkit.io.ensemble import ensemble_meta, find_model
from cnnkit.io.meta import CheckpointMeta
from cnnkit.trajectories.calibrate import ErrorCalibration

log = logging.getLogger("cnnkit")


@dataclass
class Predictor:
    """A loaded model (or ensemble) plus what it needs to read images the way it was trained.

    ``strategy`` (:mod:`cnnkit.engine.inference`) scores every batch: the whole frame, or for a
    crop-trained model two passes or the full frame (``views``, as resolved); for an ensemble
    :class:`cnnkit.engine.ensemble.EnsembleStrategy` over the members' own strategies; wrapped in
    :class:`cnnkit.engine.uncertainty.Calibrated` when the model carries an uncertainty calibration.
    ``net`` is the plain network (an ``nn.ModuleList`` of the members' for an ensemble).
    """

    net: nn.Module
    meta: CheckpointMeta
    setup: StepSetup
    strategy: Strategy
    views: str = "whole-frame"  # as resolved by cnnkit.engine.inference.resolve_views
    calibration: ErrorCalibration | None = None  # signal -> expected error px (None: no uncertainty)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str = "auto", precision: str = "fp32",
                        tta_flip: bool = False, views: str = "auto", channels_last: bool | None = None) -> Predictor:
        """Load a model file, an ensemble (its folder or ``ensemble.json``) or a run folder's best model.

        ``channels_last``: the network's memory format; None = the device's measured default
        (:func:`cnnkit.engine.device.inference_channels_last`: on for the CPU).
        """
        ref = find_model(path)
        dev = resolve_device(device)
        cl = inference_channels_last(dev, channels_last)
        members = [_Member.load(f, dev, precision=precision, tta_flip=tta_flip, views=views, channels_last=cl)
                   for f in ref.files]
        if ref.manifest is None:
            one = members[0]
            calibration = _calibration(one.meta.get("error_calibration"), path)
            strategy = one.strategy if calibration is None else \
                Calibrated(one.strategy, calibration, one.meta.get("landmarks") or [], has_spread=False)
            return cls(one.net, one.meta, one.setup, strategy, one.views, calibration)
        check_members([m.meta for m in members], [str(f) for f in ref.files])
        calibration = _calibration(ref.manifest.calibration, ref.manifest.path)
        ensemble: Strategy = EnsembleStrategy([m.strategy for m in members])
        first = members[0]
        if calibration is not None and first.setup.task == "landmarks":
            ensemble = Calibrated(ensemble, calibration, first.meta.get("landmarks") or [], has_spread=len(members) > 1)
        meta = ensemble_meta(first.meta, ref.manifest)
        resolved = ", ".join(dict.fromkeys(m.views for m in members))
        return cls(nn.ModuleList([m.net for m in members]), meta, first.setup, ensemble, resolved, calibration)

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

    def loader(self, table: AnnotationTable, *, batch_size: int = INFERENCE_BATCH, workers: int = 0) -> Any:
        return make_loader(self.dataset(_as_unlabelled(table, self)), batch_size=batch_size, shuffle=False,
                           workers=workers, collate_fn=collate_frames if self.setup.crop is not None else None)

    def run(self, table: AnnotationTable, *, batch_size: int = INFERENCE_BATCH, workers: int = 0) -> Outputs:
        """Stream the table through the model, batch by batch."""
        return run_inference(self.strategy, self.loader(table, batch_size=batch_size, workers=workers))

    def score_batch(self, batch: dict[str, Any]) -> Scored:
        """One batch (a loader's, or video frames in the same form) through the strategy."""
        self.strategy.eval()
        return self.strategy.score(batch)

    def columns(self, pred: np.ndarray, likelihood: np.ndarray | None, *, uncertainty: np.ndarray | None = None,
                spread: np.ndarray | None = None) -> dict[str, Any]:
        """Predictions -> per landmark ``<name>_x``, ``<name>_y``, ``<name>_likelihood`` and, where the model
        has them, ``<name>_uncertainty`` (calibrated expected error, px) and ``<name>_spread`` (ensembles:
        the members' sd per axis, px); or ``label``, ``confidence`` and ``prob_<class>`` per class."""
        if self.setup.task == "landmarks":
            k = len(self.landmarks)
            points = pred.reshape(len(pred), k, 2)
            lik = np.zeros((0, k)) if likelihood is None and not len(pred) else likelihood
            base = points_to_columns(points, self.landmarks, lik)
            extra = {"uncertainty": uncertainty, "spread": spread}
            if all(v is None for v in extra.values()):
                return base
            columns: dict[str, Any] = {}
            for j, name in enumerate(self.landmarks):
                columns.update({c: base[c] for c in (f"{name}_x", f"{name}_y", f"{name}_likelihood") if c in base})
                columns.update({f"{name}_{what}": v[:, j] for what, v in extra.items() if v is not None})
            return columns
        probs = pred.reshape(len(pred), len(self.classes))
        columns = {"label": [self.classes[i] for i in probs.argmax(-1)],
                   "confidence": probs.max(-1) if len(probs) else probs[:, 0]}
        for c, name in enumerate(self.classes):
            columns[f"prob_{name}"] = probs[:, c]
        return columns

    def output_columns(self, outputs: Outputs | Scored) -> dict[str, Any]:
        """:meth:`columns` of an inference run's outputs (or one scored batch)."""
        return self.columns(outputs.pred, outputs.likelihood, uncertainty=outputs.uncertainty, spread=outputs.spread)

    def frame(self, table: AnnotationTable, outputs: Outputs) -> pd.DataFrame:
        """Outputs -> one row per image (indexed like the table's rows): ``image`` then :meth:`columns`."""
        rows = table.df.iloc[outputs.index.astype(np.int64)]
        columns = {"image": rows["image"].astype(str).to_numpy(), **self.output_columns(outputs)}
        return pd.DataFrame(columns, index=rows.index).sort_index()  # built at once: no fragmented frame


def predict(model_path: str | Path, source: Any, *, batch_size: int = INFERENCE_BATCH, device: str = "auto",
            workers: int = 0, images: str | Path | None = None, tta_flip: bool = False,
            progress: bool = False, views: str = "auto") -> pd.DataFrame:
    """Predict landmarks (original pixels, with likelihoods) or classes for images or videos.

    ``model_path``: a model file, a run folder (its best model) or an ensemble (its folder or
    ``ensemble.json``: the members' median point, and ``<name>_spread``). ``source``: image paths, a folder, a .zip, an annotation file/DataFrame, an
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
        <name>_likelihood`` (and ``<name>_uncertainty``, ``<name>_spread`` where the model has them)
        per landmark (or ``label, confidence, prob_<class>``).
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



@dataclass(frozen=True)
class _Member:
    """One model file loaded for inference: its network, metadata, step set-up and strategy."""

    net: nn.Module
    meta: CheckpointMeta
    setup: StepSetup
    strategy: Strategy
    views: str

    @classmethod
    def load(cls, path: Path, device: torch.device, *, precision: str, tta_flip: bool, views: str,
             channels_last: bool = False) -> _Member:
        net, meta = load_model(path, device=str(device))
        perm = _flip_perm(meta, path, required=tta_flip)
        crop_of(meta)  # refused for class models
        setup = StepSetup.for_model(meta, device, precision)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            setup = dataclasses.replace(setup, channels_last=True)
        chosen, share = meta.get("views_measured"), meta.get("subject_share")
        resolved = resolve_views(views, crop=setup.crop, heatmap=is_heatmap(net), chosen=chosen, subject_share=share)
        if views == "auto" and setup.crop is not None:
            log.info(describe_auto(resolved, chosen, share))
        return cls(net, meta, setup, make_strategy(resolved, net, setup, perm=perm, tta_flip=tta_flip), resolved)


def _calibration(record: Any, where: str | Path) -> ErrorCalibration | None:
    """The uncertainty calibration a model file or manifest records (None: none)."""
    if not record:
        return None
    try:
        return ErrorCalibration.from_dict(record)
    except DataError as exc:
        raise CheckpointError(f"{where}: {exc}") from None


def crop_of(meta: CheckpointMeta) -> CropConfig | None:
    """The crop settings a checkpoint was trained with (None: whole-frame resize); refused for classes."""
    crop = CropConfig.parse(meta.get("crop"))
    if crop is not None and meta["task"] != "landmarks":
        raise ConfigError("this checkpoint records data.crop for a class model; crop training is for landmarks")
    return crop


def _flip_perm(meta: CheckpointMeta, path: str | Path, *, required: bool) -> list[int] | None:
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
