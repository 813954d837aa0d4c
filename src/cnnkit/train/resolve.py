"""Every "auto" of a ``TrainingJob`` resolved once, in one place, into the job that trains (``resolve_job``).

In order: ``data.crop: auto`` (crop training for small subjects in large frames), the backbone's rate
for classes from pretrained weights, then on the run's device the input size and batch (the
defaults, or under ``train.time`` the plan measured here or read back from the folder a resume
continues). ``augment: auto`` is resolved where the job is made (``resolve_augment``: it needs only
the table), the normalisation of pretrained weights where the network is built (``train.parts``).
Each decision that changes what trains is logged once, with its reason, by ``resolve_job``.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnkit.config import parse_duration
from cnnkit.data.augment import Augment
from cnnkit.data.memo import MEMORY, memo_budget
from cnnkit.data.table import AnnotationTable
from cnnkit.engine.device import training_arithmetic
from cnnkit.errors import ConfigError
from cnnkit.io import run_folder as RF
from cnnkit.model.net import SpecNet
from cnnkit.train.budget import (
    SHORT_BATCH_SIZE,
    VAL_PROBE_BATCHES,
    Candidate,
    Speed,
    TimePlan,
    measure_speed,
    plan_time,
    timed_seconds,
)
from cnnkit.train.distributed import DistContext
from cnnkit.train.job import TrainingJob
from cnnkit.train.parts import assemble_parts, build_for_table
from cnnkit.train.start import check_memory

log = logging.getLogger("cnnkit")


def resolve_job(job: TrainingJob, device: torch.device, ctx: DistContext, started: float) -> TrainingJob:
    """``job`` with every "auto" it holds replaced by a value, checked, and the decisions logged once
    (rank 0, unless quiet). ``started``: the run's start on ``job.clock`` (train.time counts from it)."""
    decisions: list[str] = []
    job = _with_auto_crop(job, decisions)
    decisions += _flip_pairs_line(job.train, job.augment)
    job = _with_pretrained_rates(job)
    job = _with_arithmetic(job, device, decisions)
    job = _with_cache(job, decisions)
    job = _with_size_and_batch(job, device, ctx, started)
    if not job.cfg.quiet and ctx.is_main:
        for line in decisions:
            log.info(line)
    return job


def _flip_pairs_line(train: AnnotationTable, augment: Augment) -> list[str]:
    """The left/right pairs of the landmarks (inferred from the names by default) and whether training
    mirrors images with them: one line for a landmark table, none for classes."""
    if train.task != "landmarks":
        return []
    if not train.flip_pairs:
        return [f"landmarks: {len(train.landmarks)} points, no left/right pairs in their names, so no mirrored "
                "images (declare them: data.flip_pairs: [[left_x, right_x], ...])"]
    pairs = ", ".join(f"{a}/{b}" for a, b in train.flip_pairs)
    mirrored = "training mirrors images, partners swapped" if augment.flip else "augment.flip is off"
    return [f"landmarks: {len(train.landmarks)} points, left/right pairs {pairs} ({mirrored}; "
            "data.flip_pairs: none turns the pairs off)"]


def _with_auto_crop(job: TrainingJob, decisions: list[str]) -> TrainingJob:
    """``data.crop: auto`` (the default) -> crop training for small subjects in large frames, else off.

    Off without looking when the input is fixed otherwise: ``data.size`` or ``letterbox`` given, or
    a built model (its input size is set). The decision is logged with its reason.
    """
    if not (isinstance(job.data.crop, str) and job.data.crop == "auto"):
        return job
    crop, why = None, "data.size, letterbox or a built model fixes the input"
    if job.data.size is None and not job.data.letterbox and not isinstance(job.model, nn.Module):
        from cnnkit.data.sizing import auto_crop

        crop, why = auto_crop(job.train)
    if crop is not None:
        decisions.append(f"data.crop: auto -> on ({why}; data.crop: false for the whole frame resized; "
                         "docs/resolution.md)")
    return dataclasses.replace(job, data=dataclasses.replace(job.data, crop=crop))


