"""What a run does before its first epoch: hold its folder, check it may start there, check that the
batch fits in memory and that the folder takes files, then write the settings.

In ``run_job``'s order: ``holding_folder`` (the lock, ``cnnkit.train.lock``), ``check_memory`` (with
the input size and batch, before the model is built), ``start_state`` (resume, or a folder free for a
fresh start: ``commit.check_unused``), ``prepare_folder`` (``commit.preflight``, then
``settings.json`` and the caller's extra files).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from cnnkit.engine.device import describe_device
from cnnkit.errors import CnnkitError
from cnnkit.io import run_folder as RF
from cnnkit.model.builder import build_model
from cnnkit.model.memory import available_bytes, check_fits, footprint, on_meta
from cnnkit.model.net import SpecNet
from cnnkit.train import commit as C
from cnnkit.train.distributed import DistContext
from cnnkit.train.epochs import EpochRunner, RunState
from cnnkit.train.lock import RunLock
from cnnkit.train.parts import build_for_table

if TYPE_CHECKING:
    from cnnkit.train.job import TrainingJob

log = logging.getLogger("cnnkit")


def check_memory(job: TrainingJob, device: torch.device) -> TrainingJob:
    """Refuse an input size and batch whose training step cannot fit in ``device``'s memory, estimated on
    the meta device before anything is built (``cnnkit.model.memory``: the rule and its measurements)."""
    if isinstance(job.model, nn.Module) and not isinstance(job.model, SpecNet):
        return job  # a module of the caller's: it is built already and cnnkit cannot rebuild it on meta
    model = job.model.config() if isinstance(job.model, SpecNet) else job.model
    size, batch = job.data.frame, job.cfg.resolved_batch_size
    try:
        if isinstance(model, dict):
            config = dict(model)
            probe = on_meta(lambda: build_model(config.pop("spec"), **config))
        else:
            probe = on_meta(lambda: build_for_table(model, job.train, job.data, job.head, None)[0])
        found = footprint(probe, size, job.data.channels)
    except Exception as err:  # noqa: BLE001 - a layer that cannot run on the meta device: the real build goes on
        log.debug(f"no memory estimate for this model ({type(err).__name__}: {err})")
        return job
    need = found.training(batch, half=job.cfg.precision != "fp32")
    check_fits(need, available_bytes(device), f"training at {size[0]}x{size[1]} with batch {batch}",
               "Give a smaller data.size or train.batch_size.")
    return job


@contextlib.contextmanager
def holding_folder(out: Path, ctx: DistContext) -> Iterator[None]:
    """The run folder's lock, held by the main process (the only one that writes there) meanwhile."""
    if not ctx.is_main:
        yield
        return
    with RunLock.acquire(out):
        yield


def start_state(job: TrainingJob, runner: EpochRunner, ctx: DistContext) -> RunState:
    """The state to start from: the committed one with ``resume``; else a fresh start, once the main
    process found the output folder free (``commit.check_unused``; also when a resume reads another
    folder's state: the output folder's own run is not replaced by it). Every rank raises a refusal."""
    run_dir = Path(job.resume) if isinstance(job.resume, (str, Path)) else job.out_dir
    state = runner.resume_state(run_dir) if job.resume else RunState()
    if not job.resume or run_dir.resolve() != job.out_dir.resolve():
        refusal: CnnkitError | None = None
        if ctx.is_main:
            try:
                C.check_unused(job.out_dir, runner.identity, overwrite=job.overwrite)
            except CnnkitError as err:
                refusal = err
        refusal = ctx.gather(refusal)[0]
        if refusal is not None:
            raise refusal
    return state


def prepare_folder(job: TrainingJob, net: nn.Module, device: torch.device, epochs: int,
                    extra_files: Mapping[str, str]) -> None:
    C.preflight(job.out_dir, sum(t.numel() * t.element_size() for t in net.state_dict().values()))
    write_settings(job, net, epochs)
    for name, text in extra_files.items():
        RF.RunFolder(job.out_dir).write_text(name, text)
    if not job.cfg.quiet:
        log.info(describe_device(device))


def write_settings(job: TrainingJob, net: nn.Module, epochs: int) -> None:
    config = net.config() if isinstance(net, SpecNet) else {"module": type(net).__name__}
    train, val = job.train, job.val
    settings = {
        "model": config, "model_argument": job.model if isinstance(job.model, (str, list)) else None,
        "head": job.head, "data": job.data.to_dict(), "train": job.cfg.to_dict(), "epochs": epochs,
        "augment": job.augment.to_dict(),
        "time_plan": None if job.time_plan is None else job.time_plan.to_dict(),
        "train_table": {"source": train.source, "rows": len(train)},
        "val_table": None if val is None else {"source": val.source, "rows": len(val)},
    }
    RF.RunFolder(job.out_dir).write_settings(settings)
