"""A lab's whole video archive: ``cnnkit predict MODEL DIR_OR_GLOB... --out preds/``.

Every video found (folders searched recursively, by extension; quoted globs expanded, ``**``
included) gets its own outputs at the mirrored path under ``--out``: ``archive/cam1/day1.mp4``
-> ``preds/cam1/day1.csv`` (and the ``--format`` files beside it, named as
:mod:`cnnkit.infer.formats` names them), then ``preds/cam1/day1.cnnkit.json``, the completion
record (:mod:`cnnkit.infer.archive_record`), written last. A re-run of the same command skips
every video whose record matches, so a killed run continues where it stopped; a video with
outputs but no matching record is predicted again.

Under ``torchrun`` every process runs the same command: rank 0 reads the archive and deals the
videos still to do onto the ranks (longest first onto the least-loaded, by the containers'
frame counts), each rank predicts its share with a decode thread running ahead of the model
(across the videos of its share), and rank 0 writes ``preds/archive_summary.csv`` and prints the
table. A video that cannot be read, or fails while decoding, is listed with its reason and the
others go on.

Paths: the outputs mirror the videos' paths under the deepest folder holding every input
(one folder given: that folder). Files and folders whose names start with ``.`` are left out.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnkit.data.video import is_video, iter_frames, video_info
from cnnkit.engine.distributed import DistContext, distributed
from cnnkit.engine.inference import INFERENCE_BATCH
from cnnkit.errors import CnnkitError, ConfigError, DataError
from cnnkit.infer.archive_record import (
    SUMMARY_NAME,
    ArchiveSummary,
    VideoResult,
    foreign_record,
    matching_record,
    model_sha256,
    record_path,
    video_fingerprint,
    write_record,
    write_summary,
)
from cnnkit.infer.formats import (
    PredictionMeta,
    check_outputs,
    check_targets,
    output_paths,
    parse_formats,
    write_predictions,
)
from cnnkit.infer.inputs import is_image_name
from cnnkit.infer.predict import Predictor
from cnnkit.infer.video_predict import FrameBatch, frames_table, model_batches, prefetch

__all__ = ["ArchiveVideo", "archive_videos", "balanced_shares", "predict_archive"]

log = logging.getLogger("cnnkit")


@dataclass(frozen=True)
class ArchiveVideo:
    """A video of the archive: the file, and its path under the archive's root (mirrored under --out)."""

    path: Path
    rel: Path


@dataclass(frozen=True)
class _Job:
    """What every video of the run shares, resolved once."""

    out: Path
    formats: tuple[str, ...]
    meta: PredictionMeta  # videos=(): one video's is made with ``for_video``
    settings: dict[str, Any]
    model_sha256: str
    batch_size: int

    def csv(self, video: ArchiveVideo) -> Path:
        return self.out / video.rel.with_suffix(".csv")

    def for_video(self, video: ArchiveVideo) -> PredictionMeta:
        return dataclasses.replace(self.meta, videos=(video.path,))

    def outputs(self, video: ArchiveVideo) -> list[Path]:
        return [p for paths in output_paths(self.csv(video), self.formats, self.for_video(video)).values() for p in paths]


@dataclass(frozen=True)
class _Plan:
    """Rank 0's reading of the archive, sent to every rank: who predicts what, and what is settled."""

    shares: tuple[tuple[ArchiveVideo, ...], ...]
    weights: dict[Path, int]  # the containers' frame counts (estimates), for the progress bar
    settled: tuple[VideoResult, ...]  # skipped (complete) and refused videos


# -- finding the videos ----------------------------------------------------------------------------