def _with_arithmetic(job: TrainingJob, device: torch.device, decisions: list[str]) -> TrainingJob:
    """``train.precision: auto`` and ``train.channels_last`` unset -> the device's measured default
    (``engine.device.training_arithmetic``), before the memory check and speed probe that depend on them."""
    precision, channels_last, line = training_arithmetic(device, job.cfg.precision, job.cfg.channels_last)
    if line is not None:
        decisions.append(line)
    return dataclasses.replace(job, cfg=dataclasses.replace(job.cfg, precision=precision, channels_last=channels_last))


def _with_cache(job: TrainingJob, decisions: list[str]) -> TrainingJob:
    """``data.cache: auto`` -> decoded images kept in memory (``cnnkit.data.memo``) when the loader
    decodes in this process; with loader workers (each would hold a copy) none."""
    if job.data.cache != "auto":
        return job
    cache = MEMORY if job.data.workers == 0 else None
    if cache is not None:
        budget = memo_budget() / 2**30
        decisions.append(f"data.cache: auto -> memory (each image decoded once, then kept: up to {budget:.3g} GiB "
                         "per split; a folder keeps them on disk, null decodes every epoch)")
    return dataclasses.replace(job, data=dataclasses.replace(job.data, cache=cache))


def _with_size_and_batch(job: TrainingJob, device: torch.device, ctx: DistContext, started: float) -> TrainingJob:
    """The input size and batch: as given, else the defaults, or under ``train.time`` the plan's
    (measured here, or read back from the folder a resume continues; cnnkit.train.budget)."""
    if job.cfg.time is None:
        return check_memory(_with_default_batch(_with_input_size(job)), device)
    plan = _stored_time_plan(job) or _new_time_plan(job, device, ctx, started)
    return check_memory(dataclasses.replace(job, data=dataclasses.replace(job.data, size=plan.size),
                                             cfg=dataclasses.replace(job.cfg, batch_size=plan.batch_size),
                                             time_plan=plan), device)


def _stored_time_plan(job: TrainingJob) -> TimePlan | None:
    """The plan a run being resumed was started with (its settings.json), if it committed an epoch."""
    if not job.resume:
        return None
    folder = RF.RunFolder(Path(job.resume) if isinstance(job.resume, (str, Path)) else job.out_dir)
    if not folder.state.is_file():
        return None
    stored = folder.read_settings().get("time_plan")
    return None if stored is None else TimePlan.from_dict(stored)


