"""``fit``: one call from a spec (or model) and tables to a run folder with checkpoints.

The run folder's files are named, read and written by ``cnnkit.io.run_folder`` (its docstring draws
the layout).

One run per folder: the lock refuses a second run while the first lives, and a start without
``resume`` refuses a folder that holds a run's results unless ``overwrite`` (``commit.check_unused``);
no run writes over one of its own inputs (``commit.check_not_inputs``). Before the first epoch a probe
write checks that the folder takes the files (``commit.preflight``), and the batch is checked to fit
in memory (``cnnkit.model.memory``).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from cnnkit.config import CropConfig, DataConfig, TrainConfig, from_mapping, parse_duration, split_options
from cnnkit.data.augment import Augment
from cnnkit.data.table import AnnotationTable
from cnnkit.engine.device import resolve_device
from cnnkit.errors import ConfigError, DataError
from cnnkit.io import run_folder as RF
from cnnkit.model.net import SpecNet
from cnnkit.train import commit as C
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
from cnnkit.train.choose_views import choose_views
from cnnkit.train.distributed import DistContext, distributed
from cnnkit.train.epochs import EpochRunner
from cnnkit.train.parts import assemble_parts, build_for_table
from cnnkit.train.start import check_memory, holding_folder, prepare_folder, start_state
from cnnkit.train.uncertainty import calibrate_run

log = logging.getLogger("cnnkit")


@dataclass
class Run:
    """What ``fit`` returns: the history and where the checkpoints are."""

    out_dir: Path
    history: pd.DataFrame
    best: Path
    last: Path
    interrupted: bool = False
    model: nn.Module | None = field(default=None, repr=False)

    @property
    def metrics(self) -> dict[str, float]:
        """The last epoch's row as a dict."""
        return {} if self.history.empty else self.history.iloc[-1].to_dict()


def fit(
    model: Any,
    train: AnnotationTable,
    val: AnnotationTable | None = None,
    *,
    out_dir: str | Path = "runs/exp",
    head: Any = None,
    augment: Augment | Mapping[str, Any] | str | None = "auto",
    resume: bool | str | Path = False,
    overwrite: bool = False,
    pretrained: str | Path | None = None,
    normalisation: Mapping[str, Sequence[float]] | None = None,
    dist: DistContext | None = None,
    clock: Callable[[], float] = time.monotonic,
    **options: Any,
) -> Run:
    """Train ``model`` on ``train``; validate on ``val`` each epoch; write a run folder.

    The keyword front door for people: it validates the options into ``DataConfig`` and
    ``TrainConfig`` once and hands a ``TrainingJob`` to ``run_job`` (which experiment files
    call directly with their own configs).

    Args:
        model: a preset name ('resnet18'), a spec list, a path to a YAML/JSON spec, or a module
            from ``build_model`` (its outputs must match the table).
        train, val: tables from ``read_annotations``; the task (landmarks or classes) and the
            number of outputs come from ``train``.
        out_dir: the run folder (created). One run per folder: a folder in use by a live run is refused
            (naming it), and so is one holding a run's results unless ``resume`` or ``overwrite``.
        head: output head for specs ('flatten', 'gap', 'heatmap'); None = the one rule of
            ``cnnkit.model.defaults.default_head`` (heatmap for landmarks on a preset backbone).
        augment: an ``Augment``, a mapping of its fields, None (no augmentation) or 'auto' (the
            default): ``Augment.default_landmarks()`` for landmark tables — rotation, scale, shift,
            brightness/contrast, and flips when the table declares left/right ``flip_pairs`` — and
            none for classes. Off at evaluation.
        resume: True to continue the run in ``out_dir`` from ``last``; or a run folder path.
        overwrite: replace the run ``out_dir`` holds (its files are removed when this run starts).
        pretrained: a torchvision/timm ResNet weights file for the matching preset.
        normalisation: {'mean': [...], 'std': [...]} per channel; None = the default for the channels.
        dist: the process group to train in; None = ``DistContext.from_env()``: one process, or
            DDP under torchrun (started here and ended at the end). ``batch_size`` is per process.
        clock: seconds, for ``train.time`` and ``checkpoint_every: Mmin`` (tests give a fake one).
        **options: ``DataConfig`` fields (size=(w, h), grayscale, letterbox, cache, workers, crop: 'auto'
            (default: crop training for small subjects in large frames), False, True, 'WxH' or a
            mapping; docs/resolution.md) and
            ``TrainConfig`` fields (epochs, batch_size, lr, optimizer, schedule, loss, seed,
            device, precision, channels_last, compile, quiet, ...). Unknown names are errors.
    """
    data_opts, train_opts, rest = split_options(options)
    if rest:
        from_mapping(TrainConfig, rest, where="fit")  # raises with a did-you-mean
    job = TrainingJob(model=model, train=train, val=val, data=from_mapping(DataConfig, data_opts, where="fit"),
                      cfg=from_mapping(TrainConfig, train_opts, where="fit"), augment=resolve_augment(augment, train),
                      out_dir=Path(out_dir), head=head, pretrained=pretrained, normalisation=normalisation,
                      resume=resume, overwrite=overwrite, inputs=table_files(train, val), clock=clock)
    return run_job(job, dist)


