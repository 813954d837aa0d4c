"""The speed candidates of issue 27: the run a data-only experiment file gets, built as ``fit`` builds it,
with one change (or a few) over the library's defaults.

A candidate is settings an experiment file can already hold (``train.precision``, ``channels_last``,
``compile``, ``data.cache``, ``model.pretrained``) plus the optimizer's implementation
(``cnnkit.train.optim.IMPLEMENTATIONS``: torch's per-tensor Adam on the CPU by default), which no
file can name yet: ``Trainee`` passes it to ``make_optimizer`` and ``adam_child`` runs ``cnnkit
train`` with it.

``build`` resolves the job as ``run_job`` does (``data.crop: auto``, ``data.size: auto``, batch 16)
and keeps the model, step set-up, loaders, loss, optimizer and a constant-rate schedule of one
candidate; ``Trainee.steps`` times training steps over fixed batches (the model alone: forward,
loss, backward, optimizer) and ``Trainee.epoch`` one epoch through the loaders (reading, decoding,
views, augmenting, the steps, then the validation pass), as ``metrics.csv``'s ``time_s`` counts it.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.harness.compare import LITE0_IMAGENET, experiment_file
from bench.harness.datasets import make_small_set


@dataclass(frozen=True)
class Candidate:
    """Settings over the library's defaults (experiment-file sections) and the optimizer's implementation."""

    data: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)
    model: Mapping[str, Any] = field(default_factory=dict)
    optimizer: str | None = None  # cnnkit.train.optim.IMPLEMENTATIONS; None: torch's default
    cache: bool = False  # data.cache in the candidate's own folder

    def sections(self, folder: Path) -> dict[str, dict[str, Any]]:
        """(model, data, train) sections of its experiment file, its cache under ``folder``."""
        data = {**self.data, **({"cache": str(folder / "cache")} if self.cache else {})}
        return {"model": dict(self.model), "data": data, "train": dict(self.train)}


#: v0.2's data-only default, pinned: fp32, the default memory layout (torch's per-tensor Adam, no cache).
#: Every other candidate is it with one change (or a few), so the ratios stay what they measured when
#: the library's defaults moved; ``default`` is what an experiment file with only ``data`` gets now.
BASELINE = "v02"
V02 = {"precision": "fp32", "channels_last": False}
NO_CACHE = {"cache": None}  # v0.2 decoded every image every epoch; data.cache: auto keeps them in memory now
FAST = {"precision": "bf16", "channels_last": True}
CANDIDATES: dict[str, Candidate] = {
    BASELINE: Candidate(train=V02, data=NO_CACHE),
    "default": Candidate(),
    "foreach": Candidate(train=V02, data=NO_CACHE, optimizer="foreach"),
    "fused": Candidate(train=V02, data=NO_CACHE, optimizer="fused"),
    "bf16": Candidate(train={**V02, "precision": "bf16"}, data=NO_CACHE),
    "channels_last": Candidate(train={**V02, "channels_last": True}, data=NO_CACHE),
    "bf16_cl": Candidate(train=FAST, data=NO_CACHE),
    "memory": Candidate(train=V02, data={"cache": "memory"}),
    "cache": Candidate(train=V02, cache=True),
    "compile": Candidate(train={**V02, "compile": True}, data=NO_CACHE),
    "lite0in": Candidate(train=V02, data=NO_CACHE, model=LITE0_IMAGENET),
    "default_cache": Candidate(cache=True),
    "default_lite0in": Candidate(model=LITE0_IMAGENET),
    "default_compile": Candidate(train={"compile": True}),
    "all": Candidate(train=FAST, optimizer="foreach", cache=True),
    "all_lite0in": Candidate(train=FAST, optimizer="foreach", cache=True, model=LITE0_IMAGENET),
    "all_fused": Candidate(train=FAST, optimizer="fused", cache=True),
    "all_compile": Candidate(train={**FAST, "compile": True}, optimizer="foreach", cache=True),
}
#: the candidates of a plain run (compile is timed on request: its first steps compile for minutes)
DEFAULT_SET = [c for c in CANDIDATES if "compile" not in c and c != "all_fused"]
SMALL_IMAGES = 300  # frames of the small-subject set (cnnkit demo --small-subject), as bench/accuracy/resolution.py
QUICK_SMALL_IMAGES = 12


def set_root(set_name: str, args: argparse.Namespace) -> Path:
    """The data root of ``set_name``: ``args.data_root``, or OUT/data for the small-subject set (made there)."""
    if set_name != "small":
        return Path(args.data_root)
    root = Path(args.out) / "data"
    make_small_set(root, QUICK_SMALL_IMAGES if args.quick else SMALL_IMAGES)
    return root


def resolved_job(job: Any) -> Any:
    """``job`` as ``run_job`` resolves it before building anything (``cnnkit.train.resolve``): crop,
    pretrained rates, input size, batch, on the device the job names."""
    from cnnkit.engine.device import resolve_device
    from cnnkit.train.distributed import DistContext
    from cnnkit.train.resolve import resolve_job

    return resolve_job(job, resolve_device(job.cfg.device), DistContext(), started=job.clock())


def load_job(set_name: str, name: str, args: argparse.Namespace, *, limit: int | None = None) -> Any:
    """The resolved ``TrainingJob`` of candidate ``name`` on ``set_name`` (its experiment file in
    OUT/<set>_<name>); ``limit`` keeps the first rows of train and val (quick runs)."""
    from cnnkit.experiment import load_experiment

    folder = Path(args.out) / f"{set_name}_{name}"
    path = experiment_file(folder, set_name, 0, args, **CANDIDATES[name].sections(folder),
                           data_root=set_root(set_name, args))
    exp = load_experiment(path)
    tables = exp.tables()
    if limit is not None:
        tables = {k: t.subset(np.arange(min(limit, len(t)))) for k, t in tables.items()}
    return resolved_job(exp.job(tables, quiet=True))


class Trainee:
    """One candidate's run, built once: model, set-up, loaders, loss, optimizer, schedule."""

    def __init__(self, job: Any, optimizer: str | None, device: torch.device | None = None) -> None:
        from cnnkit.train.distributed import DistContext
        from cnnkit.train.optim import make_optimizer
        from cnnkit.train.parts import assemble_parts, build_for_table

        device = device or torch.device("cpu")
        with torch.random.fork_rng():
            torch.manual_seed(job.cfg.seed)
            net, weights_norm = build_for_table(job.model, job.train, job.data, job.head, job.pretrained)
        if weights_norm is not None and job.normalisation is None:
            job = dataclasses.replace(job, normalisation=weights_norm)
        start = time.perf_counter()
        parts = assemble_parts(net, job, device, DistContext())
        self.build_s = time.perf_counter() - start  # the decoded cache is built here
        self.job, self.parts, self.setup = job, parts, parts.setup
        self.model = parts.model.to(device)
        if job.cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.opt = make_optimizer(self.model, job.cfg, implementation=optimizer)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda _: 1.0)
        self.step_model: Any = torch.compile(self.model) if job.cfg.compile else self.model
        backbone = getattr(self.model, "layers", self.model)
        self.frozen_bn = [m for m in backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)] \
            if parts.freeze_bn else []

    def first_batches(self, n: int) -> list[Any]:
        """The first ``n`` batches of the training loader's epoch 0 (uint8, as the loader gives them)."""
        loader = self.parts.loaders["train"]
        loader.sampler.set_epoch(0)
        out = []
        for batch in loader:
            out.append(batch)
            if len(out) == n:
                break
        return out

    def steps(self, batches: Sequence[Any], seed: int) -> tuple[float, float]:
        """(wall, CPU) seconds per training step over ``batches`` (no data loading). CPU: this process's,
        which other processes on a shared machine do not inflate (with one torch thread, the step's work)."""
        from cnnkit.rng import make_generator
        from cnnkit.train.loop import train_one_epoch

        wall, cpu = time.perf_counter(), time.process_time()
        train_one_epoch(self.step_model, batches, self.setup, self.opt, self.sched, self.parts.loss_fn,
                        generator=make_generator(seed), frozen_bn=self.frozen_bn)
        n = max(1, len(batches))
        return (time.perf_counter() - wall) / n, (time.process_time() - cpu) / n

    def validate(self) -> tuple[float, float]:
        """(wall, CPU) seconds of one validation pass (0 without a validation table)."""
        from cnnkit.engine.inference import run_inference, validation_strategy

        if "val" not in self.parts.loaders:
            return 0.0, 0.0
        wall, cpu = time.perf_counter(), time.process_time()
        run_inference(validation_strategy(self.step_model, self.setup), self.parts.loaders["val"], self.parts.loss_fn)
        return time.perf_counter() - wall, time.process_time() - cpu

    def epoch(self, n_epoch: int) -> tuple[float, float]:
        """(wall, CPU) seconds of one epoch through the loaders: training, then the validation pass."""
        from cnnkit.rng import make_generator
        from cnnkit.train.loop import train_one_epoch

        loader = self.parts.loaders["train"]
        loader.sampler.set_epoch(n_epoch)
        wall, cpu = time.perf_counter(), time.process_time()
        train_one_epoch(self.step_model, loader, self.setup, self.opt, self.sched, self.parts.loss_fn,
                        generator=make_generator(n_epoch), frozen_bn=self.frozen_bn)
        self.validate()
        return time.perf_counter() - wall, time.process_time() - cpu

@torch.no_grad()
def parameter_gap(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """The largest |difference| between two models' parameters, relative to the largest |parameter|."""
    gap = max(float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    return gap / max(float(p.abs().max()) for p in a.parameters())


def view_gap(a: Sequence[Any], b: Sequence[Any]) -> tuple[float, int]:
    """(mean, max) |difference| of the uint8 images of two lists of batches (the same rows and views)."""
    diffs = [(x["image"].to(torch.int16) - y["image"].to(torch.int16)).abs() for x, y in zip(a, b, strict=True)]
    every = torch.cat([d.flatten() for d in diffs]).float()
    return float(every.mean()), int(every.max())
