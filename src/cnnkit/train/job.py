"""``TrainingJob``: one training run, fully specified; ``Run``: what it leaves.

``fit`` (keywords) and experiment files (``Experiment.job``) build a job; ``train.resolve`` turns every
"auto" in it into a value once (``resolve_job``); ``train.fit.run_job`` trains the resolved job. The
job is frozen: each resolution returns a new one, so what trains is what was resolved and logged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from cnnkit.config import CropConfig, DataConfig, TrainConfig
from cnnkit.data.augment import Augment
from cnnkit.data.table import AnnotationTable
from cnnkit.errors import ConfigError, DataError
from cnnkit.train.budget import TimePlan


@dataclass
class Run:
    """What ``fit`` returns: the history and where the checkpoints are."""

    out_dir: Path
    history: pd.DataFrame
    best: Path
    last: Path
    interrupted: bool = False
    model: nn.Module | None = field(default=None, repr=False)

    @property
    def metrics(self) -> dict[str, float]:
        """The last epoch's row as a dict."""
        return {} if self.history.empty else self.history.iloc[-1].to_dict()


@dataclass(frozen=True)
class TrainingJob:
    """One training run, fully specified and validated: what ``run_job`` needs and nothing else."""

    model: Any  # preset name, spec list, spec file or a built module
    train: AnnotationTable
    val: AnnotationTable | None
    data: DataConfig
    cfg: TrainConfig
    augment: Augment
    out_dir: Path
    head: Any = None
    pretrained: str | Path | None = None
    normalisation: Mapping[str, Sequence[float]] | None = None
    resume: bool | str | Path = False
    overwrite: bool = False  # replace the run the folder holds
    inputs: tuple[Path, ...] = ()  # the files the run reads (experiment, annotations, splits): never written
    time_plan: TimePlan | None = None  # what train.time resolved to (train.resolve)
    clock: Callable[[], float] = time.monotonic  # seconds; train.time and checkpoint_every count by it

    def __post_init__(self) -> None:
        if self.resume and self.overwrite:
            raise ConfigError("resume and overwrite: choose one (resume continues the run in the folder, "
                              "overwrite replaces it)")


def table_files(*tables: AnnotationTable | None) -> tuple[Path, ...]:
    """The annotation files the tables were read from (a run never writes over them)."""
    return tuple(Path(t.source) for t in tables if t is not None and isinstance(t.source, str) and Path(t.source).is_file())



def check_tables(train: AnnotationTable, val: AnnotationTable | None, crop: CropConfig | None = None) -> None:
    if train.task == "classes" and crop is not None:
        raise ConfigError("data.crop is for landmark tables (views are placed around the points); this table holds "
                          "classes. Remove data.crop (classes train on the whole frame resized to data.size).")
    if train.task == "none":
        raise DataError(f"{train.source}: the training table has neither landmarks nor class labels")
    if len(train) == 0:
        raise DataError(f"{train.source}: the training table is empty")
    for table in (train, val):
        if table is not None:
            _check_finite(table)
    if val is None:
        return
    if val.task != train.task or val.landmarks != train.landmarks or val.classes != train.classes:
        raise DataError(
            f"validation table {val.source} does not match training table {train.source}: "
            f"task {val.task} vs {train.task}, landmarks {list(val.landmarks)[:4]}... vs "
            f"{list(train.landmarks)[:4]}..., classes {list(val.classes)} vs {list(train.classes)}"
        )


def _check_finite(table: AnnotationTable) -> None:
    """Infinite landmarks would end training in NaN losses: refuse them up front, naming row and column."""
    if table.task != "landmarks":
        return
    xs, ys = table.point_columns
    values = table.df[xs + ys].to_numpy(dtype=np.float64)
    bad = np.argwhere(np.isinf(values))
    if len(bad):
        row, col = bad[0]
        raise DataError(f"{table.source}: row {row} ({table.df['image'].iloc[row]}), column {(xs + ys)[col]}: "
                        f"landmark is {values[row, col]}; {len(bad)} infinite value(s) in all. Fix or blank them "
                        f"(blank = missing); `cnnkit check-data` lists them.")