def archive_videos(inputs: Sequence[str | Path], out: str | Path) -> list[ArchiveVideo] | None:
    """The videos of an archive run, or None when ``inputs`` are for the ordinary ``predict``.

    An archive: a folder (or a quoted glob) among the inputs that holds videos, or video files
    with ``--out`` a folder (ends with ``/`` or exists as one). Folders of images, image files and
    annotation files keep the ordinary behaviour.

    Raises:
        ConfigError: images and videos found together, a glob that matches nothing, ``--out`` a
            ``.csv`` file, or two videos whose outputs would share a name.
    """
    items = [str(i) for i in inputs]
    out_folder = str(out).endswith(("/", os.sep)) or Path(out).is_dir()
    searched = any(Path(i).is_dir() or _is_glob(i) for i in items)
    if not searched and not (out_folder and items and all(is_video(i) for i in items)):
        return None
    found = [_expand(i) for i in items]
    files = [f for _, fs in found for f in fs]
    videos = [f for f in files if is_video(f)]
    if not videos:
        return None
    images = [f for f in files if is_image_name(f.name)]
    if images:
        raise ConfigError(f"the inputs hold {len(images)} images (e.g. {images[0]}) and {len(videos)} videos "
                          f"(e.g. {videos[0]}): predict them separately, naming one kind with a quoted glob, e.g. "
                          f"'{items[0].rstrip('/')}/**/*.mp4' --out preds/ for the videos")
    if Path(out).suffix.lower() == ".csv":
        raise ConfigError(f"--out {out}: an archive of {len(videos)} videos writes one output set per video; "
                          f"--out must be a folder, e.g. --out preds/")
    root = Path(os.path.commonpath([os.path.abspath(r) for r, _ in found]))
    chosen = [ArchiveVideo(v, Path(os.path.relpath(os.path.abspath(v), root))) for v in dict.fromkeys(videos)]
    _refuse_shared_names(chosen)
    return sorted(chosen, key=lambda v: v.rel.as_posix())


def _is_glob(item: str) -> bool:
    return _has_magic(item) and not Path(item).exists()


def _has_magic(text: str) -> bool:
    return any(c in text for c in "*?[")


def _expand(item: str) -> tuple[Path, list[Path]]:
    """(the folder the item's paths are counted from, its files): a folder's, a glob's or a file."""
    path = Path(item)
    if path.is_dir():
        return path, sorted(f for f in path.rglob("*") if f.is_file() and not _hidden(f.relative_to(path)))
    if _is_glob(item):
        static = list(path.parts[:-1])
        cut = next((i for i, part in enumerate(static) if _has_magic(part)), len(static))
        matched = sorted(Path(f) for f in glob.glob(item, recursive=True) if Path(f).is_file())
        if not matched:
            raise ConfigError(f"{item}: the pattern matches no file")
        return Path(*static[:cut]) if cut else Path("."), matched
    if not path.is_file():
        raise DataError(f"{path}: no such file or folder")
    return path.parent, [path]


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _refuse_shared_names(videos: list[ArchiveVideo]) -> None:
    seen: dict[Path, Path] = {}
    for v in videos:
        key = v.rel.with_suffix("")
        if key in seen:
            raise ConfigError(f"{seen[key]} and {v.path} would write the same outputs ({key}.csv): rename or "
                              f"move one of them")
        seen[key] = v.path
    if Path(SUMMARY_NAME).with_suffix("") in seen:
        raise ConfigError(f"{seen[Path(SUMMARY_NAME).with_suffix('')]}: its outputs would replace the archive "
                          f"summary ({SUMMARY_NAME}); rename the video")


# -- dealing the work ------------------------------------------------------------------------------


def balanced_shares(weights: Sequence[int], ranks: int) -> list[list[int]]:
    """Indices of ``weights`` dealt onto ``ranks``: longest first onto the least-loaded (ties: lowest rank).

    Each share lists its indices in their original order.

    Example:
        >>> balanced_shares([5, 1, 4, 2, 3], 2)  # loads 5+2+1 and 4+3
        [[0, 1, 3], [2, 4]]
    """
    loads: list[int] = [0] * ranks
    shares: list[list[int]] = [[] for _ in range(ranks)]
    for i in sorted(range(len(weights)), key=lambda i: (-weights[i], i)):
        r = loads.index(min(loads))
        loads[r] += weights[i]
        shares[r].append(i)
    return [sorted(s) for s in shares]


def _plan(videos: Sequence[ArchiveVideo], job: _Job, ranks: int) -> _Plan:
    """Skip what is complete, refuse what would replace a file cnnkit did not write, deal the rest."""
    settled: list[VideoResult] = []
    todo: list[ArchiveVideo] = []
    stated: list[int] = []
    for video in videos:
        record = matching_record(record_path(job.csv(video)), model_sha256=job.model_sha256,
                                 settings=job.settings, video=video.path, outputs=job.outputs(video))
        if record is not None and job.meta.smooth not in (None, record.get("smooth")):
            record = None  # smoothed another way (or not at all): the raw outputs are redone with it
        if record is not None:
            settled.append(VideoResult(video.rel.as_posix(), "skipped", int(record["video"]["frames"]),
                                       reason=str(record.get("partial") or "")))
            continue
        try:
            _refuse_targets(video, job)
            stated.append(_stated_frames(video.path))
        except CnnkitError as exc:
            settled.append(VideoResult(video.rel.as_posix(), "failed", reason=str(exc)))
            log.warning("%s: failed: %s", video.rel, exc)
            continue
        todo.append(video)
    known = [s for s in stated if s > 0]
    guess = int(statistics.median(known)) if known else 1  # a container without a count: a typical video
    weights = [s or guess for s in stated]
    shares = balanced_shares(weights, ranks)
    return _Plan(tuple(tuple(todo[i] for i in share) for share in shares),
                 {v.path: w for v, w in zip(todo, weights, strict=True)}, tuple(settled))


