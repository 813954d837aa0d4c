"""Ensembles: ``train.ensemble: N`` trains N models into one run folder; one thing to use afterwards.

Member ``k`` (from 1) is an ordinary run in ``<out>/member-k/`` (:func:`cnnkit.io.run_folder.member_folder`)
trained by :func:`cnnkit.train.fit.run_job` (passed in as ``train_member``: fit imports this module)
with ``train.seed + k - 1``: its own initial weights, batch order and augmentation draws, the same
data and split. The manifest ``<out>/ensemble.json``
(:mod:`cnnkit.io.ensemble`) lists the members and is rewritten after each one finishes. A member
that finished has ``member.json`` in its folder (removed before it trains again), so a killed
ensemble resumes member by member (``--resume``): a finished member is skipped, an unfinished one
continues from its last committed epoch, the others start. A folder that holds an ensemble (its
manifest or a member's run) is refused without ``resume`` or ``overwrite`` (which retrains every
member), before any member's file is touched; the main process holds the folder's lock meanwhile
(:mod:`cnnkit.train.lock`), and each member's run its member folder's. Under ``torchrun`` the members are
spread over the processes (member ``k`` on rank ``(k - 1) mod world size``), each process training
its members alone (not DDP), on its own GPU.

At the end, with a validation split, the ensemble scores it as ``predict`` will (each member with its
own strategy; the median point, the mean likelihood and the members' spread) and the signal that
ranks the validation errors best is calibrated to an expected error in px
(:func:`cnnkit.train.uncertainty.choose_calibration`); the manifest records it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from cnnkit.engine.device import resolve_device
from cnnkit.engine.ensemble import check_members, combine
from cnnkit.engine.inference import run_inference
from cnnkit.engine.metrics import point_errors
from cnnkit.engine.scored import Outputs, Scored
from cnnkit.engine.step import StepSetup
from cnnkit.errors import ConfigError
from cnnkit.io import run_folder as RF
from cnnkit.io.checkpoint import read_meta
from cnnkit.io.ensemble import EnsembleManifest, members_entry, write_manifest
from cnnkit.io.run_folder import member_folder
from cnnkit.train.commit import OVERWRITE_HINT, check_not_inputs
from cnnkit.train.distributed import DistContext, distributed
from cnnkit.train.job import TrainingJob
from cnnkit.train.start import holding_folder
from cnnkit.train.uncertainty import choose_calibration, describe, model_strategy, validation_loader

log = logging.getLogger("cnnkit")

#: How long a process that finished its members waits for the others (members may train for hours).
MEMBERS_WAIT = timedelta(hours=72)
MODEL_FILES = RF.CHECKPOINTS
MEMBER_MARK = RF.MEMBER_DONE  # written into a member's folder when it finished training


class MemberRun(Protocol):
    """What the ensemble needs of a member's run (``cnnkit.train.fit.Run``)."""

    history: pd.DataFrame
    interrupted: bool


TrainMember = Callable[..., MemberRun]  # run_job(job, dist, *, extra_files=...)


@dataclass(frozen=True)
class EnsembleResult:
    """The manifest written, every member's history (column ``member``), and whether a member was interrupted."""

    manifest: Path
    history: pd.DataFrame
    interrupted: bool


def run_ensemble(job: TrainingJob, dist: DistContext | None, extra_files: Mapping[str, str], *,
                 train_member: TrainMember) -> EnsembleResult:
    """Train the ``job.cfg.ensemble`` members of ``job`` (module docstring); return the manifest."""
    out, n = job.out_dir, job.cfg.ensemble
    check_not_inputs(out, job.inputs)
    with distributed(dist, job.cfg.device) as ctx, holding_folder(out, ctx):
        refusal = _refusal(job) if ctx.is_main else None
        refusal = ctx.gather(refusal)[0]
        if refusal is not None:  # every rank raises it, before any member's file is touched
            raise refusal
        interrupted = False
        for k in range(1 + ctx.rank, n + 1, ctx.world_size):  # member k on rank (k - 1) mod world size
            member = _member_job(job, k)
            if job.resume and finished(member.out_dir):
                if not job.cfg.quiet:
                    log.info(f"ensemble: member {k} of {n} finished before; skipped")
                continue
            _unmark(member.out_dir)
            if not job.cfg.quiet:
                log.info(f"ensemble: member {k} of {n} (seed {member.cfg.seed}) -> {member.out_dir}")
            run = train_member(member, DistContext(device=ctx.device) if ctx.is_distributed else ctx,
                               extra_files=extra_files)
            if run.interrupted:
                interrupted = True
                break
            RF.RunFolder(member.out_dir).write_text(MEMBER_MARK, json.dumps({"member": k, "seed": member.cfg.seed}))
            if not ctx.is_distributed:  # progress on disk after each member (under torchrun: at the end)
                _write(job)
        with ctx.patient(MEMBERS_WAIT) as group:  # who finished first waits for the others
            interrupted = any(ctx.gather(interrupted, group=group))
        if ctx.is_main:
            _write(job, calibrate=not interrupted, device=ctx.device)
    return EnsembleResult(out / RF.ENSEMBLE, _histories(out, n), interrupted)


