"""What an archive run leaves behind: one completion record per video, and the run's summary.

A video's outputs are complete when its record (``<stem>.cnnkit.json`` beside them) says so. The
record is written LAST, atomically, after every output file, so a run killed at any moment
leaves either no record or one that vouches for files already in place. It holds:

- ``model_sha256``: the model's content hash (the same weights under another name match; an
  ensemble's covers its manifest and every member's file: :func:`model_sha256`);
- ``settings``: what changes the numbers (the views as resolved, test-time flip);
- ``video``: the fingerprint of the input (size, modification time in ns) and its decoded
  frame count;
- ``files``: each output's name and size (a file replaced or cut short since does not match);
- ``partial``: why a video ended before its declared length (empty when it did not);
- ``cnnkit_version``, ``formats``.

A video is skipped only when its record matches all of these for the outputs asked for now.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from cnnkit.atomic import atomic_write_text
from cnnkit.data.guard import refuse_to_overwrite_labels
from cnnkit.io.ensemble import find_model

RECORD_KIND = "cnnkit archive: complete outputs of one video"
RECORD_SUFFIX = ".cnnkit.json"
SUMMARY_NAME = "archive_summary.csv"
STATUSES = ("predicted", "skipped", "partial", "failed")


def record_path(csv: Path) -> Path:
    """``out/cam1/day1.csv`` -> ``out/cam1/day1.cnnkit.json``."""
    return csv.with_name(f"{csv.stem}{RECORD_SUFFIX}")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_sha256(model: Path) -> str:
    """The content hash of what a model argument names (``cnnkit.io.ensemble.find_model``): a model
    file's sha256; for an ensemble the sha256 of its manifest's and its members' hashes in member order,
    so a retrained member or a new calibration is another model."""
    ref = find_model(model)
    if ref.manifest is None:
        assert ref.file is not None
        return file_sha256(ref.file)
    digest = hashlib.sha256()
    for path in (ref.manifest.path, *ref.files):
        digest.update(file_sha256(path).encode("ascii"))
    return digest.hexdigest()


def video_fingerprint(path: Path) -> dict[str, int]:
    """Size and modification time (ns): a video re-encoded, replaced or still being copied differs."""
    st = path.stat()
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def read_record(path: Path) -> dict[str, Any] | None:
    """The completion record at ``path``; None when there is none (or it is unreadable or not ours)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("kind") == RECORD_KIND else None


def foreign_record(path: Path) -> bool:
    """A file at the record's place that cnnkit did not write (never replaced)."""
    return path.is_symlink() or (path.exists() and read_record(path) is None and path.stat().st_size > 0)


def write_record(path: Path, *, model_sha256: str, model: Path, settings: Mapping[str, Any],
                 formats: Sequence[str], video: Path, fingerprint: Mapping[str, int], frames: int,
                 files: Iterable[Path], partial: str, smooth: str | None = None) -> Path:
    """Write the completion record (after every output: it is what makes them count as done).

    ``fingerprint``: the video's, taken BEFORE it was decoded (a file still growing then differs later).
    ``smooth``: the ``--smooth`` method asked for, if any (a later run asking another redoes the video).
    """
    record = {"kind": RECORD_KIND, "cnnkit_version": _version(), "model": str(model), "model_sha256": model_sha256,
              "settings": dict(settings), "formats": list(formats),
              "video": {"name": video.name, **fingerprint, "frames": int(frames)},
              "partial": partial, "files": {f.name: f.stat().st_size for f in files}, "smooth": smooth}
    return atomic_write_text(path, json.dumps(record, indent=1))


def matching_record(path: Path, *, model_sha256: str, settings: Mapping[str, Any], video: Path,
                    outputs: Iterable[Path]) -> dict[str, Any] | None:
    """The record when it vouches for ``outputs`` of this video by this model and settings; else None."""
    record = read_record(path)
    if record is None or record.get("model_sha256") != model_sha256 or record.get("settings") != dict(settings):
        return None
    seen = record.get("video") or {}
    if {k: seen.get(k) for k in ("size", "mtime_ns")} != video_fingerprint(video):
        return None
    files = record.get("files") or {}
    for out in outputs:
        if out.name not in files or not out.is_file() or out.is_symlink() or out.stat().st_size != files[out.name]:
            return None
    return record


