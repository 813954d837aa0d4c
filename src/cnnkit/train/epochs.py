"""The epoch loop behind ``fit``: train, validate, record, checkpoint, resume.

Resume is exact on CPU: epoch ``e``'s shuffle order and augmentation draws are pure
functions of (seed, e), and the weights, optimizer, schedule and torch's global RNG (dropout)
are saved with every commit (``train/commit.py``) and restored before the next epoch.
``resume`` continues when something was committed and starts from epoch 1 otherwise.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from cnnkit import geometry
from cnnkit.config import DEFAULT_MIN_EPOCHS, DEFAULT_MIN_STEPS, TrainConfig
from cnnkit.engine.inference import Outputs, run_inference, validation_strategy
from cnnkit.engine.metrics import class_metrics, landmark_metrics
from cnnkit.engine.step import StepSetup
from cnnkit.errors import CheckpointError, ConfigError, did_you_mean
from cnnkit.io import run_folder as RF
from cnnkit.io.background import BackgroundWriter
from cnnkit.io.checkpoint import (
    capture_rng,
    load_state,
    restore_rng,
    save_model,
    snapshot_model,
    snapshot_state,
    write_model,
)
from cnnkit.io.meta import CheckpointMeta
from cnnkit.rng import make_generator
from cnnkit.train import commit as C
from cnnkit.train.budget import SHORT_BUDGET_STEPS, Speed, recent_pace, recount, time_used
from cnnkit.train.distributed import DistContext, merge_outputs
from cnnkit.train.ema import WeightAverage
from cnnkit.train.loop import EpochBar, train_one_epoch
from cnnkit.train.optim import make_optimizer, make_scheduler, stretch_schedule
from cnnkit.train.parts import RunParts

log = logging.getLogger("cnnkit")

HIGHER_IS_BETTER = ("accuracy", "pck", "f1_macro")


@dataclass
class RunState:
    """What survives between epochs (and across a resume)."""

    epochs_done: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_value: float = math.inf
    shape_sum: np.ndarray | None = None  # (K, 2) sums of training points, normalised
    shape_count: np.ndarray | None = None
    interrupted: bool = False

    def history_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.history)

    def mean_shape_norm(self) -> np.ndarray | None:
        if self.shape_sum is None or self.shape_count is None:
            return None
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.shape_sum / self.shape_count


class EpochRunner:
    """Owns the model, optimizer and schedule of one run; ``run`` does the epochs."""

    def __init__(self, parts: RunParts, cfg: TrainConfig, out: Path, dist: DistContext, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        setup = parts.setup
        self.clock = clock  # seconds: epoch times, train.time (parts.started_s is on it), checkpoint_every 'Mmin'
        self.model = parts.model.to(setup.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.setup, self.cfg, self.loaders, self.loss_fn = setup, cfg, parts.loaders, parts.loss_fn
        self.out, self.meta, self.dist = out, parts.meta, dist
        backbone = getattr(self.model, "layers", self.model)
        self.frozen_bn = [m for m in backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] \
            if parts.freeze_bn else []
        # self.model stays the plain module (saved without a 'module.' prefix); steps go through DDP.
        wrapped = dist.wrap(self.model, sync_bn=cfg.sync_bn)
        self.opt = make_optimizer(self.model, cfg)
        steps_per_epoch = max(1, len(self.loaders["train"]))
        self.time_plan, self.started_s = parts.time_plan, parts.started_s
        self.speed: Speed | None = None  # a few steps timed before training: the length line says how long
        # the training-length rule (or train.time's plan), resolved once
        self.epochs = parts.time_plan.epochs if parts.time_plan is not None else cfg.epochs_for(steps_per_epoch)
        self.sched = make_scheduler(self.opt, cfg, steps_per_epoch, self.epochs)
        self.step_model: Any = torch.compile(wrapped) if cfg.compile else wrapped
        self.ema = WeightAverage(self.model, cfg.ema) if cfg.ema > 0 else None
        # Validation shards differ in length, so it must not run through DDP's collectives.
        self.eval_model: Any = self.model if dist.is_distributed else self.step_model
        if self.ema is not None:
            self.eval_model = self.ema.module
        self.validation = validation_strategy(self.eval_model, setup)
        self.writer = BackgroundWriter()
        self.identity = C.run_identity(cfg, self.meta, self.model, {k: len(v.dataset) for k, v in self.loaders.items()})
        self._staging: dict[str, Any] = {"best": {}, "state": {}}  # CPU buffers reused by every commit
        self._best: Any = None  # the best weights (a CPU snapshot) not yet written
        self._last_commit_s = clock()
        self.tensorboard = _tensorboard(cfg, out, dist, parts)  # train.log: tensorboard (main process only)

    @property
    def kept_model(self) -> nn.Module:
        """The weights that are validated and saved: the moving average with ``ema``, else the model."""
        return self.model if self.ema is None else self.ema.module

    # -- resume -----------------------------------------------------------------------
    def resume_state(self, run_dir: Path) -> RunState:
        """``run_dir``'s committed state loaded into this runner; a fresh start when nothing is committed
        (in the output folder only). A different run's state (see ``commit.run_identity``) is refused."""
        state_path = run_dir / RF.STATE
        found = state_path.is_file()
        if self.dist.is_distributed:  # every rank must take the same branch (a shared file system)
            C.check_ranks_agree(self.dist.gather(found), state_path)
        if not found:
            C.check_fresh_start(run_dir, self.out, log_line=not self.cfg.quiet and self.dist.is_main)
            return RunState()
        saved = load_state(state_path)
        extra = saved["extra"]
        C.check_same_run(run_dir, extra.get("identity"), self.identity)
        self.model.load_state_dict(extra["model"])  # the state's own weights: its epoch's, always
        self.opt.load_state_dict(saved["optimizer"])
        self.sched.load_state_dict(saved["scheduler"])
        self._restore_average(extra.get("ema"), run_dir)
        self._restore_rng(saved["rng"], extra.get("rng_ranks"), int(saved["epoch"]))
        state = RunState(epochs_done=int(saved["epoch"]), history=list(extra["history"]),
                         best_value=float(extra["best_value"]))
        if extra.get("shape_sum") is not None:
            state.shape_sum = np.asarray(extra["shape_sum"], dtype=np.float64)
            state.shape_count = np.asarray(extra["shape_count"], dtype=np.float64)
        if self.time_plan is not None:  # train.time: what the committed epochs took is spent
            self.started_s -= time_used(self.time_plan, [row.get("time_s", 0.0) for row in state.history])
        if not self.cfg.quiet and self.dist.is_main:
            log.info(f"resuming {run_dir} after epoch {state.epochs_done}")
        return state

    def _restore_average(self, saved: dict[str, Any] | None, run_dir: Path) -> None:
        if self.ema is None:
            return
        if saved is None:
            raise CheckpointError(f"cannot resume {run_dir} with train.ema={self.cfg.ema}: that run kept no "
                                  f"weight average. Resume with the run's own settings (ema: 0).")
        self.ema.load_state_dict(saved)

    def _restore_rng(self, main: Any, per_rank: list[Any] | None, epoch: int) -> None:
        """Each rank's own saved RNG; a rank the saved run did not have derives a fresh seed."""
        same_ranks = per_rank is not None and len(per_rank) == self.dist.world_size
        restore_rng(per_rank[self.dist.rank] if self.dist.is_distributed and same_ranks else main)  # type: ignore[index]
        if self.dist.is_distributed and not same_ranks and not self.dist.is_main:
            torch.manual_seed(self.dist.rank_seed(self.cfg.seed * 1_000_003 + epoch))

    # -- the loop ---------------------------------------------------------------------
    def run(self, state: RunState) -> RunState:
        if self.dist.is_main:
            C.clear_for_start(self.out, fresh=state.epochs_done == 0)
        try:
            self._announce_length(state)
            if state.epochs_done >= self.epochs and self.dist.is_main:  # resumed after its last epoch
                final = snapshot_model(self.kept_model, self._meta(state, state.epochs_done))
                self.writer.submit(lambda: write_model(self.out / RF.LAST, final))
            while state.epochs_done < self.epochs:  # train.time may re-count self.epochs after the first
                self._one_epoch(state.epochs_done, state)
            self.writer.wait()
        except KeyboardInterrupt:
            state.interrupted = True
            self.writer.finish()
            if self.dist.is_main:
                save_model(self.out / RF.INTERRUPTED, self.kept_model, self._meta(state, -1))
                log.warning(f"interrupted: --resume (resume=True) continues from the last commit in {self.out / RF.STATE}"
                            f"; the weights of the epoch in progress are in {RF.INTERRUPTED}.")
        except BaseException:
            self.writer.finish()  # the commit in flight still lands: a resume loses no finished epoch
            raise
        if self.dist.is_main and self.cfg.plots and state.history:
            self._plots(state)
        return state

    def _one_epoch(self, epoch: int, state: RunState) -> None:
        start = self.clock()
        train_loader = self.loaders["train"]
        train_loader.sampler.set_epoch(epoch)
        generator = make_generator(self.dist.rank_seed(self.cfg.seed * 1_000_003 + epoch))
        tap = _ShapeTap(train_loader, state, self.setup)
        average = None if self.ema is None else (lambda: self.ema.update(self.model))  # type: ignore[union-attr]
        with self._progress(epoch, len(train_loader.sampler)) as bar:
            logs = train_one_epoch(self.step_model, tap, self.setup, self.opt, self.sched, self.loss_fn,
                                   generator=generator, on_batch=bar.update_with if bar else None,
                                   after_step=average, frozen_bn=self.frozen_bn)
        if tap.active:
            self._reduce_shape(state)
        row: dict[str, float] = {"epoch": epoch + 1, **self._reduce_train_logs(logs, len(train_loader.sampler))}
        if "val" in self.loaders:
            row.update(self._validate(state))
        row["time_s"] = self.clock() - start
        state.history.append(row)
        state.epochs_done = epoch + 1
        if self.time_plan is not None and self.cfg.schedule != "onecycle":
            self._recount_plan(state)
        self._record(state, row)

    def _recount_plan(self, state: RunState) -> None:
        """train.time: the epochs re-counted after every epoch from the recent epochs' pace and the time
        left, the schedule laid over them, and the plan saved to settings.json before this epoch's
        commit (a resume reads it there)."""
        plan = self.time_plan
        assert plan is not None
        pace = recent_pace([row["time_s"] for row in state.history if "time_s" in row])
        # rank 0's clock for every rank, so all ranks agree on the length
        pace, elapsed_s = self.dist.gather((pace, self.clock() - self.started_s))[0]
        first = not plan.recounted
        self.time_plan = recount(plan, state.epochs_done, pace, plan.budget_s - elapsed_s)
        if self.time_plan.epochs != self.epochs:
            self.epochs = self.time_plan.epochs
            stretch_schedule(self.sched, self.cfg, max(1, len(self.loaders["train"])), self.epochs)
        if first and not self.cfg.quiet and self.dist.is_main:
            log.info(f"train.time: the first epoch took {pace:.3g} s; training {_epochs(self.epochs)} in all "
                     "(re-counted after every epoch from the recent epochs' pace)")
        if self.dist.is_main:
            RF.RunFolder(self.out).update_settings(time_plan=self.time_plan.to_dict(), epochs=self.epochs)

    def _reduce_train_logs(self, logs: dict[str, float], n_local: int) -> dict[str, float]:
        """Global train loss (sum over ranks / rows over ranks) and global images per second."""
        if not self.dist.is_distributed:
            return logs
        loss_sum, n, speed = self.dist.reduce_numbers(logs["train_loss"] * n_local, n_local, logs["images_per_s"])
        return {**logs, "train_loss": loss_sum / max(n, 1.0), "images_per_s": speed}

    def _reduce_shape(self, state: RunState) -> None:
        """Mean-shape sums of all ranks (each summed its own rows, padding repeats left out)."""
        if not self.dist.is_distributed or self.setup.task != "landmarks":
            return
        zeros = np.zeros((len(self.meta.landmarks), 2))
        local = np.stack([zeros if state.shape_sum is None else state.shape_sum,
                          zeros if state.shape_count is None else state.shape_count])
        total = self.dist.reduce_sum(torch.from_numpy(local)).numpy()
        state.shape_sum, state.shape_count = total[0], total[1]

    def _validate(self, state: RunState) -> dict[str, float]:
        outputs = run_inference(self.validation, self.loaders["val"], self.loss_fn)
        outputs = merge_outputs(self.dist.gather(outputs))  # every rank: all val rows, in table order
        return {"val_loss": outputs.loss, **{f"val_{k}": v for k, v in self._metrics(outputs, state).items()}}

    def _metrics(self, outputs: Outputs, state: RunState) -> dict[str, float]:
        assert outputs.true is not None  # validation tables are annotated
        if self.setup.task == "classes":
            return class_metrics(outputs.pred.argmax(-1), outputs.true, classes=self.meta.classes)
        baseline = self._baseline_px(outputs, state)
        found = landmark_metrics(outputs.pred, outputs.true, names=self.meta.landmarks, baseline_px=baseline)
        return {k: float(v) for k, v in found.items()}

    def _baseline_px(self, outputs: Outputs, state: RunState) -> np.ndarray | None:
        """The mean training shape, placed in each val image's original pixels."""
        shape = state.mean_shape_norm()
        return None if shape is None else geometry.mean_shape_in_original(shape, self.setup.size, outputs.scale,
                                                                           outputs.offset)

    # -- records ----------------------------------------------------------------------
    def _meta(self, state: RunState, epoch: int) -> CheckpointMeta:
        shape = state.mean_shape_norm()
        return self.meta.with_values(epoch=epoch,
                                     mean_shape_norm=None if shape is None else np.nan_to_num(shape, nan=0.5).tolist())

    def _record(self, state: RunState, row: dict[str, float]) -> None:
        rng = capture_rng()
        per_rank = self.dist.gather(rng) if self.dist.is_distributed else None  # collective: all ranks
        if not self.dist.is_main:
            return
        if not self.cfg.quiet:
            log.info(format_epoch_line(row, self.epochs, eta_s=self._eta_s(state)))
        if self.tensorboard is not None:
            self.tensorboard.on_epoch_end(state.epochs_done, row, [g["lr"] for g in self.opt.param_groups],
                                          self.kept_model)
        meta = self._meta(state, state.epochs_done)
        value = self._selection_value(row)
        kept = None
        self.writer.wait()  # the staging buffers are free again (the last write ended long ago, normally)
        if value <= state.best_value or not math.isfinite(state.best_value):
            kept = snapshot_model(self.kept_model, meta.with_values(selected_by=self._selection_key()),
                                  staging=self._staging["best"])
            self._best, state.best_value = kept, value
        if not C.commit_due(self.cfg.checkpoint_every, state.epochs_done, self.epochs, self._last_commit_s,
                            self.clock()):
            return
        self.writer.submit(self._commit(state, rng, per_rank, meta, kept))
        self._best, self._last_commit_s = None, self.clock()

    def _commit(self, state: RunState, rng: Any, per_rank: list[Any] | None, meta: CheckpointMeta,
                kept: Any) -> Any:
        """Snapshot this epoch into CPU memory (training may go on) and return the job that writes it."""
        last = snapshot_model(self.kept_model, meta, tensors=None if kept is None else kept.tensors,
                              staging=self._staging["state"])
        extra = self._extra(state) | {"identity": self.identity}
        if self.ema is not None:  # the raw weights differ from the kept (averaged) ones
            extra |= {"ema": self.ema.state_dict(), "model": self.model.state_dict()}
        if per_rank is not None:
            extra["rng_ranks"] = per_rank
        record = snapshot_state(optimizer=self.opt, scheduler=self.sched, epoch=state.epochs_done, rng=rng,
                                extra=extra, staging=self._staging["state"])
        if self.ema is None:
            record["extra"]["model"] = last.tensors  # already a CPU copy: the weights are copied once
        final = last if state.epochs_done >= self.epochs else None
        return C.commit_job(self.out, self._best, state.history_frame().to_csv(index=False), record, final)

    def _extra(self, state: RunState) -> dict[str, Any]:
        return {"history": state.history, "best_value": state.best_value,
                "shape_sum": None if state.shape_sum is None else state.shape_sum.tolist(),
                "shape_count": None if state.shape_count is None else state.shape_count.tolist()}

    def _selection_key(self) -> str:
        """``select``: 'auto' (the main val metric), 'last', or a history column such as 'val_nme'."""
        if "val" not in self.loaders or self.cfg.select == "last":
            return "last"
        if self.cfg.select != "auto":
            return self.cfg.select
        return "val_error_px_mean" if self.setup.task == "landmarks" else "val_accuracy"

    def _selection_value(self, row: dict[str, float]) -> float:
        """Lower is better; accuracy-like metrics are negated."""
        key = self._selection_key()
        if key == "last":
            return -float(row["epoch"])  # always the newest
        if key not in row:
            raise ConfigError(f"select: {key!r} is not a recorded metric.{did_you_mean(key, row)} "
                              f"Recorded: {', '.join(row)}.")
        value = float(row[key])
        value = -value if key.endswith(HIGHER_IS_BETTER) else value
        return value if math.isfinite(value) else math.inf

    def _progress(self, epoch: int, total: int) -> Any:
        return EpochBar(epoch, self.epochs, total, disable=self.cfg.quiet or not self.dist.is_main)

    def _announce_length(self, state: RunState) -> None:
        """One line: how many epochs and optimizer steps will run, and by which rule."""
        if self.cfg.quiet or not self.dist.is_main or state.epochs_done >= self.epochs:
            return
        per_epoch = max(1, len(self.loaders["train"]))
        plan = self.time_plan
        why = (plan.describe() if plan is not None else "train.epochs" if self.cfg.epochs is not None
               else "train.steps" if self.cfg.steps is not None
               else f"the default: at least {DEFAULT_MIN_STEPS:,} steps and {DEFAULT_MIN_EPOCHS} epochs; "
                    f"set train.epochs, train.steps or train.time to change it")
        steps = self.epochs * per_epoch
        log.info(f"training {_epochs(self.epochs)} x {per_epoch} steps = {steps:,} optimizer "
                 f"steps ({why}){self._estimate(state)}; the time left is shown after each epoch")
        shortened = plan is not None and plan.recipe == "short"
        if self.setup.task == "landmarks" and self.setup.crop is None and steps < SHORT_BUDGET_STEPS and not shortened:
            log.info(f"a short budget (under {SHORT_BUDGET_STEPS:,} steps): at equal time, half the pixels, batch 8 "
                     "and ImageNet weights did better than the defaults (docs/training.md, 'Short budgets'; "
                     "train.time chooses the first two by itself when you leave data.size and batch_size unset)")

    def _estimate(self, state: RunState) -> str:
        """'; about 12 min on this machine (...)' from the steps timed before training (no train.time)."""
        if self.speed is None or self.time_plan is not None:  # train.time: its plan already says it
            return ""
        left_s = (self.epochs - state.epochs_done) * self.speed.epoch_s
        return (f"; about {_duration(left_s)} on this machine ({self.speed.step_s:.3g} s a step and "
                f"{self.speed.epoch_s:.3g} s an epoch, timed before training; train.time caps it)")

    def _eta_s(self, state: RunState) -> float:
        """Seconds left at the recent epochs' pace (the one train.time re-counts by)."""
        times = [row["time_s"] for row in state.history if "time_s" in row]
        return recent_pace(times) * (self.epochs - state.epochs_done) if times else float("nan")

    def _plots(self, state: RunState) -> None:
        from cnnkit.train.plots import write_run_plots

        write_run_plots(self.out, state.history_frame(), self.kept_model, self.loaders.get("val"), self.setup,
                        self.meta)