def _refusal(job: TrainingJob) -> ConfigError | None:
    """Without resume or overwrite, a folder that holds an ensemble (its manifest, or a member that
    committed or finished) is refused as a whole: its members' runs are not started again one by one.
    So is a folder holding a single model's run (with overwrite, the manifest then hides that model)."""
    if job.resume or job.overwrite:
        return None
    folder = RF.RunFolder(job.out_dir)
    single = [] if folder.is_ensemble else folder.present((RF.STATE, *MODEL_FILES))
    if single:
        return ConfigError(f"{job.out_dir} holds a single model's run ({', '.join(single)}). Nothing was replaced: "
                           f"choose another output folder, or {OVERWRITE_HINT} to train the ensemble there.")
    held = [RF.ENSEMBLE] if folder.is_ensemble else []
    held += [member_folder(k) for k in range(1, job.cfg.ensemble + 1)
             if folder.member(k).present((MEMBER_MARK, RF.STATE, *MODEL_FILES))]
    if not held:
        return None
    return ConfigError(f"{job.out_dir} already holds an ensemble ({', '.join(held)}). Nothing was replaced: "
                       f"--resume (resume=True) trains its unfinished members, {OVERWRITE_HINT} trains every member "
                       "again from scratch, or choose another output folder.")


def refuse_single_run(out: Path) -> None:
    """A single model is not trained into an ensemble's folder, even with overwrite: every reader of the
    folder takes its ``ensemble.json``, so the new model would go unused and the members would stay."""
    if RF.RunFolder(out).is_ensemble:
        raise ConfigError(f"{out} holds an ensemble ({RF.ENSEMBLE}); a single model trained there would be hidden "
                          "behind it. Nothing was written; choose another output folder, or train the ensemble "
                          "again (train.ensemble: N, with --resume or --overwrite).")


def finished(folder: Path) -> bool:
    """Whether the member in ``folder`` finished training (its mark and a model file are there)."""
    return (folder / MEMBER_MARK).is_file() and any((folder / n).is_file() for n in MODEL_FILES)


def _unmark(folder: Path) -> None:
    """A member about to train is not finished, whatever an earlier run left."""
    if (folder / MEMBER_MARK).is_file():
        (folder / MEMBER_MARK).unlink()


def _member_job(job: TrainingJob, k: int) -> TrainingJob:
    """Member ``k``'s run: its folder, seed ``seed + k - 1``, one model; resumed from the ensemble's member folder."""
    resume: bool | str | Path = job.resume
    if isinstance(resume, (str, Path)):
        resume = Path(resume) / member_folder(k)
    cfg = dataclasses.replace(job.cfg, seed=job.cfg.seed + k - 1, ensemble=1)
    return dataclasses.replace(job, out_dir=job.out_dir / member_folder(k), cfg=cfg, resume=resume)


def _entry(job: TrainingJob, k: int) -> dict[str, Any]:
    """Member ``k``'s manifest entry as its folder stands."""
    folder = member_folder(k)
    path = job.out_dir / folder
    model = next((f"{folder}/{n}" for n in MODEL_FILES if (path / n).is_file()), f"{folder}/{MODEL_FILES[0]}")
    extra: dict[str, Any] = {}
    if finished(path):
        meta = read_meta(job.out_dir / model)
        extra = {"epoch": meta.get("epoch"), "views": (meta.get("views_measured") or {}).get("views")}
    return members_entry(folder, model, seed=job.cfg.seed + k - 1, done=finished(path),
                         **{key: v for key, v in extra.items() if v is not None})


def _write(job: TrainingJob, *, calibrate: bool = False, device: Any = None) -> None:
    """Write the manifest; at the end (``calibrate``) with the uncertainty measured on the validation split."""
    members = tuple(_entry(job, k) for k in range(1, job.cfg.ensemble + 1))
    manifest = EnsembleManifest(RF.RunFolder(job.out_dir).manifest, members, varies="seed",
                                extra={"seeds": [m["seed"] for m in members]})
    if calibrate and job.val is not None and len(job.val) and job.train.task == "landmarks":
        done = [job.out_dir / m["model"] for m in members if m["done"]]
        found = calibrate_ensemble(done, job.val, device=resolve_device(job.cfg.device) if device is None else device,
                                   batch_size=job.cfg.resolved_batch_size)
        if found is not None:
            calibration, record = found
            manifest = dataclasses.replace(manifest, calibration=calibration, uncertainty=record)
            if not job.cfg.quiet:
                log.info(f"ensemble: {describe(record)}; members {record['members_val_error_px']} px, "
                         f"ensemble {record['val_error_px_mean']} px on the validation split")
    job.out_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(manifest)


def calibrate_ensemble(files: list[Path], val: Any, *, device: Any, batch_size: int
                       ) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Score ``val`` with each member and the ensemble; calibrate the best signal. None: nothing to fit."""
    if not files:
        return None
    metas = [read_meta(f) for f in files]
    check_members(metas, [str(f) for f in files])
    setup = StepSetup.for_model(metas[0], device)
    loader = validation_loader(val, setup, grayscale=bool(metas[0].get("grayscale")),
                               letterbox=bool(metas[0].get("letterbox")), batch_size=batch_size)
    members = [run_inference(model_strategy(f, setup), loader) for f in files]
    outputs = Outputs.join([combine([_as_scored(o) for o in members])])
    found = choose_calibration(outputs, list(metas[0]["landmarks"]))
    if found is None:
        return None
    calibration, record = found
    true = outputs.true
    assert true is not None  # validation tables are annotated
    record["members_val_error_px"] = [round(float(np.nanmean(point_errors(o.pred, true))), 4) for o in members]
    return calibration.to_dict(), record


def _as_scored(o: Outputs) -> Scored:
    return Scored(index=o.index, pred=o.pred, true=o.true, scale=o.scale, offset=o.offset, likelihood=o.likelihood)


def _histories(out: Path, n: int) -> pd.DataFrame:
    """Every member's metrics.csv, one after another, with a ``member`` column (1..n)."""
    parts = []
    for k in range(1, n + 1):
        history = RF.RunFolder(out).member(k).read_history()
        if not history.empty:
            parts.append(history.assign(member=k))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
