"""What a run writes as it goes: the best weights when the selected metric improves, a commit (metrics,
best, state) when one is due, the last weights at the end, the weights of an epoch cut short.

``Checkpointer`` snapshots into reused CPU buffers on the training thread and hands the writes to a
``BackgroundWriter`` (the next epoch trains meanwhile); ``train/commit.py`` says what a commit
writes and in which order, ``io/run_folder.py`` names the files.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnkit.config import TrainConfig
from cnnkit.errors import ConfigError, did_you_mean
from cnnkit.io import run_folder as RF
from cnnkit.io.background import BackgroundWriter
from cnnkit.io.checkpoint import save_model, snapshot_model, snapshot_state, write_model
from cnnkit.io.meta import CheckpointMeta
from cnnkit.train import commit as C
from cnnkit.train.ema import WeightAverage
from cnnkit.train.state import RunState

log = logging.getLogger("cnnkit")

#: History columns where higher is better (``select`` negates them).
HIGHER_IS_BETTER = ("accuracy", "pck", "f1_macro")


class Checkpointer:
    """The run folder's writer for one run (main process only; other ranks never call it)."""

    def __init__(self, *, out: Path, cfg: TrainConfig, meta: CheckpointMeta, model: nn.Module,
                 ema: WeightAverage | None, opt: torch.optim.Optimizer, sched: Any, identity: str,
                 task: str, validated: bool, clock: Callable[[], float]) -> None:
        self.out, self.cfg, self.meta, self.identity = out, cfg, meta, identity
        self.model, self.ema, self.opt, self.sched = model, ema, opt, sched
        self.kept = model if ema is None else ema.module  # the weights validated and saved
        self.selected_by = selection_key(cfg.select, task=task, validated=validated)
        self.clock = clock
        self.writer = BackgroundWriter()
        self._staging: dict[str, Any] = {"best": {}, "state": {}}  # CPU buffers reused by every commit
        self._best: Any = None  # the best weights (a CPU snapshot) not yet written
        self._last_commit_s = clock()

    def meta_at(self, state: RunState, epoch: int) -> CheckpointMeta:
        """The model files' record at ``epoch`` (-1: interrupted), with the mean training shape so far."""
        shape = state.mean_shape_norm()
        return self.meta.with_values(epoch=epoch,
                                     mean_shape_norm=None if shape is None else np.nan_to_num(shape, nan=0.5).tolist())

    def after_epoch(self, state: RunState, row: dict[str, float], epochs: int, rng: Any,
                    per_rank: list[Any] | None) -> None:
        """Keep the weights when the selected metric improved; commit when one is due (the last epoch's always)."""
        meta = self.meta_at(state, state.epochs_done)
        value = selection_value(self.selected_by, row)
        kept = None
        self.writer.wait()  # the staging buffers are free again (the last write ended long ago, normally)
        if value <= state.best_value or not math.isfinite(state.best_value):
            kept = snapshot_model(self.kept, meta.with_values(selected_by=self.selected_by),
                                  staging=self._staging["best"])
            self._best, state.best_value = kept, value
        if not C.commit_due(self.cfg.checkpoint_every, state.epochs_done, epochs, self._last_commit_s, self.clock()):
            return
        self.writer.submit(self._commit(state, rng, per_rank, meta, kept, final=state.epochs_done >= epochs))
        self._best, self._last_commit_s = None, self.clock()

    def write_last(self, state: RunState) -> None:
        """A run resumed after its last epoch: the end's ``last.safetensors`` from the committed weights."""
        final = snapshot_model(self.kept, self.meta_at(state, state.epochs_done))
        self.writer.submit(lambda: write_model(self.out / RF.LAST, final))

    def save_interrupted(self, state: RunState) -> None:
        """Ctrl-C: the weights of the epoch in progress beside the last commit (which a resume continues)."""
        save_model(self.out / RF.INTERRUPTED, self.kept, self.meta_at(state, -1))
        log.warning(f"interrupted: --resume (resume=True) continues from the last commit in {self.out / RF.STATE}"
                    f"; the weights of the epoch in progress are in {RF.INTERRUPTED}.")

    def _commit(self, state: RunState, rng: Any, per_rank: list[Any] | None, meta: CheckpointMeta,
                kept: Any, *, final: bool) -> Callable[[], None]:
        """Snapshot this epoch into CPU memory (training may go on) and return the job that writes it."""
        last = snapshot_model(self.kept, meta, tensors=None if kept is None else kept.tensors,
                              staging=self._staging["state"])
        extra = state.to_extra() | {"identity": self.identity}
        if self.ema is not None:  # the raw weights differ from the kept (averaged) ones
            extra |= {"ema": self.ema.state_dict(), "model": self.model.state_dict()}
        if per_rank is not None:
            extra["rng_ranks"] = per_rank
        record = snapshot_state(optimizer=self.opt, scheduler=self.sched, epoch=state.epochs_done, rng=rng,
                                extra=extra, staging=self._staging["state"])
        if self.ema is None:
            record["extra"]["model"] = last.tensors  # already a CPU copy: the weights are copied once
        return C.commit_job(self.out, self._best, state.history_frame().to_csv(index=False), record,
                            last if final else None)


def selection_key(select: str, *, task: str, validated: bool) -> str:
    """``select``: 'auto' (the main val metric), 'last', or a history column such as 'val_nme'."""
    if not validated or select == "last":
        return "last"
    if select != "auto":
        return select
    return "val_error_px_mean" if task == "landmarks" else "val_accuracy"


def selection_value(key: str, row: dict[str, float]) -> float:
    """Lower is better; accuracy-like metrics are negated."""
    if key == "last":
        return -float(row["epoch"])  # always the newest
    if key not in row:
        raise ConfigError(f"select: {key!r} is not a recorded metric.{did_you_mean(key, row)} "
                          f"Recorded: {', '.join(row)}.")
    value = float(row[key])
    value = -value if key.endswith(HIGHER_IS_BETTER) else value
    return value if math.isfinite(value) else math.inf
