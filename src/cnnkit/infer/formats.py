"""Predictions in the layouts the pose ecosystem loads: ``predict --format csv,dlc,nwb``.

- ``csv`` (the default): cnnkit's own table, at ``--out`` (``frame, time_s, <name>_x, <name>_y,
  <name>_likelihood``; images: ``image, ...``).
- ``dlc``: DeepLabCut's layout, as DeepLabCut writes its predictions (``auxiliaryfunctions.save_data``
  and ``pose_estimation_pytorch.apis.videos.create_df_from_prediction``): columns are a MultiIndex
  ``scorer / bodyparts / coords`` with ``x, y, likelihood`` per landmark; the index is the frame
  number (videos) or the image path (images). ``<stem>DLC_<scorer tag>.csv`` (``DataFrame.to_csv``:
  the three header rows) and, when PyTables is installed (``pip install 'cnnkit[formats]'``), the
  same frame as ``.h5`` (``to_hdf(key="df_with_missing", format="table")``), which
  napari-deeplabcut and DeepLabCut's own tools open. ``movement`` loads both for videos.
- ``nwb`` (videos only): one NWB file per video with an ndx-pose ``PoseEstimation``
  (:mod:`cnnkit.infer.nwb`).

Files land in ``--out``'s folder: per video ``<video stem>DLC_<scorer>.csv/.h5`` and
``<video stem>_cnnkit_<tag>.nwb``; for images ``<--out stem>DLC_<scorer>.csv/.h5``. The scorer is
``DLC_cnnkit_<tag>``, ``<tag>`` = the model's folder and file stem (``runs/lips/best.safetensors``
-> ``DLC_cnnkit_lips-best``). A file that is not a prediction (a user's labels, anything unknown)
is never replaced (:func:`check_outputs` refuses before any work); cnnkit's and DeepLabCut's own
prediction files are (predict again to regenerate them). Every file goes through ``cnnkit.atomic``.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cnnkit.atomic import atomic_path, atomic_write_text
from cnnkit.data.guard import refuse_to_overwrite_labels
from cnnkit.errors import ConfigError, DataError, did_you_mean
from cnnkit.io.ensemble import read_model_meta
from cnnkit.trajectories.smoothing import check_target, is_smoothing_output, sidecar_path, smooth

__all__ = ["FORMATS", "PredictionMeta", "check_outputs", "check_targets", "dlc_frame", "output_paths",
           "parse_formats", "write_predictions"]

log = logging.getLogger("cnnkit")

FORMATS = ("csv", "dlc", "nwb")
#: ``--smooth``'s methods (``cnnkit.smooth``'s)
SMOOTHING = ("auto", "median", "savgol", "eks")
DLC_KEY = "df_with_missing"  # the HDF5 key DeepLabCut, movement and napari-deeplabcut read
COORDS = ("x", "y", "likelihood")
MARK = "cnnkit_predictions"  # attribute on our .h5 files: a prediction cnnkit wrote, safe to regenerate
EXTRA = "pip install 'cnnkit[formats]'"


@dataclass(frozen=True)
class PredictionMeta:
    """What the output writers need besides the predictions themselves.

    Attributes:
        landmarks: the model's landmark names, in order (empty for a class model).
        model: the checkpoint file.
        videos: the videos predicted, in order; empty for images.
        settings: the model's and the prediction's settings (recorded in NWB's description).
        smooth: also write ``<out stem>_smoothed.csv`` (videos): ``cnnkit.smooth``'s method ('auto':
            EKS for an ensemble's table, else the median filter; 'median', 'savgol', 'eks'), or None.
    """

    landmarks: tuple[str, ...]
    model: Path
    videos: tuple[Path, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    smooth: str | None = None

    @classmethod
    def from_checkpoint(cls, model: str | Path, videos: Sequence[str | Path] = (), *, smooth: str | None = None,
                        **options: Any) -> PredictionMeta:
        """Read the model's metadata (not its weights); ``options``: predict's own settings (views, tta_flip)."""
        meta = read_model_meta(model)  # a model file, an ensemble or a run folder
        kept = ("task", "size", "grayscale", "letterbox", "crop", "preset", "head", "flip_pairs")
        settings = {k: meta[k] for k in kept if meta.get(k) not in (None, [], {})} | dict(options)
        return cls(tuple(meta.get("landmarks") or ()), Path(model), tuple(Path(v) for v in videos), settings, smooth)

    @property
    def scorer(self) -> str:
        """``DLC_cnnkit_<model folder>-<model stem>``: DeepLabCut's scorer pattern (``DLC_<...>``)."""
        return f"DLC_cnnkit_{self.tag}"

    @property
    def tag(self) -> str:
        resolved = self.model.resolve()
        text = f"{resolved.parent.name}-{resolved.stem}" if resolved.parent.name else resolved.stem
        return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "model"


def parse_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """``"csv,dlc"`` or ``["csv", "dlc"]`` -> ``("csv", "dlc")``; unknown names raise ``ConfigError``."""
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    chosen = tuple(dict.fromkeys(n.strip().lower() for n in names if n.strip()))
    for name in chosen:
        if name not in FORMATS:
            raise ConfigError(f"--format: unknown format {name!r}.{did_you_mean(name, FORMATS)} "
                              f"Choose from {', '.join(FORMATS)} (comma-separated, e.g. csv,dlc,nwb)")
    if not chosen:
        raise ConfigError(f"--format: name at least one of {', '.join(FORMATS)}")
    return chosen


def output_paths(out: str | Path, formats: Sequence[str], meta: PredictionMeta) -> dict[str, list[Path]]:
    """The files each format writes (see the module docstring for the names)."""
    out = Path(out)
    stems = [v.stem for v in meta.videos] or [out.stem]
    paths: dict[str, list[Path]] = {}
    for fmt in formats:
        if fmt == "csv":
            paths[fmt] = [out]
        elif fmt == "dlc":
            suffixes = (".csv", ".h5") if _has_pytables() else (".csv",)
            paths[fmt] = [out.parent / f"{s}{meta.scorer}{x}" for s in stems for x in suffixes]
        else:
            paths[fmt] = [out.parent / f"{s}_cnnkit_{meta.tag}.nwb" for s in stems]
    if meta.smooth is not None:  # beside the raw table, which is always kept
        smoothed = smoothed_path(out)
        paths["smoothed"] = [smoothed, sidecar_path(smoothed)]
    return paths


def smoothed_path(out: str | Path) -> Path:
    """``preds/clip.csv`` -> ``preds/clip_smoothed.csv``: where ``--smooth`` writes (``cnnkit smooth``'s default)."""
    out = Path(out)
    return out.with_name(f"{out.stem}_smoothed.csv")


def check_outputs(out: str | Path, formats: str | Sequence[str], meta: PredictionMeta) -> tuple[str, ...]:
    """Check, before any work, that the formats apply and that no target is a user's file.

    Returns:
        The parsed formats.

    Raises:
        ConfigError: an unknown format, ``nwb`` for images, ``dlc``/``nwb`` for a class model,
            two videos that would write the same file, or a missing optional package.
        DataError: a target exists and is not a prediction file (it may hold labels).
    """
    chosen = _checked(out, formats, meta)
    if "dlc" in chosen and not _has_pytables():
        log.warning("--format dlc: writing the CSV only; the .h5 (napari-deeplabcut, DeepLabCut) needs PyTables: %s",
                    EXTRA)
    return chosen


def check_targets(out: str | Path, formats: str | Sequence[str], meta: PredictionMeta) -> tuple[str, ...]:
    """:func:`check_outputs` without its warnings, for a caller that checks many outputs (an archive's)."""
    return _checked(out, formats, meta)


def _checked(out: str | Path, formats: str | Sequence[str], meta: PredictionMeta) -> tuple[str, ...]:
    chosen = parse_formats(formats)
    if ("dlc" in chosen or "nwb" in chosen) and not meta.landmarks:
        raise ConfigError("--format dlc and nwb need a landmark model; this model predicts classes (use csv)")
    if "nwb" in chosen:
        if not meta.videos:
            raise ConfigError("--format nwb is for videos (an NWB PoseEstimation needs the frames' times); "
                              "for images use csv or dlc")
        _require("pynwb", "ndx_pose", what="--format nwb")
    if meta.smooth is not None:
        if not meta.videos or not meta.landmarks:
            raise ConfigError("--smooth is for a landmark model's predictions on videos (smoothing follows each "
                              "point from frame to frame); predict images without it")
        if meta.smooth not in SMOOTHING:
            raise ConfigError(f"--smooth: expected one of {', '.join(SMOOTHING)}. Received {meta.smooth!r}")
    stems = [v.stem for v in meta.videos]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice and set(chosen) - {"csv"}:
        raise ConfigError(f"two videos share the name {twice[0]!r}: their dlc/nwb files would be the same; "
                          f"predict them in separate calls with different --out folders")
    for fmt, paths in output_paths(out, chosen, meta).items():
        for path in paths:
            if fmt == "smoothed":  # a table smooth wrote may be replaced; anything else is refused
                check_target(paths[0], [out])
                if paths[0].exists() and not is_smoothing_output(paths[0]):
                    raise DataError(f"{paths[0]} (--smooth) already exists and was not written by cnnkit smooth "
                                    "(it may hold labels); nothing was written. Move it away, or choose another --out")
                break
            _refuse_unless_prediction(path, what=f"--format {fmt}")
    return chosen


def write_predictions(df: pd.DataFrame, out: str | Path, formats: str | Sequence[str],
                      meta: PredictionMeta) -> list[Path]:
    """Write ``predict``'s table in each format; returns the files written.

    Args:
        df: ``predict``'s DataFrame (images: ``image`` + point columns; videos: ``[video,] frame,
            time_s`` + point columns).
        out: ``--out``: the CSV's path, and the folder (and, for images, the stem) of the others.
        formats: names from ``FORMATS`` (a comma-separated string or a sequence).
        meta: landmark names, model and videos (:class:`PredictionMeta`).
    """
    chosen = _checked(out, formats, meta)  # again: a Python caller may not have called check_outputs
    paths = output_paths(out, chosen, meta)
    written: list[Path] = []
    if "csv" in chosen:
        written.append(atomic_write_text(Path(out), df.to_csv(index=False)))
    parts = list(_per_source(df, meta))
    for fmt in ("dlc", "nwb"):
        if fmt not in chosen:
            continue
        per_part = len(paths[fmt]) // max(len(parts), 1)
        for i, part in enumerate(parts):
            targets = paths[fmt][i * per_part:(i + 1) * per_part]
            video = meta.videos[i] if meta.videos else None
            written += _write_dlc(part, targets, meta, video) if fmt == "dlc" else _write_nwb(part, targets[0], meta, video)
    if meta.smooth is not None:
        smoothed = smooth(df, out=paths["smoothed"][0], method=meta.smooth)
        for line in smoothed.lines():
            log.info(line)
        written += paths["smoothed"]
    return written


def dlc_frame(df: pd.DataFrame, meta: PredictionMeta) -> pd.DataFrame:
    """One video's (or the images') predictions as DeepLabCut's DataFrame.

    Columns: ``(scorer, bodypart, coord)`` with coords ``x, y, likelihood``; index: ``frame``
    (int, unnamed, as DeepLabCut's ``range(n)``) or the image paths. NaN stays NaN (an empty CSV cell).
    """
    missing = [f"{n}_{c}" for n in meta.landmarks for c in COORDS if f"{n}_{c}" not in df.columns]
    if missing:
        raise DataError(f"the predictions lack the columns {missing[:3]} for --format dlc")
    columns = pd.MultiIndex.from_product([[meta.scorer], list(meta.landmarks), list(COORDS)],
                                         names=["scorer", "bodyparts", "coords"])
    values = np.stack([df[f"{n}_{c}"].to_numpy(dtype=np.float64) for n in meta.landmarks for c in COORDS], axis=1) \
        if len(df) else np.zeros((0, len(columns)))
    index = pd.Index(df["frame"].to_numpy(dtype=np.int64)) if "frame" in df.columns \
        else pd.Index(df["image"].astype(str).to_numpy(dtype=object), dtype=object)
    return pd.DataFrame(values, index=index, columns=columns)


def _per_source(df: pd.DataFrame, meta: PredictionMeta) -> list[pd.DataFrame]:
    """The table split by video, in ``meta.videos`` order (one part for images or one video)."""
    if len(meta.videos) <= 1 or "video" not in df.columns:
        return [df]
    by_video = {str(k): g for k, g in df.groupby("video", sort=False)}
    return [by_video.get(str(v), df.iloc[:0]) for v in meta.videos]


def _write_dlc(part: pd.DataFrame, targets: list[Path], meta: PredictionMeta, video: Path | None) -> list[Path]:
    frame = dlc_frame(part, meta)
    written = []
    for path in targets:
        if path.suffix == ".csv":
            atomic_write_text(path, frame.to_csv())
        else:
            with atomic_path(path) as tmp, pd.HDFStore(tmp, mode="w") as store:
                store.put(DLC_KEY, frame, format="table", track_times=False)  # no clock in the bytes
                store.get_storer(DLC_KEY).attrs[MARK] = f"cnnkit predictions by {meta.model.name}"
        written.append(path)
    return written


def _write_nwb(part: pd.DataFrame, path: Path, meta: PredictionMeta, video: Path | None) -> list[Path]:
    from cnnkit.infer.nwb import write_nwb

    assert video is not None  # check_outputs refuses nwb for images
    write_nwb(part, path, meta, video)
    return [path]


def _refuse_unless_prediction(path: Path, *, what: str) -> None:
    """A prediction file (ours or DeepLabCut's) may be regenerated; anything else is refused if it holds data."""
    if path.is_symlink() or not path.is_file() or path.stat().st_size == 0 or _is_prediction(path):
        if path.is_symlink():
            raise DataError(f"{path} ({what}) is a symbolic link; nothing was written. Write to another folder")
        return
    if path.suffix.lower() == ".csv":
        refuse_to_overwrite_labels(path, what=what)
        return
    raise DataError(f"{path} ({what}) already exists and is not a prediction file cnnkit wrote (it may hold "
                    f"labels or another tool's work); nothing was written. Move it away, or choose another --out folder")


def _is_prediction(path: Path) -> bool:
    """A DeepLabCut-layout CSV with likelihoods (labels have none), or an .h5/.nwb cnnkit marked as its own."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(encoding="utf-8", errors="replace") as fh:
            head = [fh.readline().split(",") for _ in range(3)]
        return [r[0].strip() for r in head] == ["scorer", "bodyparts", "coords"] and \
            any(c.strip() == "likelihood" for c in head[2])
    if suffix in (".h5", ".nwb") and importlib.util.find_spec("h5py") is not None:
        import h5py

        try:
            with h5py.File(path, "r") as f:
                if suffix == ".h5":
                    return DLC_KEY in f and MARK in f[DLC_KEY].attrs
                software = f.get("processing/behavior/PoseEstimation/source_software")
                return software is not None and _text(software[()]) == "cnnkit"
        except OSError:
            return False
    return False


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _has_pytables() -> bool:
    return importlib.util.find_spec("tables") is not None


def _require(*modules: str, what: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"{what} needs {', '.join(missing)}: {EXTRA}")
