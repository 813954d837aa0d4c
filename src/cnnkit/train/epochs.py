"""The epoch loop behind ``fit``: train, validate, record; resume. Its parts: ``train/length.py`` (how
many epochs, the length line, ``train.time``'s re-count), ``train/checkpointing.py`` (what is written
after an epoch), ``train/state.py`` (what survives between epochs).

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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnkit import geometry
from cnnkit.config import TrainConfig
from cnnkit.engine.inference import Outputs, run_inference, validation_strategy
from cnnkit.engine.metrics import class_metrics, landmark_metrics
from cnnkit.engine.step import StepSetup
from cnnkit.errors import CheckpointError
from cnnkit.io import run_folder as RF
from cnnkit.io.checkpoint import capture_rng, load_state, restore_rng
from cnnkit.rng import make_generator
from cnnkit.train import commit as C
from cnnkit.train.checkpointing import Checkpointer
from cnnkit.train.distributed import DistContext, merge_outputs
from cnnkit.train.ema import WeightAverage
from cnnkit.train.length import RunLength, duration_text
from cnnkit.train.loop import EpochBar, train_one_epoch
from cnnkit.train.optim import make_optimizer, make_scheduler
from cnnkit.train.parts import RunParts
from cnnkit.train.state import RunState as RunState

log = logging.getLogger("cnnkit")

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
        # the training-length rule (or train.time's plan), resolved once
        self.length = RunLength.for_run(cfg, dist, out, steps_per_epoch, parts.time_plan, parts.started_s, clock)
        self.sched = make_scheduler(self.opt, cfg, steps_per_epoch, self.length.epochs)
        self.step_model: Any = torch.compile(wrapped) if cfg.compile else wrapped
        self.ema = WeightAverage(self.model, cfg.ema) if cfg.ema > 0 else None
        # Validation shards differ in length, so it must not run through DDP's collectives.
        self.eval_model: Any = self.model if dist.is_distributed else self.step_model
        if self.ema is not None:
            self.eval_model = self.ema.module
        self.validation = validation_strategy(self.eval_model, setup.for_inference())
        self.identity = C.run_identity(cfg, self.meta, self.model, {k: len(v.dataset) for k, v in self.loaders.items()})
        self.checkpoints = Checkpointer(out=out, cfg=cfg, meta=self.meta, model=self.model, ema=self.ema, opt=self.opt,
                                        sched=self.sched, identity=self.identity, task=setup.task,
                                        validated="val" in self.loaders, clock=clock)
        self.tensorboard = _tensorboard(cfg, out, dist, parts)  # train.log: tensorboard (main process only)

    @property
    def kept_model(self) -> nn.Module:
        """The weights that are validated and saved: the moving average with ``ema``, else the model."""
        return self.checkpoints.kept

    @property
    def epochs(self) -> int:
        """The epochs in all (``train.time`` re-counts them after every epoch)."""
        return self.length.epochs

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
        state = RunState.from_extra(extra, int(saved["epoch"]))
        self.length.spend(state.history)  # train.time: what the committed epochs took is spent
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
            self.length.announce(state.epochs_done,
                                 whole_frame_landmarks=self.setup.task == "landmarks" and self.setup.crop is None)
            if state.epochs_done >= self.epochs and self.dist.is_main:  # resumed after its last epoch
                self.checkpoints.write_last(state)
            while state.epochs_done < self.epochs:  # train.time may re-count the epochs after the first
                self._one_epoch(state.epochs_done, state)
            self.checkpoints.writer.wait()
        except KeyboardInterrupt:
            state.interrupted = True
            self.checkpoints.writer.finish()
            if self.dist.is_main:
                self.checkpoints.save_interrupted(state)
        except BaseException:
            self.checkpoints.writer.finish()  # the commit in flight still lands: a resume loses no finished epoch
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
        self.length.after_epoch(state.history, state.epochs_done, self.sched)
        self._record(state, row)

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
    def _record(self, state: RunState, row: dict[str, float]) -> None:
        rng = capture_rng()
        per_rank = self.dist.gather(rng) if self.dist.is_distributed else None  # collective: all ranks
        if not self.dist.is_main:
            return
        if not self.cfg.quiet:
            log.info(format_epoch_line(row, self.epochs, eta_s=self.length.eta_s(state.history, state.epochs_done)))
        if self.tensorboard is not None:
            self.tensorboard.on_epoch_end(state.epochs_done, row, [g["lr"] for g in self.opt.param_groups],
                                          self.kept_model)
        self.checkpoints.after_epoch(state, row, self.epochs, rng, per_rank)

    def _progress(self, epoch: int, total: int) -> Any:
        return EpochBar(epoch, self.epochs, total, disable=self.cfg.quiet or not self.dist.is_main)

    def _plots(self, state: RunState) -> None:
        from cnnkit.train.plots import write_run_plots

        write_run_plots(self.out, state.history_frame(), self.kept_model, self.loaders.get("val"), self.setup.for_inference(),
                        self.meta)


def format_epoch_line(row: dict[str, float], epochs: int, *, eta_s: float = float("nan")) -> str:
    parts = [f"epoch {int(row['epoch'])}/{epochs}", f"train_loss {row['train_loss']:.4g}"]
    for key in ("val_loss", "val_error_px_mean", "val_baseline_px_mean", "val_nme", "val_accuracy"):
        if key in row and np.isfinite(row[key]):
            parts.append(f"{key} {row[key]:.4g}")
    parts.append(f"{row['images_per_s']:.1f} img/s")
    if math.isfinite(eta_s) and int(row["epoch"]) < epochs:
        parts.append(f"about {duration_text(eta_s)} left")
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

    return TensorBoardLog(out, val_loader=parts.loaders.get("val"), setup=parts.setup.for_inference())
