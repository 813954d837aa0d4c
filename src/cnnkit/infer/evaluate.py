"""``evaluate``: a checkpoint against an annotated table -> metrics and a per-image table.

When the predictions carry doubt (a likelihood, an ensemble's spread, a calibrated uncertainty),
the metrics say how well each predicts the error (:func:`uncertainty_metrics`): the ROC AUC of
each signal as a detector of points more than ``ERROR_PX`` (10 px) off, and for the calibrated
uncertainty its reliability table (predicted against observed mean error per bin) and the
count-weighted mean gap between the two (``uncertainty_calibration_error_px``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cnnkit import geometry
from cnnkit.data.table import AnnotationTable
from cnnkit.engine.inference import INFERENCE_BATCH
from cnnkit.engine.metrics import PCK_THRESHOLD, class_metrics, landmark_metrics, point_errors
from cnnkit.engine.scored import Outputs
from cnnkit.errors import DataError
from cnnkit.infer.predict import Predictor
from cnnkit.trajectories.reliability import ERROR_PX, calibration_error, error_auc, reliability_table


@dataclass
class Evaluation:
    """``metrics``: summary numbers; ``per_image``: one row per image, worst first.

    Landmark ``per_image`` columns: ``image``, ``row`` (position in the table), ``error_px_mean``,
    ``error_px/<name>`` and the predicted ``<name>_x``, ``<name>_y`` (original pixels), with
    ``<name>_likelihood`` (and ``<name>_uncertainty``, ``<name>_spread``) where the model has them.
    ``reliability``: the calibrated uncertainty's reliability table on these points
    (:func:`cnnkit.trajectories.reliability_table`), None without an uncertainty.
    """

    metrics: dict[str, Any]
    per_image: pd.DataFrame
    reliability: pd.DataFrame | None = None

    def __str__(self) -> str:
        lines = [f"{k:>24}: {v:.4g}" for k, v in self.metrics.items() if isinstance(v, (int, float))]
        return "\n".join(lines)


def evaluate(model_path: str | Path, table: AnnotationTable, *, batch_size: int = INFERENCE_BATCH, device: str = "auto",
             workers: int = 0, pck_threshold: float = PCK_THRESHOLD, norm: Any = "diagonal",
             tta_flip: bool = False, views: str = "auto") -> Evaluation:
    """Score a checkpoint on an annotated table; errors are in ORIGINAL image pixels.

    ``views``: for crop-trained models, 'auto' (full-frame for a heatmap head whose subject spans
    under a quarter of the frame in training, else two-pass), 'full-frame' or 'two-pass'
    (docs/resolution.md).
    """
    predictor = Predictor.from_checkpoint(model_path, device=device, tta_flip=tta_flip, views=views)
    _check_matches(predictor, table)
    with torch.inference_mode():
        outputs = predictor.run(table, batch_size=batch_size, workers=workers)
    images = table.df["image"].astype(str).to_numpy()[outputs.index]
    if predictor.setup.task == "classes":
        return _class_evaluation(predictor, outputs, images)
    assert outputs.true is not None  # evaluation tables are annotated (checked above)
    baseline = _baseline(predictor, outputs)
    metrics = landmark_metrics(outputs.pred, outputs.true, names=predictor.landmarks, baseline_px=baseline,
                               pck_threshold=pck_threshold, norm=norm)
    errors = point_errors(outputs.pred, outputs.true)  # (N, K), NaN where missing
    columns: dict[str, Any] = {"image": images, "row": outputs.index}
    with warnings.catch_warnings():  # images with no annotated point: NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        columns["error_px_mean"] = np.nanmean(errors, axis=1)
    for k, name in enumerate(predictor.landmarks):
        columns[f"error_px/{name}"] = errors[:, k]
    columns.update(predictor.output_columns(outputs))  # the predictions themselves, as predict() names them
    per_image = pd.DataFrame(columns)  # built at once: no fragmented frame with many points
    per_image = per_image.sort_values("error_px_mean", ascending=False, na_position="last").reset_index(drop=True)
    doubt = uncertainty_metrics(outputs, errors)
    reliability = None if outputs.uncertainty is None else reliability_table(outputs.uncertainty, errors)
    if reliability is not None:
        doubt["uncertainty_calibration_error_px"] = calibration_error(reliability)
    return Evaluation({**metrics, **doubt}, per_image, reliability)


def uncertainty_metrics(outputs: Outputs, errors: np.ndarray, threshold_px: float = ERROR_PX) -> dict[str, float]:
    """How well each signal of doubt the outputs carry finds the points more than ``threshold_px`` off.

    ``<signal>_auc_10px``: the ROC AUC of ``1 - likelihood``, ``spread`` and ``uncertainty`` (each where
    present; 0.5 = chance, 1 = every bad point above every good one; NaN when every point is good or every
    one bad); ``points_over_10px``: how many points are that far off; ``uncertainty_mean_px``: the mean
    predicted error, to set beside ``error_px_mean``.
    """
    tag = f"{threshold_px:g}px"
    out: dict[str, float] = {}
    scores = {"likelihood": None if outputs.likelihood is None else 1.0 - outputs.likelihood,
              "spread": outputs.spread, "uncertainty": outputs.uncertainty}
    present = {k: v for k, v in scores.items() if v is not None}
    if not present:
        return out
    out[f"points_over_{tag}"] = float(np.sum(errors[np.isfinite(errors)] > threshold_px))
    for name, score in present.items():
        out[f"{name}_auc_{tag}"] = error_auc(score, errors, threshold_px)
    if outputs.uncertainty is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out["uncertainty_mean_px"] = float(np.nanmean(np.where(np.isfinite(errors), outputs.uncertainty, np.nan)))
    return out


def _class_evaluation(predictor: Predictor, outputs: Any, images: np.ndarray) -> Evaluation:
    pred = outputs.pred.argmax(-1)
    metrics = class_metrics(pred, outputs.true, classes=predictor.classes)
    classes = predictor.classes
    per_image = pd.DataFrame({
        "image": images, "row": outputs.index, "true": [classes[i] for i in outputs.true],
        "pred": [classes[i] for i in pred], "confidence": outputs.pred.max(-1),
        "p_true": outputs.pred[np.arange(len(pred)), outputs.true],
    })
    per_image["correct"] = per_image["true"] == per_image["pred"]
    per_image = per_image.sort_values(["correct", "p_true"]).reset_index(drop=True)
    return Evaluation(dict(metrics), per_image)


def _baseline(predictor: Predictor, outputs: Any) -> np.ndarray | None:
    shape = predictor.meta.get("mean_shape_norm")
    if shape is None:
        return None
    return geometry.mean_shape_in_original(np.asarray(shape, dtype=np.float64), predictor.meta["size"],
                                           outputs.scale, outputs.offset)


def _check_matches(predictor: Predictor, table: AnnotationTable) -> None:
    task = predictor.setup.task
    if table.task != task:
        raise DataError(f"{table.source}: the table holds {table.task} but the model predicts {task}")
    if task == "landmarks" and list(table.landmarks) != predictor.landmarks:
        raise DataError(f"{table.source}: landmarks {list(table.landmarks)} differ from the model's "
                        f"{predictor.landmarks}")
    if task == "classes" and list(table.classes) != predictor.classes:
        raise DataError(f"{table.source}: classes {list(table.classes)} differ from the model's {predictor.classes}")