@dataclass(frozen=True)
class VideoResult:
    """One video's line in the summary.

    Attributes:
        video: the path under the archive's root (as the outputs mirror it).
        status: ``predicted`` (now), ``skipped`` (complete before, for this model), ``partial``
            (predicted, but the file ended before its declared length) or ``failed`` (no output).
        frames: frames predicted (skipped: as recorded; failed: decoded before the failure).
        seconds: time this video took its process (0 when skipped or refused before work).
        rank: the process that handled it (-1: settled before the work was shared out).
        reason: why it failed or ended early; a skipped video keeps the reason of its record.
    """

    video: str
    status: str
    frames: int = 0
    seconds: float = 0.0
    rank: int = -1
    reason: str = ""


@dataclass(frozen=True)
class ArchiveSummary:
    """Every video of the archive run, in path order, with the run's time and process count."""

    rows: tuple[VideoResult, ...]
    out: Path
    wall_s: float
    processes: int = 1
    files: tuple[Path, ...] = field(default=())

    def of(self, status: str) -> list[VideoResult]:
        return [r for r in self.rows if r.status == status]

    @property
    def problems(self) -> list[VideoResult]:
        """Failed and partial videos, and skipped ones whose record says they were partial."""
        return [r for r in self.rows if r.status in ("failed", "partial") or (r.status == "skipped" and r.reason)]

    def exit_status(self, *, accept_partial: bool = False) -> int:
        """0; 1 when a video failed; 3 when videos only ended early (unless ``accept_partial``)."""
        if self.of("failed"):
            return 1
        partial = [r for r in self.problems if r.status != "failed"]
        return 3 if partial and not accept_partial else 0

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(r) for r in self.rows], columns=list(VideoResult.__dataclass_fields__))

    def lines(self) -> list[str]:
        """The table printed at the end: videos and frames per status, speed, then every problem."""
        lines = [f"archive: {len(self.rows)} videos -> {self.out} ({self.processes} process"
                 f"{'es' if self.processes > 1 else ''})", f"  {'status':<10} {'videos':>7} {'frames':>11}"]
        for status in STATUSES:
            rows = self.of(status)
            lines.append(f"  {status:<10} {len(rows):>7} {sum(r.frames for r in rows):>11,}")
        lines.append(self._speed())
        if self.problems:
            lines.append("problems:")
            lines += [f"  {r.video}: {r.status}: {r.reason}" for r in self.problems]
        return lines

    def _speed(self) -> str:
        done = [r for r in self.rows if r.status in ("predicted", "partial")]
        frames = sum(r.frames for r in done)
        if not done:
            return "  nothing predicted now"
        rate = frames / self.wall_s if self.wall_s > 0 else 0.0
        line = f"  {frames:,} frames predicted in {self.wall_s:.1f} s: {rate:.1f} frames/s"
        per = [f"{frames / busy:.1f}" for frames, busy in self.per_process().values() if busy > 0]
        return line + (f" (per process: {', '.join(per)})" if self.processes > 1 and per else "")

    def per_process(self) -> dict[int, tuple[int, float]]:
        """rank -> (frames predicted, seconds busy) for the processes that predicted something."""
        out: dict[int, tuple[int, float]] = {}
        for r in self.rows:
            if r.rank >= 0:
                frames, busy = out.get(r.rank, (0, 0.0))
                out[r.rank] = (frames + r.frames, busy + r.seconds)
        return dict(sorted(out.items()))


def write_summary(summary: ArchiveSummary) -> Path:
    """``<out>/archive_summary.csv``: one row per video (refused if a user's file sits there)."""
    path = summary.out / SUMMARY_NAME
    if not _is_summary(path):
        refuse_to_overwrite_labels(path, what="the archive summary")
    return atomic_write_text(path, summary.table().to_csv(index=False))


def _is_summary(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open(encoding="utf-8", errors="replace") as fh:
        return fh.readline().strip() == ",".join(VideoResult.__dataclass_fields__)


def _version() -> str:
    try:
        return metadata.version("cnnkit")
    except metadata.PackageNotFoundError:
        return "unknown"
