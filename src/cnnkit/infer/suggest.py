"""``suggest``: rank unlabelled images or video frames by how unsure a landmark model is.

The signals, each computed where it exists (columns of the result):

- ``doubt_uncertainty``: the largest ``<name>_uncertainty`` of the image's points: the expected
  error in px, calibrated on the run's validation split (:mod:`cnnkit.engine.uncertainty`; models
  trained with a validation split, and ensembles, whose spread it may use);
- ``doubt_likelihood``: ``1 -`` the lowest ``<name>_likelihood`` of the image's points (the model's
  own confidence; its meaning per head: ``cnnkit.engine.readout``). Shown always, ranked by only
  when the model has no calibrated uncertainty (which is this signal, or the spread, made comparable
  across landmarks);
- ``doubt_flip``: the largest distance (original pixels) between a point predicted on the
  image and on its mirror image (mapped back, left/right partners swapped); needs flip
  pairs in the model. Obtained from ``predict`` with and without test-time flip, which
  averages the two passes: mirror = 2 * averaged - plain. By default only for models without a
  calibrated uncertainty (it costs a second pass and, measured on lips-via, ranks errors no better
  than chance: docs/ACCURACY.md);
- videos, DeepLabCut's outlier criteria (:mod:`cnnkit.trajectories.outliers`) on the predicted
  trajectory: ``doubt_jump`` (the largest move of a point since the previous frame, px) and
  ``doubt_fitting`` (the largest distance of a point from the smoothed trajectory, a running median
  over 5 frames, px), with DeepLabCut's flags ``jump``, ``uncertain`` (a likelihood below 0.01) and
  ``fitting`` (20 px; ``n_flags`` counts them).

``score`` is the mean, over the signals ranked by, of each signal's percentile rank among
the candidates (0 to 1), so no signal's units dominate. The top ``n`` are kept; in a video
no two suggested frames lie closer than ``min_gap`` frames, so one bad stretch does not
fill the list. With ``via``, they are written as a VIA project with the predictions as
points, to correct (video frames are saved as PNG files beside it); merge the corrected
project into the training labels with ``cnnkit merge``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cnnkit.data.frames import frame_name, free_stems, save_new_frame
from cnnkit.data.guard import refuse_to_overwrite_labels
from cnnkit.data.sources import read_annotations
from cnnkit.data.sources.writers import write_via
from cnnkit.data.table import AnnotationTable
from cnnkit.data.video import is_video, iter_frames
from cnnkit.engine.inference import INFERENCE_BATCH
from cnnkit.errors import ConfigError, DataError
from cnnkit.infer.inputs import images_table
from cnnkit.infer.predict import predict
from cnnkit.io.ensemble import read_model_meta
from cnnkit.trajectories.outliers import frame_flags, outlier_scores

log = logging.getLogger("cnnkit")

SIGNALS = ("doubt_uncertainty", "doubt_likelihood", "doubt_flip", "doubt_jump", "doubt_fitting")
FLAGS = ("jump", "uncertain", "fitting", "n_flags")


def suggest(model: str | Path, inputs: Any, *, n: int = 50, via: str | Path | None = None,
            exclude: str | Path | AnnotationTable | None = None, flip: bool | None = None, min_gap: int = 10,
            batch_size: int = INFERENCE_BATCH, device: str = "auto") -> pd.DataFrame:
    """The ``n`` images or video frames the model is least sure about, most doubtful first.

    Args:
        model: a landmark model file (``.safetensors``), an ensemble (its folder or ``ensemble.json``) or a run
            folder.
        inputs: images, folders, an annotation file or table (as ``predict``), or video files.
        n: how many to suggest.
        via: also write them, with the predictions as points, as a VIA 2 project here.
        exclude: a labels file or table; its images are not suggested (already labelled).
        flip: use the mirror-image disagreement (needs flip pairs in the model); None (the default): only
            when the model has no calibrated uncertainty.
        min_gap: in a video, at least this many frames between two suggestions.
        batch_size, device: as ``predict``.

    Returns:
        One row per suggestion: ``image`` (or ``video``, ``frame``, ``time_s``), ``score``,
        the ``doubt_*`` signals, and the predicted ``<name>_x``, ``<name>_y``, ``<name>_likelihood``.

    Raises:
        ConfigError: not a landmark model, or ``n < 1``.
        DataError: unreadable inputs, or ``via`` already holds annotations.
    """
    if n < 1:
        raise ConfigError(f"n must be at least 1. Received: {n}")
    meta = read_model_meta(model)
    names = _landmarks(model, meta)
    if flip is None:
        flip = not has_uncertainty(meta)
    if via is not None:
        refuse_to_overwrite_labels(via, what="the review project")
    videos, images = _split_inputs(inputs)
    parts = [_video_candidates(model, v, names, batch_size=batch_size, device=device, flip=flip) for v in videos]
    if images is not None:
        parts.append(_image_candidates(model, images, names, exclude, batch_size=batch_size, device=device,
                                       flip=flip))
    ranked = rank(pd.concat(parts, ignore_index=True), names)
    top = pick(ranked, n, min_gap=min_gap)
    if via is not None:
        top = _write_review(top, names, Path(via))
    return top


def has_uncertainty(meta: Mapping[str, Any]) -> bool:
    """Whether the model's predictions carry ``<name>_uncertainty`` (a calibration in the file or the ensemble)."""
    return bool(meta.get("error_calibration") or (meta.get("ensemble") or {}).get("calibration"))


