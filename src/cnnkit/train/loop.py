"""One epoch of training: a small function over a ``StepSetup`` (cnnkit.engine.step)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from cnnkit.engine.device import autocast
from cnnkit.engine.scored import LossFn
from cnnkit.engine.step import StepSetup
from cnnkit.errors import TrainingError

Progress = Callable[[int, Mapping[str, float]], None]


def train_one_epoch(
    model: nn.Module,
    loader: Any,
    setup: StepSetup,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    loss_fn: LossFn,
    *,
    generator: torch.Generator,
    on_batch: Progress | None = None,
    after_step: Callable[[], None] | None = None,
    frozen_bn: Sequence[nn.Module] = (),
) -> dict[str, float]:
    """One pass over ``loader``; returns {'train_loss', 'images_per_s', 'lr'}.

    ``after_step`` runs after each optimizer step (the weight average's update). ``frozen_bn``
    BatchNorm layers stay in eval mode: they normalise with their (pretrained) running statistics,
    which small batches of a new task would otherwise overwrite; their scale and shift still train.
    """
    model.train()
    for bn in frozen_bn:
        bn.eval()
    total, seen, start = 0.0, 0, time.perf_counter()
    for step, batch in enumerate(loader):
        images, target = setup.inputs(batch, generator=generator)
        with autocast(setup.device, setup.precision):
            output = model(images)
        loss = loss_fn(setup.prediction(output), target)
        if not torch.isfinite(loss):
            # A user-facing condition (too high a learning rate, bad data), so one line from the CLI.
            raise TrainingError(f"the training loss became {loss.item()} at batch {step} of this epoch. Lower "
                                f"train.lr (e.g. by 10x), or run `cnnkit check-data` on the annotations. The last "
                                f"completed epoch's checkpoint is kept.")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if after_step is not None:
            after_step()
        n = images.shape[0]
        total, seen = total + loss.item() * n, seen + n
        if on_batch is not None:
            on_batch(n, {"loss": total / seen, "img/s": seen / (time.perf_counter() - start)})
    elapsed = time.perf_counter() - start
    return {"train_loss": total / max(seen, 1), "images_per_s": seen / max(elapsed, 1e-9),
            "lr": opt.param_groups[-1]["lr"]}


class EpochBar:
    """A tqdm bar per epoch (or nothing when quiet / not the main process)."""

    def __init__(self, epoch: int, epochs: int, total: int, *, disable: bool) -> None:
        self.args = {"total": total, "desc": f"epoch {epoch + 1}/{epochs}", "unit": "img", "leave": False,
                     "disable": disable, "dynamic_ncols": True}
        self.bar: Any = None

    def __enter__(self) -> EpochBar | None:
        from tqdm.auto import tqdm

        self.bar = tqdm(**self.args)
        return self

    def update_with(self, n: int, logs: dict[str, float]) -> None:
        self.bar.update(n)
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()}, refresh=False)

    def __exit__(self, *exc: Any) -> None:
        self.bar.close()
