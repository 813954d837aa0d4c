"""``train.time``: a wall-time budget turned into a training length, and into a recipe when it is short.

Before training, the run times a few real training steps (images read, augmented, forward,
backward, optimizer step) and a few validation batches on its own device (``measure_speed``), and
plans the epochs that fit in the time left, so the cosine schedule ends when the time does.

When the default recipe would get fewer than ``SHORT_BUDGET_STEPS`` steps in that time, and the
input size and batch are left to the library, a whole-frame landmark run takes the short-budget
recipe instead: half the default pixels and a batch of 8. At the CPU time of the earlier 60-epoch
lips-via and 40-epoch faces68 experiment files (about 400-900 steps of the defaults) it beat both
files and the defaults; at the defaults' 2,000 steps the defaults win (docs/ACCURACY.md, "Equal
CPU time"). Crop and class runs keep their recipe (not measured there) and only get the length.

After every epoch the epochs are re-counted (``recount``) from the real pace of the recent epochs
and the time left, and the schedule is laid over the new length: a few timed steps miss part of
an epoch's cost, and a shared machine changes speed during a run (the epochs of one run on the
2-core CPU took 6.6 to 12 s): a length fixed after the first epoch overran its budget by a fifth.

The plan is written to ``settings.json``; a resume reads it back instead of measuring again, so
the resumed run keeps its recipe (size, batch) and schedule on any machine, and counts the time
its committed epochs took as spent (``time_used``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

from cnnkit.config import DEFAULT_MIN_STEPS, TrainConfig
from cnnkit.engine.inference import run_inference, validation_strategy
from cnnkit.errors import ConfigError
from cnnkit.rng import make_generator
from cnnkit.train.loop import train_one_epoch
from cnnkit.train.optim import make_optimizer

#: Below this many steps of the defaults, the short-budget recipe did better at equal time.
SHORT_BUDGET_STEPS = DEFAULT_MIN_STEPS // 2
SHORT_BATCH_SIZE = 8
#: The share of the budget planned for epochs: the rest is kept for the end of the run (the last
#: commit, the test split, the plots and the report).
PLANNED_SHARE = 0.95
#: The re-count paces the epochs left by the mean time of this many recent ones: recent enough to
#: follow a machine that slows down, enough of them not to chase one slow epoch.
PACE_EPOCHS = 5

WARMUP_STEPS = 2  # not timed: the first batches pay for lazy start-up (allocator, caches, kernels)
MIN_TIMED_STEPS = 8
MIN_TIMED_S = 2.0  # at most; a short budget times for 1% of itself (each recipe)
TIMED_SHARE = 0.01
MAX_TIMED_STEPS = 64
VAL_PROBE_BATCHES = 2


@dataclass(frozen=True)
class Speed:
    """One recipe's measured cost on this machine."""

    step_s: float  # one training step, steady state, reading and augmenting included
    val_s: float  # one validation pass over the whole validation table (0 without one)
    steps_per_epoch: int

    @property
    def epoch_s(self) -> float:
        return self.step_s * self.steps_per_epoch + self.val_s


@dataclass(frozen=True)
class Candidate:
    """A recipe the plan may choose: its input size and batch, and how to measure it."""

    recipe: str  # 'default' or 'short'
    size: tuple[int, int]
    batch_size: int
    measure: Callable[[], Speed]


