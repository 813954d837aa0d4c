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

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from cnnkit.config import DataConfig, TrainConfig, from_mapping, split_options
from cnnkit.data.augment import Augment
from cnnkit.data.table import AnnotationTable
from cnnkit.engine.device import resolve_device
from cnnkit.io import run_folder as RF
from cnnkit.train import commit as C
from cnnkit.train.choose_views import choose_views
from cnnkit.train.distributed import DistContext, distributed
from cnnkit.train.ensemble import refuse_single_run, run_ensemble
from cnnkit.train.epochs import EpochRunner
from cnnkit.train.job import Run as Run
from cnnkit.train.job import TrainingJob as TrainingJob
from cnnkit.train.job import check_tables
from cnnkit.train.job import table_files as table_files
from cnnkit.train.parts import assemble_parts, build_for_table
from cnnkit.train.resolve import resolve_augment as resolve_augment
from cnnkit.train.resolve import resolve_job, timed_before_training
from cnnkit.train.start import holding_folder, prepare_folder, start_state
from cnnkit.train.uncertainty import calibrate_run

log = logging.getLogger("cnnkit")


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


def run_job(job: TrainingJob, dist: DistContext | None = None, *,
            extra_files: Mapping[str, str] | None = None) -> Run:
    """Build the model (seeded), the loaders and the loss once; train; return the ``Run``.

    Nothing but the folder's lock is written before the model is built, so a bad spec leaves no run
    folder behind. ``extra_files`` ({name: text}) are written into the run folder with ``settings.json``.
    """
    if job.cfg.ensemble > 1:  # N members into one folder, each an ordinary run (train/ensemble.py)
        done = run_ensemble(job, dist, extra_files or {}, train_member=run_job)
        return Run(job.out_dir, done.history, done.manifest, done.manifest, interrupted=done.interrupted)
    refuse_single_run(job.out_dir)
    started = job.clock()  # train.time counts from here: start-up and measuring are part of the run
    C.check_not_inputs(job.out_dir, job.inputs)
    check_tables(job.train, job.val, None if isinstance(job.data.crop, str) else job.data.crop_settings)
    with distributed(dist, job.cfg.device) as ctx, holding_folder(job.out_dir, ctx):
        device = ctx.device or resolve_device(job.cfg.device)
        job = resolve_job(job, device, ctx, started)  # every "auto" -> a value, logged once
        # The run draws initial weights and dropout masks from the global RNG, seeded here inside a
        # fork so the caller's RNG state is left as it was.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(job.cfg.seed)
            net, weights_norm = build_for_table(job.model, job.train, job.data, job.head, job.pretrained)
            if weights_norm is not None and job.normalisation is None:  # the pixels the weights were trained on
                job = replace(job, normalisation=weights_norm)
            if ctx.is_distributed:
                torch.manual_seed(ctx.rank_seed(job.cfg.seed))  # but each rank its own dropout masks
            parts = replace(assemble_parts(net, job, device, ctx), started_s=started)
            runner = EpochRunner(parts, job.cfg, job.out_dir, ctx, clock=job.clock)
            state = start_state(job, runner, ctx)  # refuses another run's folder before anything in it is replaced
            runner.length.speed = timed_before_training(job, device, ctx, left=runner.epochs - state.epochs_done)
            if ctx.is_main:
                prepare_folder(job, net, device, runner.epochs, extra_files or {})
            state = runner.run(state)
            if ctx.is_main and not state.interrupted:  # crop models: two-pass or full-frame, measured on val
                scoring = runner.setup.for_inference()  # as predict scores: its figures are the user's
                choose_views(job.out_dir, scoring, job.val, grayscale=job.data.grayscale, files=(RF.BEST, RF.LAST),
                             batch_size=job.cfg.resolved_batch_size, quiet=job.cfg.quiet)
                calibrate_run(job.out_dir, scoring, job.val, grayscale=job.data.grayscale,  # <name>_uncertainty
                              letterbox=job.data.letterbox, files=(RF.BEST, RF.LAST),
                              batch_size=job.cfg.resolved_batch_size, quiet=job.cfg.quiet)
    folder = RF.RunFolder(job.out_dir)
    return Run(folder.path, state.history_frame(), folder.best, folder.last,
               interrupted=state.interrupted, model=runner.model)
