"""How long a run trains and how long that takes: the epochs (the length rule, or ``train.time``'s plan
re-counted after every epoch), the line that announces them, and the time left.

``EpochRunner`` asks a ``RunLength`` how many epochs there are (``epochs`` may grow or shrink after
an epoch under ``train.time``) and what to print; the plan itself is made by ``train.resolve`` and
``train.budget``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnkit.config import DEFAULT_MIN_EPOCHS, DEFAULT_MIN_STEPS, TrainConfig
from cnnkit.io import run_folder as RF
from cnnkit.train.budget import SHORT_BUDGET_STEPS, Speed, TimePlan, recent_pace, recount, time_used
from cnnkit.train.distributed import DistContext
from cnnkit.train.optim import stretch_schedule

log = logging.getLogger("cnnkit")


@dataclass
class RunLength:
    """The epochs of one run and the clock they are measured by.

    Attributes:
        epochs: the epochs in all (re-counted under ``train.time``).
        time_plan: ``train.time``'s plan, or None.
        started_s: the run's start on ``clock`` (a resume moves it back by the time its epochs took).
        speed: a few steps timed before training (``train.resolve.timed_before_training``), for the
            length line; None when nothing was timed.
    """

    cfg: TrainConfig
    dist: DistContext
    out: Path
    steps_per_epoch: int
    epochs: int
    time_plan: TimePlan | None
    started_s: float
    clock: Callable[[], float]
    speed: Speed | None = None

    @classmethod
    def for_run(cls, cfg: TrainConfig, dist: DistContext, out: Path, steps_per_epoch: int,
                time_plan: TimePlan | None, started_s: float, clock: Callable[[], float]) -> RunLength:
        """The length rule (``cfg.epochs_for``), or the plan's epochs under ``train.time``."""
        epochs = time_plan.epochs if time_plan is not None else cfg.epochs_for(steps_per_epoch)
        return cls(cfg, dist, out, steps_per_epoch, epochs, time_plan, started_s, clock)

    def spend(self, history: Sequence[dict[str, float]]) -> None:
        """A resumed ``train.time`` run: what its committed epochs took counts as spent."""
        if self.time_plan is not None:
            self.started_s -= time_used(self.time_plan, [row.get("time_s", 0.0) for row in history])

    def announce(self, epochs_done: int, *, whole_frame_landmarks: bool) -> None:
        """One line: how many epochs and optimizer steps will run, by which rule, and how long that takes."""
        if self.cfg.quiet or not self.dist.is_main or epochs_done >= self.epochs:
            return
        plan, per_epoch = self.time_plan, self.steps_per_epoch
        why = (plan.describe() if plan is not None else "train.epochs" if self.cfg.epochs is not None
               else "train.steps" if self.cfg.steps is not None
               else f"the default: at least {DEFAULT_MIN_STEPS:,} steps and {DEFAULT_MIN_EPOCHS} epochs; "
                    f"set train.epochs, train.steps or train.time to change it")
        steps = self.epochs * per_epoch
        log.info(f"training {epochs_text(self.epochs)} x {per_epoch} steps = {steps:,} optimizer "
                 f"steps ({why}){self._estimate(epochs_done)}; the time left is shown after each epoch")
        shortened = plan is not None and plan.recipe == "short"
        if whole_frame_landmarks and steps < SHORT_BUDGET_STEPS and not shortened:
            log.info(f"a short budget (under {SHORT_BUDGET_STEPS:,} steps): at equal time, half the pixels, batch 8 "
                     "and ImageNet weights did better than the defaults (docs/training.md, 'Short budgets'; "
                     "train.time chooses the first two by itself when you leave data.size and batch_size unset)")

    def _estimate(self, epochs_done: int) -> str:
        """'; about 12 min on this machine (...)' from the steps timed before training (no train.time)."""
        if self.speed is None or self.time_plan is not None:  # train.time: its plan already says it
            return ""
        left_s = (self.epochs - epochs_done) * self.speed.epoch_s
        return (f"; about {duration_text(left_s)} on this machine ({self.speed.step_s:.3g} s a step and "
                f"{self.speed.epoch_s:.3g} s an epoch, timed before training; train.time caps it)")

    def after_epoch(self, history: Sequence[dict[str, float]], epochs_done: int, sched: Any) -> None:
        """``train.time``: the epochs re-counted from the recent epochs' pace and the time left, the
        schedule laid over them, and the plan saved to settings.json before this epoch's commit (a
        resume reads it there). Nothing for other runs, or under onecycle (its shape is fixed)."""
        plan = self.time_plan
        if plan is None or self.cfg.schedule == "onecycle":
            return
        pace = recent_pace([row["time_s"] for row in history if "time_s" in row])
        # rank 0's clock for every rank, so all ranks agree on the length
        pace, elapsed_s = self.dist.gather((pace, self.clock() - self.started_s))[0]
        first = not plan.recounted
        self.time_plan = recount(plan, epochs_done, pace, plan.budget_s - elapsed_s)
        if self.time_plan.epochs != self.epochs:
            self.epochs = self.time_plan.epochs
            stretch_schedule(sched, self.cfg, self.steps_per_epoch, self.epochs)
        if first and not self.cfg.quiet and self.dist.is_main:
            log.info(f"train.time: the first epoch took {pace:.3g} s; training {epochs_text(self.epochs)} in all "
                     "(re-counted after every epoch from the recent epochs' pace)")
        if self.dist.is_main:
            RF.RunFolder(self.out).update_settings(time_plan=self.time_plan.to_dict(), epochs=self.epochs)

    def eta_s(self, history: Sequence[dict[str, float]], epochs_done: int) -> float:
        """Seconds left at the recent epochs' pace (the one train.time re-counts by); NaN before any."""
        times = [row["time_s"] for row in history if "time_s" in row]
        return recent_pace(times) * (self.epochs - epochs_done) if times else float("nan")


def duration_text(seconds: float) -> str:
    """'12 min' from 90 s on, else '40 s'."""
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def epochs_text(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"