@dataclass(frozen=True)
class TimePlan:
    """What ``train.time`` resolved to; kept in settings.json so a resume repeats it."""

    budget_s: float
    recipe: str
    size: tuple[int, int]
    batch_size: int
    epochs: int
    steps_per_epoch: int
    step_s: float
    epoch_s: float
    default_steps: int  # the steps the default recipe would have had in the same time
    setup_s: float = 0.0  # from the run's start to the end of planning (start-up and measuring)
    recounted: bool = False  # the epochs re-counted from the real epochs' pace (``recount``)

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def describe(self) -> str:
        why = (f"the defaults would get {self.default_steps:,} steps, under {SHORT_BUDGET_STEPS:,}: "
               f"the short-budget recipe, {self.size[0]}x{self.size[1]} at batch {self.batch_size} "
               "(docs/training.md, 'Short budgets')") if self.recipe == "short" else "the default recipe"
        return (f"train.time {_minutes(self.budget_s)}: {self.step_s:.3g} s a step and {self.epoch_s:.3g} s an "
                f"epoch measured here; {why}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "size": list(self.size)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TimePlan:
        return cls(**{**data, "size": tuple(data["size"])})


def plan_time(budget_s: float, default: Candidate, short: Candidate | None,
              elapsed_s: Callable[[], float]) -> TimePlan:
    """The recipe and epochs that fit in ``budget_s`` seconds counted from the run's start.

    ``short`` is None where the short-budget recipe does not apply (size or batch given, crop or
    class runs). ``elapsed_s`` is the time the run has taken so far (start-up and measuring count).
    """
    default_speed = speed = default.measure()
    default_epochs = epochs = _epochs_that_fit(budget_s, budget_s - elapsed_s(), speed.epoch_s)
    default_steps, chosen = default_epochs * default_speed.steps_per_epoch, default
    if short is not None and default_steps < SHORT_BUDGET_STEPS:
        chosen, speed = short, short.measure()
        epochs = _epochs_that_fit(budget_s, budget_s - elapsed_s(), speed.epoch_s)
    if epochs < 1:
        raise ConfigError(
            f"train.time {_minutes(budget_s)} is too short: one epoch takes about {speed.epoch_s:.0f} s here "
            f"({speed.steps_per_epoch} steps of {speed.step_s:.2g} s, plus validation) and "
            f"{elapsed_s():.0f} s went on start-up and measuring. Give more time, or set train.steps instead.")
    return TimePlan(budget_s=budget_s, recipe=chosen.recipe, size=chosen.size, batch_size=chosen.batch_size,
                    epochs=epochs, steps_per_epoch=speed.steps_per_epoch, step_s=speed.step_s,
                    epoch_s=speed.epoch_s, default_steps=default_steps, setup_s=elapsed_s())


def recount(plan: TimePlan, epochs_done: int, epoch_s: float, left_s: float) -> TimePlan:
    """``plan`` re-counted after an epoch: the ``epochs_done`` plus those that fit in the ``left_s``
    seconds of the budget left at ``epoch_s`` an epoch (the recent epochs' mean). A few timed steps
    miss what only a whole epoch shows (the loader's start, every validation row; off by up to 15%
    on the 2-core CPU), and a shared machine's speed drifts. Out of time, it ends the run now."""
    epochs = epochs_done + _epochs_that_fit(plan.budget_s, left_s, epoch_s)
    return dataclasses.replace(plan, epochs=epochs, epoch_s=epoch_s, recounted=True)


def recent_pace(epoch_times: list[float]) -> float:
    """Seconds an epoch, from the last ``PACE_EPOCHS`` epochs' times."""
    recent = epoch_times[-PACE_EPOCHS:]
    return sum(recent) / len(recent)


def time_used(plan: TimePlan, epoch_times: list[float]) -> float:
    """What a resumed run counts as spent: the first start's set-up and the committed epochs (the
    work lost to the interruption, and the resume's own start-up, come on top of the budget)."""
    return plan.setup_s + sum(epoch_times)


def _epochs_that_fit(budget_s: float, seconds_left: float, epoch_s: float) -> int:
    """Whole epochs in ``seconds_left``, less the end's share of the budget (``PLANNED_SHARE``)."""
    usable = seconds_left - (1 - PLANNED_SHARE) * budget_s
    return max(0, math.floor(usable / max(epoch_s, 1e-9)))


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.3g} min" if seconds >= 90 else f"{seconds:.0f} s"


def timed_seconds(budget_s: float) -> float:
    """How long to time the training steps of one recipe (after at least ``MIN_TIMED_STEPS``)."""
    return min(MIN_TIMED_S, budget_s * TIMED_SHARE)


def measure_speed(model: torch.nn.Module, setup: Any, loaders: Mapping[str, Any], loss_fn: Any,
                  cfg: TrainConfig, *, min_timed_s: float = MIN_TIMED_S,
                  clock: Callable[[], float] = time.perf_counter) -> Speed:
    """Time a few real training steps and validation batches of a throw-away ``model``.

    The steps go through ``train_one_epoch`` itself, so what is timed is what the run will do:
    at least ``MIN_TIMED_STEPS`` after ``WARMUP_STEPS`` untimed ones, and ``min_timed_s`` seconds
    by ``clock`` (seconds; tests give a fake one, so no decision depends on the machine's speed).
    """
    model = model.to(setup.device)
    train = loaders["train"]
    train.sampler.set_epoch(0)
    stamps: list[float] = []
    batches = _Batches(train, stamps, min_timed_s)
    opt = make_optimizer(model, cfg)
    constant = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    train_one_epoch(model, batches, setup, opt, constant, loss_fn, generator=make_generator(cfg.seed),
                    on_batch=lambda *_: stamps.append(clock()))
    timed = stamps[WARMUP_STEPS - 1:]  # from the end of the last warm-up step
    step_s = (timed[-1] - timed[0]) / max(1, len(timed) - 1)
    return Speed(step_s=step_s, val_s=_val_seconds(model, setup, loaders.get("val"), loss_fn, clock),
                 steps_per_epoch=max(1, len(train)))


def _val_seconds(model: torch.nn.Module, setup: Any, loader: Any, loss_fn: Any, clock: Callable[[], float]) -> float:
    """A whole validation pass, from the first ``VAL_PROBE_BATCHES`` batches (loader start included)."""
    if loader is None:
        return 0.0
    start = clock()
    run_inference(validation_strategy(model, setup), _First(loader, VAL_PROBE_BATCHES), loss_fn)
    probed = min(len(loader), VAL_PROBE_BATCHES)
    return (clock() - start) * len(loader) / max(1, probed)


class _Batches:
    """The training loader's batches, pass after pass, until enough steps are timed."""

    def __init__(self, loader: Any, stamps: list[float], min_timed_s: float) -> None:
        self.loader, self.stamps, self.min_timed_s = loader, stamps, min_timed_s

    def __iter__(self) -> Iterator[Any]:
        for batch in itertools.chain.from_iterable(itertools.repeat(self.loader)):
            timed = len(self.stamps) - WARMUP_STEPS
            if timed >= MAX_TIMED_STEPS or (timed >= MIN_TIMED_STEPS and
                                            self.stamps[-1] - self.stamps[WARMUP_STEPS - 1] >= self.min_timed_s):
                return
            yield batch


class _First:
    """The first ``n`` batches of a loader."""

    def __init__(self, loader: Any, n: int) -> None:
        self.loader, self.n = loader, n
        self.dataset, self.batch_size = loader.dataset, getattr(loader, "batch_size", None)

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(iter(self.loader), self.n)
