"""An uncertainty in pixels for every point, calibrated at the end of a run on its validation split.

At the end of a landmark run with a validation split, the kept weights score the validation
split as ``predict`` will (same strategy, with a likelihood) and
:func:`cnnkit.trajectories.calibrate.fit_calibration` fits the map from the doubt signal to the
mean error observed there (isotonic, a scale per landmark). The map is recorded in the model
files' metadata (``error_calibration``; the figures in ``uncertainty_measured``) and ``predict``
then adds ``<name>_uncertainty`` (px) to every prediction (:mod:`cnnkit.engine.uncertainty`).

For an ensemble (:mod:`cnnkit.train.ensemble`) there are up to three signals: the members' mean
likelihood, their spread, and both combined. :func:`choose_calibration` keeps the one that ranks
the validation errors best, measured by 2-fold cross-fitting over the validation images (each
half scored by a map fitted on the other): the ROC AUC for points more than 10 px off, or, where
fewer than ``MIN_CLASS_POINTS`` points lie on either side of 10 px, more than the validation
errors' 90th percentile.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.data.augment import flip_permutation
from cnnkit.data.dataset import TableDataset
from cnnkit.data.loader import make_loader
from cnnkit.data.table import AnnotationTable
from cnnkit.data.views import ViewDataset, collate_frames
from cnnkit.engine.inference import (
    INFERENCE_BATCH,
    Outputs,
    Strategy,
    make_strategy,
    resolve_views,
    run_inference,
)
from cnnkit.engine.metrics import point_errors
from cnnkit.engine.readout import is_heatmap
from cnnkit.engine.step import StepSetup
from cnnkit.errors import DataError
from cnnkit.io.checkpoint import load_model, read_meta, update_meta
from cnnkit.trajectories.calibrate import ErrorCalibration, fit_calibration
from cnnkit.trajectories.reliability import ERROR_PX, calibration_error, error_auc, reliability_table

log = logging.getLogger("cnnkit")

#: Below this many points on either side of ERROR_PX, the signal is chosen at the 90th percentile instead.
MIN_CLASS_POINTS = 10
SIGNALS = ("likelihood", "spread", "both")  # on a tie, the first (the simplest) wins


def model_strategy(path: Path, setup: StepSetup) -> Strategy:
    """The strategy ``predict`` scores ``path`` with by default (views as measured, likelihood read)."""
    net, meta = load_model(path, device=setup.device)
    kind = resolve_views("auto", crop=setup.crop, heatmap=is_heatmap(net), chosen=meta.get("views_measured"),
                         subject_share=meta.get("subject_share"))
    pairs = [tuple(p) for p in meta.get("flip_pairs") or []]
    perm = flip_permutation(meta["landmarks"], pairs) if pairs else None
    return make_strategy(kind, net, setup, perm=perm)


def validation_loader(val: AnnotationTable, setup: StepSetup, *, grayscale: bool, letterbox: bool,
                      batch_size: int = INFERENCE_BATCH) -> Iterable[Mapping[str, Any]]:
    """The validation images as ``predict`` reads them (whole frames resized, or frames for views)."""
    if setup.crop is not None:
        frames = ViewDataset(val, crop=setup.crop, grayscale=grayscale, mode="frames")
        return make_loader(frames, batch_size=batch_size, shuffle=False, collate_fn=collate_frames)
    return make_loader(TableDataset(val, size=setup.size, grayscale=grayscale, letterbox=letterbox),
                       batch_size=batch_size, shuffle=False)


def calibrate_run(out_dir: Path, setup: StepSetup, val: AnnotationTable | None, *, grayscale: bool, letterbox: bool,
                  files: Sequence[str], batch_size: int = INFERENCE_BATCH, quiet: bool = False) -> dict[str, Any] | None:
    """Calibrate the likelihood of the kept weights (the first of ``files`` present) on ``val``; record it
    in that file and in any other of ``files`` holding the same epoch. None: nothing to calibrate (classes,
    no validation split, nothing measurable)."""
    present = [out_dir / f for f in files if (out_dir / f).is_file()]
    if setup.task != "landmarks" or val is None or not len(val) or not present:
        return None
    loader = validation_loader(val, setup, grayscale=grayscale, letterbox=letterbox, batch_size=batch_size)
    outputs = run_inference(model_strategy(present[0], setup), loader)
    chosen = choose_calibration(outputs, list(val.landmarks), signals=("likelihood",))
    if chosen is None:
        return None
    calibration, record = chosen
    epoch = read_meta(present[0]).get("epoch")
    same = [p for p in present if p == present[0] or read_meta(p).get("epoch") == epoch]
    for path in same:
        update_meta(path, error_calibration=calibration.to_dict(), uncertainty_measured=record)
    if not quiet:
        log.info(f"uncertainty: {describe(record)} (recorded in {', '.join(p.name for p in same)})")
    return record


def choose_calibration(outputs: Outputs, landmarks: Sequence[str], *, signals: Sequence[str] = SIGNALS,
                       seed: int = 0) -> tuple[ErrorCalibration, dict[str, Any]] | None:
    """The calibration of the best signal among ``signals`` present in ``outputs`` (module docstring), and
    its record: ``signal``, ``val_auc`` per candidate (cross-fitted), ``threshold_px``, ``points``, ``rows``,
    ``val_error_px_mean``, ``val_calibration_error_px`` (cross-fitted). None: no signal or too few points."""
    assert outputs.true is not None  # validation tables are annotated
    errors = point_errors(outputs.pred, outputs.true)
    names = np.broadcast_to(np.asarray(list(landmarks), dtype=object), errors.shape)
    available = {k: v for k, v in {"likelihood": outputs.likelihood, "spread": outputs.spread}.items()
                 if v is not None and _varies(v)}  # a constant (a direct head without flip pairs) ranks nothing
    candidates = [s for s in signals if all(p in available for p in _parts(s))]
    if not candidates or np.isfinite(errors).sum() < 2:
        if not candidates:
            log.info("uncertainty: not calibrated: no signal varies from point to point (a direct head without "
                     "flip pairs measures no doubt; a heatmap head, flip pairs or an ensemble do)")
        return None
    threshold = _threshold(errors)
    halves = _halves(len(errors), seed)
    measured = {s: _cross_fitted(errors, _inputs(s, available), names, halves) for s in candidates}
    aucs = {s: error_auc(pred, errors, threshold) for s, pred in measured.items()}
    winner = max(candidates, key=lambda s: (_finite(aucs[s]), -candidates.index(s)))
    try:
        calibration = _fit(errors, _inputs(winner, available), names)
    except DataError as exc:
        log.info(f"uncertainty: not calibrated ({exc})")
        return None
    record = {"signal": winner, "method": calibration.method, "threshold_px": round(threshold, 4),
              "val_auc": {s: _round(a) for s, a in aucs.items()}, "points": int(np.isfinite(errors).sum()),
              "rows": len(errors), "val_error_px_mean": _round(float(np.nanmean(errors))),
              "val_calibration_error_px": _round(calibration_error(reliability_table(measured[winner], errors)))}
    return calibration, record


def describe(record: Mapping[str, Any] | None) -> str:
    """One sentence about a calibration record, for logs and reports."""
    if not record:
        return ""
    aucs = ", ".join(f"{k} {v:.3f}" for k, v in (record.get("val_auc") or {}).items() if v is not None)
    return (f"{record.get('signal')} calibrated to an expected error in px on {record.get('rows')} validation images "
            f"({record.get('points')} points; ROC AUC for errors > {record.get('threshold_px', ERROR_PX):g} px, "
            f"cross-fitted: {aucs}; calibration error {record.get('val_calibration_error_px')} px)")


def _varies(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    return finite.size > 1 and bool(np.ptp(finite) > 0)


def _parts(signal: str) -> tuple[str, ...]:
    return ("spread", "likelihood") if signal == "both" else (signal,)


def _inputs(signal: str, available: Mapping[str, np.ndarray]) -> dict[str, np.ndarray | None]:
    return {p: available[p] for p in _parts(signal)}


def _threshold(errors: np.ndarray) -> float:
    """ERROR_PX where enough points lie on both sides of it, else the errors' 90th percentile."""
    finite = errors[np.isfinite(errors)]
    over = int((finite > ERROR_PX).sum())
    if min(over, len(finite) - over) >= MIN_CLASS_POINTS:
        return ERROR_PX
    return float(np.percentile(finite, 90))


