"""Read what a run folder holds (``train/fit.py`` describes the layout) and find the split to score.

An ensemble's folder (``ensemble.json`` and ``member-k/`` run folders, :mod:`cnnkit.io.ensemble`) is
read as one run: the manifest is the checkpoint scored, settings and curves are its first member's.

The split to score is, in order: the table the caller gives (``--data``); else the test split,
then the validation split, of the run's ``experiment.yaml`` (written by ``cnnkit train``); else
none, and the report shows curves and settings only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from cnnkit.data.sources import read_annotations
from cnnkit.data.table import AnnotationTable
from cnnkit.errors import CnnkitError, ConfigError
from cnnkit.io.ensemble import MANIFEST, member_folder, read_model_meta

if TYPE_CHECKING:
    from cnnkit.experiment import Experiment

CHECKPOINTS = ("best.safetensors", "last.safetensors")


@dataclass(frozen=True)
class RunFolder:
    """The files of one run, read once. Missing files are None / empty."""

    path: Path
    settings: dict[str, Any]
    history: pd.DataFrame
    experiment: dict[str, Any] | None
    checkpoint: Path | None
    meta: dict[str, Any]


@dataclass(frozen=True)
class EvalData:
    """The table to score and how the page should name it."""

    table: AnnotationTable
    split: str  # 'test', 'validation' or 'given data'
    described: str  # where it came from, for the page


def load_run(run_dir: str | Path) -> RunFolder:
    """Read settings.json, metrics.csv, experiment.yaml and the best (else last) checkpoint's metadata.

    Raises:
        ConfigError: ``run_dir`` is not a folder, or holds none of the files a run writes.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise ConfigError(f"{path}: run folder not found (expected the output folder of `cnnkit train` or fit())")
    files = path / member_folder(1) if (path / MANIFEST).is_file() else path  # an ensemble: its first member's
    settings = _json(files / "settings.json")
    history = pd.read_csv(files / "metrics.csv") if (files / "metrics.csv").is_file() else pd.DataFrame()
    experiment = _yaml(path / "experiment.yaml") or _yaml(files / "experiment.yaml")
    checkpoint = path / MANIFEST if files != path else next((path / n for n in CHECKPOINTS if (path / n).is_file()),
                                                            None)
    if not settings and history.empty and checkpoint is None:
        raise ConfigError(f"{path}: no settings.json, metrics.csv or checkpoint here; is this a run folder?")
    meta = read_model_meta(checkpoint) if checkpoint is not None else {}
    return RunFolder(path, settings, history, experiment, checkpoint, meta)


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err}); the run folder is damaged") from None
    return data if isinstance(data, dict) else {}


def _yaml(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    return data if isinstance(data, dict) else None


def eval_data(run: RunFolder, data: Any = None, *, images: str | Path | None = None,
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


def _experiment_of(run: RunFolder) -> Experiment | None:
    """The run's experiment.yaml with its relative paths resolved, or None without one.

    The file's paths are relative to the ORIGINAL experiment file's folder, which the run folder
    does not record. It lay at ``output`` from there, so the first folder from which ``output``
    leads back to this run (else the first ancestor where ``data.source`` exists) is taken.
    """
    from cnnkit.experiment import Experiment, validate_settings

    settings = run.experiment
    if settings is None or not (settings.get("data") or {}).get("source"):
        return None
    validate_settings(settings, str(run.path / "experiment.yaml"))
    here = run.path.resolve()
    candidates = [here, *here.parents, Path.cwd()]
    output = Path(str(settings.get("output", "runs/exp")))
    for base in candidates:
        if not output.is_absolute() and (base / output).resolve() == here and _source_exists(base, settings):
            return Experiment(settings, base)
    for base in candidates:
        if _source_exists(base, settings):
            return Experiment(settings, base)
    raise CnnkitError(f"{run.path / 'experiment.yaml'}: data.source {settings['data']['source']!r} was not found "
                      f"relative to the run folder, its parents or the working folder. Pass the table to score "
                      f"(cnnkit report RUN --data test.csv).")


def _source_exists(base: Path, settings: dict[str, Any]) -> bool:
    source = Path(str(settings["data"]["source"])).expanduser()
    return (source if source.is_absolute() else base / source).exists()