def _landmarks(model: str | Path, meta: Mapping[str, Any]) -> list[str]:
    if meta.get("task") != "landmarks":
        raise ConfigError(f"{model}: suggest needs a landmark model; this one predicts {meta.get('task')}")
    return list(meta["landmarks"])


def _split_inputs(inputs: Any) -> tuple[list[Path], Any]:
    """(video files, everything else or None)."""
    items = [inputs] if isinstance(inputs, (str, Path)) else inputs
    if isinstance(items, Sequence) and not isinstance(items, str) and all(isinstance(i, (str, Path)) for i in items):
        videos = [Path(i) for i in items if is_video(i)]
        rest = [i for i in items if not is_video(i)]
        return videos, (None if not rest else rest[0] if len(rest) == 1 else rest)
    return [], inputs


def _image_candidates(model: str | Path, images: Any, names: list[str], exclude: Any, *, batch_size: int,
                      device: str, flip: bool) -> pd.DataFrame:
    table = images_table(images)
    table = AnnotationTable(table.df[["image"]].copy(), source=table.source, zip=table.zip)
    if exclude is not None:
        table = _without(table, exclude)
    plain = predict(model, table, batch_size=batch_size, device=device)
    if flip:
        plain["doubt_flip"] = _flip_doubt(model, table, plain, names, batch_size=batch_size, device=device)
    return plain


def _without(table: AnnotationTable, exclude: str | Path | AnnotationTable) -> AnnotationTable:
    labelled = exclude if isinstance(exclude, AnnotationTable) else read_annotations(exclude)
    done = {str(Path(p).resolve()) for p in labelled.images}
    keep = [str(Path(p).resolve()) not in done for p in table.images]
    log.info("suggest: %d of %d candidates are already labelled in %s", len(keep) - sum(keep), len(keep),
             labelled.source)
    if not any(keep):
        raise DataError(f"every candidate image is already labelled in {labelled.source}; nothing to suggest")
    return table.with_df(table.df[keep])


def _flip_doubt(model: str | Path, source: Any, plain: pd.DataFrame, names: list[str], **opts: Any) -> np.ndarray:
    """Largest distance between the points on the image and on its mirror image (original pixels)."""
    try:
        averaged = predict(model, source, tta_flip=True, **opts)
    except ConfigError as exc:  # no flip pairs: this signal does not exist for the model
        log.info("suggest: no mirror-image signal (%s)", str(exc).split(".")[0])
        return np.full(len(plain), np.nan)
    p = _points(plain, names)
    mirror = 2.0 * _points(averaged.loc[plain.index], names) - p
    return _nanmax(np.linalg.norm(p - mirror, axis=-1))


def _video_candidates(model: str | Path, video: Path, names: list[str], *, batch_size: int, device: str,
                      flip: bool) -> pd.DataFrame:
    plain = predict(model, video, batch_size=batch_size, device=device).reset_index(drop=True)
    if "frame" not in plain.columns:
        raise DataError(f"{video}: predict returned no 'frame' column for this video; cannot suggest frames")
    if flip:
        plain["doubt_flip"] = _flip_doubt(model, video, plain, names, batch_size=batch_size, device=device)
    flags = trajectory_doubt(plain, names)
    plain = pd.concat([plain, flags.set_index(plain.index)], axis=1)
    plain["video"] = str(video)
    return plain.drop(columns=[c for c in ("image",) if c in plain.columns])