def _stated_frames(path: Path) -> int:
    """The container's frame count, or its duration x rate; 0 when it states neither (cheap: no decoding)."""
    info = video_info(path, count=False)
    return info.frames or int(round(info.duration_s * info.fps))


def _refuse_targets(video: ArchiveVideo, job: _Job) -> None:
    """A user's file (labels, anything cnnkit did not write) where this video's outputs go: DataError."""
    record = record_path(job.csv(video))
    if foreign_record(record):
        raise DataError(f"{record} exists and is not a completion record cnnkit wrote; nothing was written "
                        f"for this video. Move it away")
    check_targets(job.csv(video), job.formats, job.for_video(video))


# -- predicting a share ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ended:
    """A video's frames are all decoded; ``partial``: why it ended before its declared length (or "")."""

    partial: str
    fingerprint: dict[str, int]  # taken before decoding


@dataclass(frozen=True)
class _Failed:
    reason: str


def _share_batches(predictor: Predictor, videos: Sequence[ArchiveVideo], batch_size: int) -> Iterator[tuple[int, Any]]:
    """Per video of the share: its batches, then ``_Ended`` or ``_Failed``; one decode thread runs them all."""
    for i, video in enumerate(videos):
        frames, batches = iter_frames(video.path), 0
        try:
            fingerprint = video_fingerprint(video.path)
            for batch in model_batches(predictor, frames, batch_size=batch_size):
                batches += 1
                yield i, batch
        except (CnnkitError, OSError) as exc:  # unreadable or damaged: this video fails, the share goes on
            yield i, _Failed(str(exc))
            continue
        finally:
            getattr(frames, "close", lambda: None)()  # release the file now, not when collected
        end = getattr(frames, "end", None)  # a video that ended before its declared length (data/video.py)
        yield i, _Ended(str(end) if end is not None else "", fingerprint) if batches else \
            _Failed(f"{video.path}: no frame could be decoded")


class _Collect:
    """One video's scored batches, until it ends."""

    def __init__(self) -> None:
        self.index: list[int] = []
        self.times: list[float] = []
        self.scored: list[Any] = []

    def add(self, batch: FrameBatch, scored: Any) -> None:
        self.index += [f.index for f in batch.frames]
        self.times += [f.time_s for f in batch.frames]
        self.scored.append(scored)


def _run_share(predictor: Predictor, share: Sequence[ArchiveVideo], job: _Job, *, rank: int, bar: Any,
               weights: dict[Path, int], clock: Callable[[], float]) -> list[VideoResult]:
    results: list[VideoResult] = []
    current, last = _Collect(), clock()
    with torch.inference_mode():
        for i, item in prefetch(_share_batches(predictor, share, job.batch_size)):
            if isinstance(item, FrameBatch):
                current.add(item, predictor.score_batch(item.inputs))
                if bar is not None:
                    bar.update(len(item.frames))
                continue
            video, n = share[i], len(current.index)
            if isinstance(item, _Failed):
                log.warning("%s: failed: %s", video.rel, item.reason)
                result = VideoResult(video.rel.as_posix(), "failed", n, rank=rank, reason=item.reason)
            else:
                _write_video(frames_table(predictor, current.index, current.times, current.scored), video, job,
                             item)
                result = VideoResult(video.rel.as_posix(), "partial" if item.partial else "predicted", n, rank=rank,
                                     reason=item.partial)
            if bar is not None:  # the container's count was an estimate; the decoded count is the true one
                bar.total += n - weights[video.path]
                bar.refresh()
            now = clock()
            results.append(dataclasses.replace(result, seconds=now - last))
            current, last = _Collect(), now
    return results