def _new_time_plan(job: TrainingJob, device: torch.device, ctx: DistContext, started: float) -> TimePlan:
    """Measure the default recipe (and the short one where it applies) and plan the epochs that fit.

    Under DDP every rank measures, and every decision uses rank 0's figures, so all ranks take the
    same branches (and collectives) and end with the same plan.
    """
    default = _with_default_batch(_with_input_size(job))
    short = None
    if may_shorten(job):
        from cnnkit.data.sizing import AUTO_AREA, auto_size

        short = dataclasses.replace(default, data=dataclasses.replace(default.data, size=auto_size(job.train, AUTO_AREA // 2)),
                                    cfg=dataclasses.replace(default.cfg, batch_size=SHORT_BATCH_SIZE))

    check_memory(default, device)  # before measuring it: a size that cannot fit is refused, not tried
    budget_s = parse_duration(job.cfg.time)

    def candidate(recipe: str, probe: TrainingJob) -> Candidate:
        return Candidate(recipe, probe.data.frame, probe.cfg.resolved_batch_size,
                         lambda: ctx.gather(measure_job_speed(probe, device, ctx, timed_seconds(budget_s)))[0])

    return plan_time(budget_s, candidate("default", default),
                     None if short is None else candidate("short", short),
                     elapsed_s=lambda: ctx.gather(job.clock() - started)[0])


def timed_before_training(job: TrainingJob, device: torch.device, ctx: DistContext, *, left: int) -> Speed | None:
    """A few steps and validation batches timed on a throw-away copy, so the length line says how long
    the run will take here ("about 12 min"). Not with train.time (its plan measured already), ``quiet``
    (nobody reads it), nothing left to train, or several processes (each would time its own share)."""
    if job.cfg.quiet or job.time_plan is not None or left <= 0 or ctx.is_distributed:
        return None
    return measure_job_speed(job, device, ctx, min_timed_s=0.0)  # WARMUP_STEPS + MIN_TIMED_STEPS steps


def may_shorten(job: TrainingJob) -> bool:
    """Whether ``train.time`` may choose the short-budget size and batch: where they were measured
    (whole-frame landmark runs) and only when the user left both to the library."""
    return (job.train.task == "landmarks" and job.data.crop_settings is None and job.data.size is None
            and job.cfg.batch_size is None and not isinstance(job.model, nn.Module))


def measure_job_speed(job: TrainingJob, device: torch.device, ctx: DistContext, min_timed_s: float) -> Speed:
    """``job``'s speed, timed on a throw-away copy of its model (the run's own start is untouched)."""
    val = job.val
    if val is not None and len(val):
        val = val.subset(np.arange(min(len(val), VAL_PROBE_BATCHES * job.cfg.resolved_batch_size)))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(job.cfg.seed)
        model = copy.deepcopy(job.model) if isinstance(job.model, nn.Module) else job.model
        net, weights_norm = build_for_table(model, job.train, job.data, job.head, job.pretrained)
        probe = dataclasses.replace(job, val=val, normalisation=job.normalisation or weights_norm)
        parts = assemble_parts(net, probe, device, ctx)
        speed = measure_speed(parts.model, parts.setup, parts.loaders, parts.loss_fn, job.cfg, min_timed_s=min_timed_s,
                              clock=job.clock)
    val_rows = 0 if job.val is None else len(job.val)
    return dataclasses.replace(speed, val_s=speed.val_s * val_rows / max(1, 0 if val is None else len(val)))


def _with_default_batch(job: TrainingJob) -> TrainingJob:
    return dataclasses.replace(job, cfg=dataclasses.replace(job.cfg, batch_size=job.cfg.resolved_batch_size))


def _with_input_size(job: TrainingJob) -> TrainingJob:
    """``data.size: auto`` (the default) -> the training images' aspect at 160x120's pixel count."""
    if job.data.size is not None:
        return job
    if isinstance(job.model, SpecNet):
        size = job.model.size  # a built model already has its input size
    else:
        from cnnkit.data.sizing import auto_size

        size = auto_size(job.train)
    return dataclasses.replace(job, data=dataclasses.replace(job.data, size=size))


#: A pretrained backbone's rate as a share of ``lr`` for CLASSES when ``backbone_lr`` is not set:
#: one rate for the backbone and the new head destroyed the features (hymenoptera, Lite0: 0.53 on
#: the validation split with 1e-3 for both, 0.92 with the backbone at 1e-4). Landmarks keep one
#: rate: the backbone at lr/10 was worse on both validation splits (lips-via 7.60 vs 7.25 px,
#: faces68 4.97 vs 3.74 px; docs/ACCURACY.md): locating points needs the features to move.
PRETRAINED_BACKBONE_LR_SHARE = 0.1


def _with_pretrained_rates(job: TrainingJob) -> TrainingJob:
    """Classes from pretrained weights with ``backbone_lr`` unset -> ``lr * PRETRAINED_BACKBONE_LR_SHARE``."""
    if (job.pretrained is None or job.train.task != "classes" or job.cfg.backbone_lr is not None
            or job.cfg.freeze_backbone):
        return job
    cfg = dataclasses.replace(job.cfg, backbone_lr=job.cfg.lr * PRETRAINED_BACKBONE_LR_SHARE)
    return dataclasses.replace(job, cfg=cfg)


def resolve_augment(augment: Augment | Mapping[str, Any] | str | None, train: AnnotationTable) -> Augment:
    """'auto' -> the measured best default for landmarks (docs/ACCURACY.md), none for classes.

    Flips join in only where the table names its left/right pairs: a mirrored face with unswapped
    labels would teach the network to confuse its sides.
    """
    if isinstance(augment, Augment):
        return augment
    if isinstance(augment, str):
        if augment != "auto":
            raise ConfigError(f"augment: expected 'auto', None, a mapping or an Augment. Received: {augment!r}")
        if train.task != "landmarks":
            return Augment()
        return Augment.default_landmarks(flip=bool(train.flip_pairs))
    return Augment.from_mapping(augment or {})