def table_files(*tables: AnnotationTable | None) -> tuple[Path, ...]:
    """The annotation files the tables were read from (a run never writes over them)."""
    return tuple(Path(t.source) for t in tables if t is not None and isinstance(t.source, str) and Path(t.source).is_file())


@dataclass(frozen=True)
class TrainingJob:
    """One training run, fully specified and validated: what ``run_job`` needs and nothing else."""

    model: Any  # preset name, spec list, spec file or a built module
    train: AnnotationTable
    val: AnnotationTable | None
    data: DataConfig
    cfg: TrainConfig
    augment: Augment
    out_dir: Path
    head: Any = None
    pretrained: str | Path | None = None
    normalisation: Mapping[str, Sequence[float]] | None = None
    resume: bool | str | Path = False
    overwrite: bool = False  # replace the run the folder holds
    inputs: tuple[Path, ...] = ()  # the files the run reads (experiment, annotations, splits): never written
    time_plan: TimePlan | None = None  # what train.time resolved to (set by run_job)
    clock: Callable[[], float] = time.monotonic  # seconds; train.time and checkpoint_every count by it

    def __post_init__(self) -> None:
        if self.resume and self.overwrite:
            raise ConfigError("resume and overwrite: choose one (resume continues the run in the folder, "
                              "overwrite replaces it)")


def run_job(job: TrainingJob, dist: DistContext | None = None, *,
            extra_files: Mapping[str, str] | None = None) -> Run:
    """Build the model (seeded), the loaders and the loss once; train; return the ``Run``.

    Nothing but the folder's lock is written before the model is built, so a bad spec leaves no run
    folder behind. ``extra_files`` ({name: text}) are written into the run folder with ``settings.json``.
    """
    from cnnkit.train.ensemble import refuse_single_run, run_ensemble  # train/ensemble calls back run_job

    if job.cfg.ensemble > 1:  # N members into one folder, each an ordinary run (train/ensemble.py)
        done = run_ensemble(job, dist, extra_files or {}, train_member=run_job)
        return Run(job.out_dir, done.history, done.manifest, done.manifest, interrupted=done.interrupted)
    refuse_single_run(job.out_dir)
    started = job.clock()  # train.time counts from here: start-up and measuring are part of the run
    C.check_not_inputs(job.out_dir, job.inputs)
    job = _with_auto_crop(job)
    _check_tables(job.train, job.val, job.data.crop_settings)
    if not job.cfg.quiet and os.environ.get("RANK", "0") == "0":
        _log_flip_pairs(job.train, job.augment)
    job = _with_pretrained_rates(job)
    with distributed(dist, job.cfg.device) as ctx, holding_folder(job.out_dir, ctx):
        device = ctx.device or resolve_device(job.cfg.device)
        job = _with_size_and_batch(job, device, ctx, started)
        # The run draws initial weights and dropout masks from the global RNG, seeded here inside a
        # fork so the caller's RNG state is left as it was.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(job.cfg.seed)
            net, weights_norm = build_for_table(job.model, job.train, job.data, job.head, job.pretrained)
            if weights_norm is not None and job.normalisation is None:  # the pixels the weights were trained on
                job = dataclasses.replace(job, normalisation=weights_norm)
            if ctx.is_distributed:
                torch.manual_seed(ctx.rank_seed(job.cfg.seed))  # but each rank its own dropout masks
            parts = dataclasses.replace(assemble_parts(net, job, device, ctx), started_s=started)
            runner = EpochRunner(parts, job.cfg, job.out_dir, ctx, clock=job.clock)
            state = start_state(job, runner, ctx)  # refuses another run's folder before anything in it is replaced
            runner.speed = _timed_before_training(job, device, ctx, left=runner.epochs - state.epochs_done)
            if ctx.is_main:
                prepare_folder(job, net, device, runner.epochs, extra_files or {})
            state = runner.run(state)
            if ctx.is_main and not state.interrupted:  # crop models: two-pass or full-frame, measured on val
                choose_views(job.out_dir, runner.setup, job.val, grayscale=job.data.grayscale, files=(RF.BEST, RF.LAST),
                             batch_size=job.cfg.resolved_batch_size, quiet=job.cfg.quiet)
                calibrate_run(job.out_dir, runner.setup, job.val, grayscale=job.data.grayscale,  # <name>_uncertainty
                              letterbox=job.data.letterbox, files=(RF.BEST, RF.LAST),
                              batch_size=job.cfg.resolved_batch_size, quiet=job.cfg.quiet)
    folder = RF.RunFolder(job.out_dir)
    return Run(folder.path, state.history_frame(), folder.best, folder.last,
               interrupted=state.interrupted, model=runner.model)