def _write_video(df: Any, video: ArchiveVideo, job: _Job, ended: _Ended) -> None:
    """The video's outputs, then its completion record (last: it makes them count as done)."""
    csv = job.csv(video)
    _remove_temporaries(job.outputs(video) + [record_path(csv)])
    written = write_predictions(df, csv, job.formats, job.for_video(video))
    write_record(record_path(csv), model_sha256=job.model_sha256, model=job.meta.model, settings=job.settings,
                 formats=job.formats, video=video.path, fingerprint=ended.fingerprint, frames=len(df), files=written,
                 partial=ended.partial, smooth=job.meta.smooth)


def _remove_temporaries(targets: Sequence[Path]) -> None:
    """Temporary files a killed run left beside these outputs (``cnnkit.atomic`` names: ``.<name>.*.tmp*``)."""
    for target in targets:
        for tmp in target.parent.glob(f".{glob.escape(target.name)}.*.tmp*"):
            tmp.unlink(missing_ok=True)


# -- the run ---------------------------------------------------------------------------------------


def predict_archive(model: str | Path, videos: Sequence[ArchiveVideo], out: str | Path, *,
                    formats: str | Sequence[str] = "csv", smooth: str | None = None,
                    batch_size: int = INFERENCE_BATCH, device: str = "auto",
                    tta_flip: bool = False, views: str = "auto", progress: bool = True,
                    dist: DistContext | None = None, clock: Callable[[], float] = time.perf_counter) -> ArchiveSummary:
    """Predict every video of ``videos`` (from :func:`archive_videos`) into ``out``; return the summary.

    Under torchrun (or with ``dist``) each process takes its share and every process returns the
    whole summary; rank 0 alone writes ``out/archive_summary.csv`` and shows the progress bar (its
    own share's frames: the shares are balanced, so its ETA is the job's).

    ``smooth``: also write each video's ``<name>_smoothed.csv`` (``PredictionMeta.smooth``).

    Raises:
        ConfigError: a format that does not apply (or lacks its optional package), before any work.
    """
    with distributed(dist, device) as ctx, ctx.patient() as group:
        predictor = Predictor.from_checkpoint(model, device=str(ctx.device or device), tta_flip=tta_flip,
                                              views=views)
        job = _job(model, videos, out, formats, batch_size, predictor, tta_flip=tta_flip, smooth=smooth,
                   warn=ctx.is_main)
        start = clock()
        plan: _Plan = ctx.gather(_plan(videos, job, ctx.world_size) if ctx.is_main else None, group=group)[0]
        share = plan.shares[ctx.rank]
        bar = _bar(share, plan.weights) if progress and ctx.is_main and share else None
        try:
            mine = _run_share(predictor, share, job, rank=ctx.rank, bar=bar, weights=plan.weights, clock=clock)
        finally:
            if bar is not None:
                bar.close()
        rows = [r for part in ctx.gather(mine, group=group) for r in part] + list(plan.settled)
        summary = ArchiveSummary(tuple(sorted(rows, key=lambda r: r.video)), Path(out), clock() - start,
                                 ctx.world_size)
        if ctx.is_main:
            write_summary(summary)
    return summary


def _job(model: str | Path, videos: Sequence[ArchiveVideo], out: str | Path, formats: str | Sequence[str],
         batch_size: int, predictor: Predictor, *, tta_flip: bool, smooth: str | None = None,
         warn: bool = True) -> _Job:
    """The run's settings; the formats checked once, before any work (their errors concern every video).

    ``warn``: say what a format lacks (PyTables for dlc's .h5) in this process (rank 0 alone under torchrun).
    """
    settings: dict[str, Any] = {"views": predictor.views, "tta_flip": bool(tta_flip)}
    meta = PredictionMeta.from_checkpoint(model, (), smooth=smooth, **settings)
    job = _Job(Path(out), parse_formats(formats), meta, settings, model_sha256(Path(model)), batch_size)
    if videos:
        try:
            (check_outputs if warn else check_targets)(job.csv(videos[0]), job.formats, job.for_video(videos[0]))
        except DataError:
            pass  # a user's file in the first video's place: refused for that video alone (``_plan``)
    return job


def _bar(share: Sequence[ArchiveVideo], weights: dict[Path, int]) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=sum(weights[v.path] for v in share), desc=f"archive ({len(share)} videos)", unit="frame",
                dynamic_ncols=True)
