"""The run folder: every file a run writes, named here once, and every read and write of them (atomic).

Layout::

    out_dir/
      .cnnkit-run.lock             while a run lives: who writes here (cnnkit.train.lock)
      settings.json                the resolved settings, to repeat the run
      experiment.yaml              the experiment file's settings (cnnkit train)
      metrics.csv                  one row per epoch
      best.safetensors             best by the validation metric (= last without validation)
      last.state.pt                the commit point: weights, optimizer, schedule, RNG for resume
      last.safetensors             the last epoch's weights (written when the run ends)
      interrupted.safetensors      the weights of an epoch cut short by Ctrl-C
      curves.png  val_predictions.png   plots
      test_metrics.json  test_per_image.csv  report.html   the held-out evaluation and its page
      tensorboard/                 train.log: tensorboard

An ensemble's folder (``train.ensemble: N``, ``cnnkit.io.ensemble``) holds ``ensemble.json`` (the
manifest) and ``member-1/`` .. ``member-N/``, each an ordinary run folder as above plus
``member.json`` once that member finished training; the held-out evaluation and the report are
written beside the manifest.

Writers go through ``cnnkit.atomic``: a reader sees the old file or the new one, never half.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cnnkit.atomic import atomic_write_text
from cnnkit.errors import ConfigError

STATE, LAST, BEST, METRICS, INTERRUPTED = (
    "last.state.pt", "last.safetensors", "best.safetensors", "metrics.csv", "interrupted.safetensors")
SETTINGS, EXPERIMENT, TEST_METRICS, TEST_PER_IMAGE, REPORT = (
    "settings.json", "experiment.yaml", "test_metrics.json", "test_per_image.csv", "report.html")
CURVES, VAL_PREDICTIONS = "curves.png", "val_predictions.png"
LOCK, TENSORBOARD = ".cnnkit-run.lock", "tensorboard"
ENSEMBLE, MEMBER_DONE = "ensemble.json", "member.json"  # an ensemble's manifest; a finished member's mark
#: The model files, in the order a reader prefers them.
CHECKPOINTS = (BEST, LAST)
#: What a commit writes, in its order (the state is the commit point).
RUN_FILES = (METRICS, BEST, STATE, LAST, INTERRUPTED)
PLOTS = (CURVES, VAL_PREDICTIONS)
#: What the end of a run adds: the held-out evaluation, its page, the plots.
RESULTS = (TEST_METRICS, TEST_PER_IMAGE, REPORT, *PLOTS)
#: Every file a run writes.
OUTPUTS = (SETTINGS, EXPERIMENT, *RUN_FILES, *RESULTS)


def member_folder(k: int) -> str:
    """The folder of an ensemble's member ``k`` (from 1) inside the ensemble's run folder."""
    return f"member-{k}"


@dataclass(frozen=True)
class RunFolder:
    """One run's folder: its files' paths, and their reads and atomic writes."""

    path: Path

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def best(self) -> Path:
        return self.path / BEST

    @property
    def last(self) -> Path:
        return self.path / LAST

    @property
    def state(self) -> Path:
        return self.path / STATE

    @property
    def manifest(self) -> Path:
        """Where an ensemble's manifest is (``ENSEMBLE``); ``is_ensemble`` says whether there is one."""
        return self.path / ENSEMBLE

    @property
    def is_ensemble(self) -> bool:
        return self.manifest.is_file()

    def member(self, k: int) -> RunFolder:
        """An ensemble's member ``k`` (from 1): an ordinary run folder."""
        return RunFolder(self.path / member_folder(k))

    def checkpoint(self) -> Path | None:
        """The model file a reader takes: best, else last; None when there is neither."""
        return next((self.path / n for n in CHECKPOINTS if (self.path / n).is_file()), None)

    def present(self, names: tuple[str, ...] = RUN_FILES) -> list[str]:
        """Which of ``names`` are in the folder, in their order."""
        return [name for name in names if (self.path / name).exists()]

    # -- reads: a missing file is None / empty ---------------------------------
    def read_settings(self) -> dict[str, Any]:
        return _json(self.path / SETTINGS) or {}

    def read_history(self) -> pd.DataFrame:
        path = self.path / METRICS
        return pd.read_csv(path) if path.is_file() else pd.DataFrame()

    def read_experiment(self) -> dict[str, Any] | None:
        import yaml

        path = self.path / EXPERIMENT
        if not path.is_file():
            return None
        try:
            found = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from None
        return found if isinstance(found, dict) else None

    def read_test_metrics(self) -> dict[str, Any] | None:
        return _json(self.path / TEST_METRICS)

    # -- writes: atomic ---------------------------------------------------------
    def write_text(self, name: str, text: str) -> Path:
        atomic_write_text(self.path / name, text)
        return self.path / name

    def write_settings(self, settings: Mapping[str, Any]) -> Path:
        return self.write_text(SETTINGS, json.dumps(dict(settings), indent=2, default=str))

    def update_settings(self, **values: Any) -> None:
        """Replace top-level keys of settings.json (a missing file is left alone)."""
        if (self.path / SETTINGS).is_file():
            self.write_settings({**self.read_settings(), **values})

    def write_history(self, history: pd.DataFrame) -> Path:
        return self.write_text(METRICS, history.to_csv(index=False))

    def write_test_results(self, metrics: Mapping[str, float], per_image: pd.DataFrame) -> None:
        self.write_text(TEST_METRICS, json.dumps(dict(metrics), indent=2))
        self.write_text(TEST_PER_IMAGE, per_image.to_csv(index=False))


def _json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err}); the run folder is damaged") from None
    return found if isinstance(found, dict) else None