def _log_flip_pairs(train: AnnotationTable, augment: Augment) -> None:
    """One line: the left/right pairs of the landmarks (inferred from the names by default) and whether
    training mirrors images with them."""
    if train.task != "landmarks":
        return
    if not train.flip_pairs:
        log.info(f"landmarks: {len(train.landmarks)} points, no left/right pairs in their names, so no mirrored "
                 "images (declare them: data.flip_pairs: [[left_x, right_x], ...])")
        return
    pairs = ", ".join(f"{a}/{b}" for a, b in train.flip_pairs)
    mirrored = "training mirrors images, partners swapped" if augment.flip else "augment.flip is off"
    log.info(f"landmarks: {len(train.landmarks)} points, left/right pairs {pairs} ({mirrored}; "
             "data.flip_pairs: none turns the pairs off)")


def _with_auto_crop(job: TrainingJob) -> TrainingJob:
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
    if crop is not None and not job.cfg.quiet:
        log.info(f"data.crop: auto -> on ({why}; data.crop: false for the whole frame resized; docs/resolution.md)")
    return dataclasses.replace(job, data=dataclasses.replace(job.data, crop=crop))


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
    if _may_shorten(job):
        from cnnkit.data.sizing import AUTO_AREA, auto_size

        short = dataclasses.replace(default, data=dataclasses.replace(default.data, size=auto_size(job.train, AUTO_AREA // 2)),
                                    cfg=dataclasses.replace(default.cfg, batch_size=SHORT_BATCH_SIZE))

    check_memory(default, device)  # before measuring it: a size that cannot fit is refused, not tried
    budget_s = parse_duration(job.cfg.time)

    def candidate(recipe: str, probe: TrainingJob) -> Candidate:
        return Candidate(recipe, probe.data.frame, probe.cfg.resolved_batch_size,
                         lambda: ctx.gather(_measure_speed(probe, device, ctx, timed_seconds(budget_s)))[0])

    return plan_time(budget_s, candidate("default", default),
                     None if short is None else candidate("short", short),
                     elapsed_s=lambda: ctx.gather(job.clock() - started)[0])


def _timed_before_training(job: TrainingJob, device: torch.device, ctx: DistContext, *, left: int) -> Speed | None:
    """A few steps and validation batches timed on a throw-away copy, so the length line says how long
    the run will take here ("about 12 min"). Not with train.time (its plan measured already), ``quiet``
    (nobody reads it), nothing left to train, or several processes (each would time its own share)."""
    if job.cfg.quiet or job.time_plan is not None or left <= 0 or ctx.is_distributed:
        return None
    return _measure_speed(job, device, ctx, min_timed_s=0.0)  # WARMUP_STEPS + MIN_TIMED_STEPS steps


def _may_shorten(job: TrainingJob) -> bool:
    """Whether ``train.time`` may choose the short-budget size and batch: where they were measured
    (whole-frame landmark runs) and only when the user left both to the library."""
    return (job.train.task == "landmarks" and job.data.crop_settings is None and job.data.size is None
            and job.cfg.batch_size is None and not isinstance(job.model, nn.Module))


def _measure_speed(job: TrainingJob, device: torch.device, ctx: DistContext, min_timed_s: float) -> Speed:
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


def _check_tables(train: AnnotationTable, val: AnnotationTable | None, crop: CropConfig | None = None) -> None:
    if train.task == "classes" and crop is not None:
        raise ConfigError("data.crop is for landmark tables (views are placed around the points); this table holds "
                          "classes. Remove data.crop (classes train on the whole frame resized to data.size).")
    if train.task == "none":
        raise DataError(f"{train.source}: the training table has neither landmarks nor class labels")
    if len(train) == 0:
        raise DataError(f"{train.source}: the training table is empty")
    for table in (train, val):
        if table is not None:
            _check_finite(table)
    if val is None:
        return
    if val.task != train.task or val.landmarks != train.landmarks or val.classes != train.classes:
        raise DataError(
            f"validation table {val.source} does not match training table {train.source}: "
            f"task {val.task} vs {train.task}, landmarks {list(val.landmarks)[:4]}... vs "
            f"{list(train.landmarks)[:4]}..., classes {list(val.classes)} vs {list(train.classes)}"
        )


def _check_finite(table: AnnotationTable) -> None:
    """Infinite landmarks would end training in NaN losses: refuse them up front, naming row and column."""
    if table.task != "landmarks":
        return
    xs, ys = table.point_columns
    values = table.df[xs + ys].to_numpy(dtype=np.float64)
    bad = np.argwhere(np.isinf(values))
    if len(bad):
        row, col = bad[0]
        raise DataError(f"{table.source}: row {row} ({table.df['image'].iloc[row]}), column {(xs + ys)[col]}: "
                        f"landmark is {values[row, col]}; {len(bad)} infinite value(s) in all. Fix or blank them "
                        f"(blank = missing); `cnnkit check-data` lists them.")
