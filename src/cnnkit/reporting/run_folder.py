"""Read what a run folder holds (``io/run_folder.py`` owns the layout) and find the split to score.

An ensemble's folder (``ensemble.json`` and ``member-k/`` run folders, :mod:`cnnkit.io.ensemble`) is
read as one run: the manifest is the checkpoint scored, settings and curves are its first member's.

The split to score is, in order: the table the caller gives (``--data``); else the test split,
then the validation split, of the run's ``experiment.yaml`` (written by ``cnnkit train``); else
none, and the report shows curves and settings only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from cnnkit.data.sources import read_annotations
from cnnkit.data.table import AnnotationTable
from cnnkit.errors import CnnkitError, ConfigError
from cnnkit.io.ensemble import read_model_meta
from cnnkit.io.run_folder import EXPERIMENT, RunFolder

if TYPE_CHECKING:
    from cnnkit.experiment import Experiment

@dataclass(frozen=True)
class RunRecord:
    """What one run left in its folder, read once (``io/run_folder`` reads it). Missing files are None / empty."""

    path: Path
    settings: dict[str, Any]
    history: pd.DataFrame
    experiment: dict[str, Any] | None
    checkpoint: Path | None
    meta: Mapping[str, Any]  # the checkpoint's CheckpointMeta ({} without one)


@dataclass(frozen=True)
class EvalData:
    """The table to score and how the page should name it."""

    table: AnnotationTable
    split: str  # 'test', 'validation' or 'given data'
    described: str  # where it came from, for the page


def load_run(run_dir: str | Path) -> RunRecord:
    """Read settings.json, metrics.csv, experiment.yaml and the best (else last) checkpoint's metadata.

    Raises:
        ConfigError: ``run_dir`` is not a folder, holds none of the files a run writes, or one of
            them is damaged.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise ConfigError(f"{path}: run folder not found (expected the output folder of `cnnkit train` or fit())")
    folder = RunFolder(path)
    files = folder.member(1) if folder.is_ensemble else folder  # an ensemble: its first member's settings and curves
    settings, history = files.read_settings(), files.read_history()
    checkpoint = folder.manifest if folder.is_ensemble else folder.checkpoint()
    if not settings and history.empty and checkpoint is None:
        raise ConfigError(f"{path}: no settings.json, metrics.csv or checkpoint here; is this a run folder?")
    meta: Mapping[str, Any] = read_model_meta(checkpoint) if checkpoint is not None else {}
    experiment = folder.read_experiment() or files.read_experiment()
    return RunRecord(path, settings, history, experiment, checkpoint, meta)


def eval_data(run: RunRecord, data: Any = None, *, images: str | Path | None = None,
              experiment: Experiment | None = None) -> EvalData | None:
    """The table to score: ``data`` if given, else the run's test (then validation) split, else None."""
    if data is not None:
        table = data if isinstance(data, AnnotationTable) else read_annotations(data, images=images)
        return EvalData(table, "given data", f"given table {getattr(table, 'source', data)}")
    exp = experiment if experiment is not None else _experiment_of(run)
    if exp is None:
        return None
    tables = exp.tables()
    source = exp.settings["data"]
    for key, name in (("test", "test"), ("val", "validation")):
        if key in tables and len(tables[key]):
            origin = source.get(key) or f"{source['source']} (split: {source.get('split')})"
            return EvalData(tables[key], name, f"{name} split of {origin}")
    return None


def _experiment_of(run: RunRecord) -> Experiment | None:
    """The run's experiment.yaml with its relative paths resolved, or None without one.

    The file's paths are relative to the ORIGINAL experiment file's folder, which the run folder
    does not record. It lay at ``output`` from there, so the first folder from which ``output``
    leads back to this run (else the first ancestor where ``data.source`` exists) is taken.
    """
    from cnnkit.experiment import Experiment, validate_settings

    settings = run.experiment
    if settings is None or not (settings.get("data") or {}).get("source"):
        return None
    validate_settings(settings, str(run.path / EXPERIMENT))
    here = run.path.resolve()
    candidates = [here, *here.parents, Path.cwd()]
    output = Path(str(settings.get("output", "runs/exp")))
    for base in candidates:
        if not output.is_absolute() and (base / output).resolve() == here and _source_exists(base, settings):
            return Experiment(settings, base)
    for base in candidates:
        if _source_exists(base, settings):
            return Experiment(settings, base)
    raise CnnkitError(f"{run.path / EXPERIMENT}: data.source {settings['data']['source']!r} was not found "
                      f"relative to the run folder, its parents or the working folder. Pass the table to score "
                      f"(cnnkit report RUN --data test.csv).")


def _source_exists(base: Path, settings: dict[str, Any]) -> bool:
    source = Path(str(settings["data"]["source"])).expanduser()
    return (source if source.is_absolute() else base / source).exists()