def format_epoch_line(row: dict[str, float], epochs: int, *, eta_s: float = float("nan")) -> str:
    parts = [f"epoch {int(row['epoch'])}/{epochs}", f"train_loss {row['train_loss']:.4g}"]
    for key in ("val_loss", "val_error_px_mean", "val_baseline_px_mean", "val_nme", "val_accuracy"):
        if key in row and np.isfinite(row[key]):
            parts.append(f"{key} {row[key]:.4g}")
    parts.append(f"{row['images_per_s']:.1f} img/s")
    if math.isfinite(eta_s) and int(row["epoch"]) < epochs:
        parts.append(f"about {_duration(eta_s)} left")
    return "  ".join(parts)


class _ShapeTap:
    """Wraps the train loader; sums the (un-augmented) training points for the mean-shape baseline."""

    def __init__(self, loader: Any, state: RunState, setup: StepSetup) -> None:
        self.loader, self.state, self.setup = loader, state, setup
        self.active = setup.task == "landmarks" and state.epochs_done == 0
        # Under DDP a rank's last rows may repeat other ranks' rows (padding); leave them out.
        self.limit = getattr(loader.sampler, "real_count", len(loader.sampler))

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Any:
        seen = 0
        for batch in self.loader:
            if self.active and seen < self.limit:
                # crop training: the points in the whole view (the frame), whatever view the batch shows
                self._add(batch.get("shape_points", batch["points"])[: self.limit - seen])
            seen += len(batch["points"])
            yield batch

    def _add(self, points_px: torch.Tensor) -> None:
        norm = geometry.input_to_norm(points_px.double(), self.setup.size).numpy()
        present = ~np.isnan(norm)
        s, c = np.where(present, norm, 0.0).sum(0), present.sum(0).astype(np.float64)
        if self.state.shape_sum is None:
            self.state.shape_sum, self.state.shape_count = s, c
        else:
            self.state.shape_sum, self.state.shape_count = self.state.shape_sum + s, self.state.shape_count + c


def _tensorboard(cfg: TrainConfig, out: Path, dist: DistContext, parts: RunParts) -> Any:
    if cfg.log != "tensorboard" or not dist.is_main:
        return None
    from cnnkit.train.tensorboard import TensorBoardLog

    return TensorBoardLog(out, val_loader=parts.loaders.get("val"), setup=parts.setup)


def _duration(seconds: float) -> str:
    """'12 min' from 90 s on, else '40 s'."""
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"
