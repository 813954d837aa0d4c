"""One timed training epoch through the code ``fit`` runs, for the performance scripts.

``train_parts`` builds the model, ``StepSetup``, SGD (momentum 0.9, nesterov, lr 1e-4 at a constant
rate) and the MSE landmark loss; ``epoch`` runs ``cnnkit.train.loop.train_one_epoch`` over any
loader (or list of batches) and reports images/s, the share of the epoch the loop waited for data,
and the CPU the training process and the loader workers burned per image.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from bench.harness.images import K
from bench.harness.machine import children, cpu_seconds

SIZE = (64, 92)  # (width, height): the seed's input


def train_parts(arch: str, precision: str, channels_last: bool, size: tuple[int, int] = SIZE,
                device: torch.device | None = None) -> tuple[Any, ...]:
    """(model, setup, optimizer, scheduler, loss) as fit builds them, at a constant learning rate."""
    from cnnkit.data.augment import Augment
    from cnnkit.engine import tensors as T
    from cnnkit.engine.step import StepSetup
    from cnnkit.model.builder import build_model
    from cnnkit.train.losses import make_loss

    device = device or torch.device("cpu")
    torch.manual_seed(0)
    model = build_model(arch, size=size, outputs=2 * K).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    norm = T.default_normalisation(3)
    setup = StepSetup(task="landmarks", size=size, mean=tuple(norm["mean"]), std=tuple(norm["std"]),
                      device=device, precision=precision, channels_last=channels_last, augment=Augment())
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return model, setup, opt, sched, make_loss("landmarks", "mse")


class TimedLoader:
    """Iterates ``inner`` (calling ``set_epoch`` first when it has a sampler) and adds up the
    seconds the consumer waited in ``next()``, i.e. time the model was idle for lack of data."""

    def __init__(self, inner: Iterable[Any], epoch: int = 0) -> None:
        self.inner, self.waited, self.epoch = inner, 0.0, epoch

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        sampler = getattr(self.inner, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)  # type: ignore[union-attr]
        it = iter(self.inner)
        while True:
            t = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            self.waited += time.perf_counter() - t
            yield batch


def epoch(parts: tuple[Any, ...], loader: Any, n_epoch: int) -> dict[str, float]:
    """One timed epoch: images/s, fraction of the time spent waiting for data, CPU ms per image of
    the training process and of its children (the loader workers), from /proc."""
    from cnnkit.train.loop import train_one_epoch

    model, setup, opt, sched, loss = parts
    timed = TimedLoader(loader, n_epoch)
    gen = torch.Generator().manual_seed(n_epoch)
    me = os.getpid()
    before, main_before = cpu_seconds(children(me)), cpu_seconds([me])
    t = time.perf_counter()
    res = train_one_epoch(model, timed, setup, opt, sched, loss, generator=gen)
    wall = time.perf_counter() - t
    seen = max(res["images_per_s"] * wall, 1)
    return {"ips": res["images_per_s"], "wait": timed.waited / wall,
            "main_cpu_ms": 1000 * (cpu_seconds([me]) - main_before) / seen,
            "worker_cpu_ms": 1000 * (cpu_seconds(children(me)) - before) / seen}  # fmt: skip