def trajectory_doubt(frames: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """DeepLabCut's outlier criteria on one video's predictions (rows = consecutive frames).

    Columns: ``doubt_jump`` (largest move since the previous frame, px; 0 for the first frame, which has no
    previous one to jump from, so that it ranks with the others), ``doubt_fitting``
    (largest distance from the running median of the trajectory, px) and the flags of
    :func:`cnnkit.trajectories.frame_flags` (``jump``, ``uncertain``, ``fitting``, ``n_flags``).
    """
    lik_cols = [f"{n}_likelihood" for n in names]
    lik = frames[lik_cols].to_numpy(dtype=np.float64) if all(c in frames.columns for c in lik_cols) else None
    table = frame_flags(outlier_scores(_points(frames, names), lik))
    if len(table):
        table.loc[table.index[0], "jump_px"] = 0.0
    return table.rename(columns={"jump_px": "doubt_jump", "fitting_px": "doubt_fitting"})[
        ["doubt_jump", "doubt_fitting", *FLAGS]]


def rank(candidates: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Add ``doubt_uncertainty``, ``doubt_likelihood`` and ``score``; sort most doubtful first.

    The score ranks by the calibrated uncertainty instead of the likelihood where both are present.
    """
    df = candidates.copy()
    liks = [f"{n}_likelihood" for n in names if f"{n}_likelihood" in df.columns]
    if liks:
        df["doubt_likelihood"] = 1.0 - df[liks].min(axis=1, skipna=True)
    sure = [f"{n}_uncertainty" for n in names if f"{n}_uncertainty" in df.columns]
    if sure:
        df["doubt_uncertainty"] = df[sure].max(axis=1, skipna=True)
    present = [s for s in SIGNALS if s in df.columns and df[s].notna().any()]
    if "doubt_uncertainty" in present and "doubt_likelihood" in present:
        present.remove("doubt_likelihood")
    if not present:
        log.warning("suggest: the predictions carry no likelihood and no other signal; the order is arbitrary")
        df["score"] = 0.0
    else:
        df["score"] = df[present].rank(pct=True).mean(axis=1, skipna=True).fillna(0.0)
    return df.sort_values("score", ascending=False, kind="stable")


def pick(ranked: pd.DataFrame, n: int, *, min_gap: int = 10) -> pd.DataFrame:
    """The first ``n`` rows of ``ranked``, skipping video frames within ``min_gap`` of a kept one."""
    kept: list[Any] = []
    taken: dict[str, list[int]] = {}
    for idx, row in ranked.iterrows():
        if len(kept) == n:
            break
        if "video" in ranked.columns and isinstance(row.get("video"), str):
            near = taken.setdefault(row["video"], [])
            if any(abs(int(row["frame"]) - f) < min_gap for f in near):
                continue
            near.append(int(row["frame"]))
        kept.append(idx)
    return ranked.loc[kept].reset_index(drop=True)


def _write_review(top: pd.DataFrame, names: list[str], via: Path) -> pd.DataFrame:
    """Save suggested video frames beside ``via``; write the VIA project with the predicted points."""
    top = top.copy()
    if "video" in top.columns:
        top["image"] = _save_frames(top, via.parent)
    cols = [c for n in names for c in (f"{n}_x", f"{n}_y")]
    table = AnnotationTable(top[["image", *cols]].reset_index(drop=True), tuple(names), source="suggest")
    write_via(table, via)
    log.info("suggest: %d images to review -> %s", len(top), via)
    return top


def _save_frames(top: pd.DataFrame, folder: Path) -> list[Any]:
    """Save the suggested video frames in ``folder`` under names nothing there holds yet.

    Frames are created exclusively (never over a file, never through a link); a video
    whose stem is taken in the folder (an earlier review, another video of that name)
    gets ``<stem>-2``, as ``extract-frames`` does.
    """
    folder.mkdir(parents=True, exist_ok=True)
    images: list[Any] = list(top["image"]) if "image" in top.columns else [None] * len(top)
    groups = list(top[top["video"].notna()].groupby("video", sort=False))
    stems = free_stems([Path(str(video)) for video, _ in groups], folder)
    for (video, rows), stem in zip(groups, stems, strict=True):
        where = {int(f): i for i, f in zip(rows.index, rows["frame"], strict=True)}
        for frame in iter_frames(str(video), indices=list(where)):
            path = save_new_frame(folder / frame_name(stem, frame.index), frame.image)
            images[where[frame.index]] = str(path.resolve())
    return images


def _points(df: pd.DataFrame, names: list[str]) -> np.ndarray:
    return np.stack([df[[f"{n}_x", f"{n}_y"]].to_numpy(dtype=np.float64) for n in names], axis=1)


def _nanmax(a: np.ndarray) -> np.ndarray:
    """Row-wise max ignoring NaN; NaN where a row has no value."""
    out = np.full(a.shape[0], np.nan)
    ok = ~np.isnan(a).all(axis=1)
    out[ok] = np.nanmax(a[ok], axis=1)
    return out