def _halves(rows: int, seed: int) -> list[np.ndarray]:
    """Two halves of the validation rows (images), drawn with a fixed seed; one half when too few rows."""
    if rows < 4:
        return [np.arange(rows)]
    order = np.random.default_rng(seed).permutation(rows)
    return [np.sort(order[: rows // 2]), np.sort(order[rows // 2:])]


def _cross_fitted(errors: np.ndarray, signals: Mapping[str, np.ndarray | None], names: np.ndarray,
                  halves: list[np.ndarray]) -> np.ndarray:
    """Each half's expected errors from a map fitted on the other half (in-sample with one half)."""
    out = np.full(errors.shape, np.nan)
    for i, rows in enumerate(halves):
        fit_rows = halves[1 - i] if len(halves) == 2 else rows

        try:
            cal = _fit(errors, signals, names, fit_rows)
        except DataError:
            continue
        out[rows] = cal.expected_error(spread=_take(signals.get("spread"), rows),
                                       likelihood=_take(signals.get("likelihood"), rows), landmarks=names[rows])
    return out


def _fit(errors: np.ndarray, signals: Mapping[str, np.ndarray | None], names: np.ndarray,
         rows: np.ndarray | None = None) -> ErrorCalibration:
    """The isotonic calibration (a scale per landmark) of ``signals`` on ``rows`` (all when None)."""
    rows = np.arange(len(errors)) if rows is None else rows
    return fit_calibration(errors[rows], spread=_take(signals.get("spread"), rows),
                           likelihood=_take(signals.get("likelihood"), rows), landmarks=names[rows])


def _take(values: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if values is None else values[rows]


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -1.0


def _round(value: float) -> float | None:
    return round(value, 4) if math.isfinite(value) else None
