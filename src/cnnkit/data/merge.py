"""``merge_annotations``: add corrected and new annotations to a training labels file.

Rows are matched by image file (resolved path). For each image of the corrected file:

- not in the labels file: **added**;
- in it without any point (or label): **filled** in;
- in it with the same points (within ``tolerance`` pixels; a missing point only equals a
  missing point) or label: **unchanged**;
- in it with different ones: a **conflict**. Conflicts are listed and nothing is written
  unless ``prefer`` says which side wins (``"corrected"`` or ``"existing"``).

Images of the corrected file without any point are skipped (not labelled yet). The
labels file keeps its format (a CSV table, or a VIA 2 project for ``.json``), its other
rows and columns; the original is first copied to ``<name>.backup-<time><suffix>``.
Every image of the corrected file is taken as checked by a person: remove from it (or
clear the points of) the images you did not review.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from cnnkit.data.guard import refuse_to_overwrite_labels
from cnnkit.data.sources import read_annotations
from cnnkit.data.sources.writers import write_csv, write_via
from cnnkit.data.table import AnnotationTable
from cnnkit.errors import ConfigError, DataError

log = logging.getLogger("cnnkit")

Prefer = Literal["corrected", "existing"]
_SHOWN = 10


@dataclass(frozen=True)
class Conflict:
    """An image labelled in both files with different annotations."""

    image: str
    differs: tuple[str, ...]  # landmark names (or 'label') that differ
    distance: float  # largest point distance in pixels (inf: a point missing on one side; nan: a label)

    def __str__(self) -> str:
        how = "" if np.isnan(self.distance) else f" (up to {self.distance:.1f} px)" if np.isfinite(
            self.distance) else " (a point missing on one side)"
        return f"{self.image}: {', '.join(self.differs)}{how}"


class MergeConflictError(DataError):
    """Merging found conflicts and no ``prefer``; ``conflicts`` lists them."""

    def __init__(self, message: str, conflicts: list[Conflict]) -> None:
        super().__init__(message)
        self.conflicts = conflicts


@dataclass
class MergeReport:
    """What ``merge_annotations`` did (image paths in each list)."""

    written: Path
    backup: Path | None
    added: list[str] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    prefer: Prefer | None = None

    def __str__(self) -> str:
        lines = [f"{len(self.added)} added, {len(self.filled)} filled in, {len(self.unchanged)} unchanged, "
                 f"{len(self.conflicts)} conflicts" + (f" (kept the {self.prefer} side)" if self.conflicts else "")
                 + f", {len(self.skipped)} skipped (no points) -> {self.written}"]
        lines += [f"  conflict {c}" for c in self.conflicts[:_SHOWN]]
        if self.backup is not None:
            lines.append(f"backup of the original: {self.backup}")
        return "\n".join(lines)


def merge_annotations(corrected: str | Path | AnnotationTable, into: str | Path, *, prefer: Prefer | None = None,
                      out: str | Path | None = None, images: str | Path | None = None,
                      landmark_attribute: str | None = None, tolerance: float = 0.01) -> MergeReport:
    """Merge ``corrected`` (e.g. a VIA project saved after review) into the labels file ``into``.

    Args:
        corrected: the corrected annotations (any format ``read_annotations`` reads) or a table.
        into: the labels file (CSV or VIA 2 project JSON); rewritten in place unless ``out``.
        prefer: which side wins a conflict: ``"corrected"`` or ``"existing"``; None: conflicts
            raise ``MergeConflictError`` and nothing is written.
        out: write the merged labels here instead (``into`` is then left untouched).
        images: folder the corrected file's image paths are relative to (e.g. a VIA export).
        landmark_attribute: VIA region attribute naming the points (default: detected).
        tolerance: points closer than this (pixels) are the same.

    Returns:
        A ``MergeReport``; ``str(report)`` is a short summary.

    Raises:
        MergeConflictError: conflicts and no ``prefer``.
        DataError: unreadable files, different landmark names, or a labels file whose
            format merge cannot write back (pass ``out``).
    """
    if prefer not in (None, "corrected", "existing"):
        raise ConfigError(f"prefer must be 'corrected', 'existing' or None. Received: {prefer!r}")
    into, target = Path(into), Path(out) if out is not None else Path(into)
    if target.resolve() != into.resolve():
        refuse_to_overwrite_labels(target, what="the merged output")
    existing = _read_into(into)
    new = _read_corrected(corrected, images, landmark_attribute)
    new, existing = _align(new, existing, into)
    merged, report = _combine(existing, new, tolerance, prefer, target)
    if report.conflicts and prefer is None:
        shown = "\n  ".join(str(c) for c in report.conflicts[:_SHOWN])
        more = f"\n  ... and {len(report.conflicts) - _SHOWN} more" if len(report.conflicts) > _SHOWN else ""
        raise MergeConflictError(
            f"{len(report.conflicts)} image(s) are labelled in both {into} and the corrected file with different "
            f"annotations; nothing was written:\n  {shown}{more}\nChoose which side wins with "
            f"prefer='corrected' or 'existing' (command line: --prefer corrected|existing).", report.conflicts)
    if target.exists():
        report.backup = _backup(target)
    _write(merged, target, _via_attribute(into))
    return report


def _read_into(into: Path) -> AnnotationTable:
    if not into.exists():  # a new labels file: the corrected annotations are its first rows
        log.info("%s does not exist yet: it will hold the corrected annotations", into)
        return AnnotationTable(pd.DataFrame({"image": pd.Series([], dtype=object)}), source=str(into))
    _check_writable_format(into)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = read_annotations(into, unannotated="keep")
    for w in caught:
        if "non-point regions" in str(w.message):
            raise DataError(f"{into}: {w.message}. Merging rewrites the file with points only, so these would be "
                            f"lost; pass out=<another file> (--out) to write the merged labels elsewhere.")
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return table


def _check_writable_format(into: Path) -> None:
    """Only CSV tables and VIA 2 projects are written back in their own format."""
    head = into.read_bytes()[:4096].decode("utf-8", errors="replace").lstrip("\ufeff").lstrip()
    first = head.splitlines()[0] if head else ""
    if into.suffix.lower() == ".json":
        ok = head.startswith("{") and "_via_img_metadata" in into.read_text(encoding="utf-8-sig")
        kind = "not a VIA 2 project"
    else:
        ok = not ("region_shape_attributes" in first or first.startswith("scorer") or head.startswith("{"))
        kind = "a VIA CSV export, a DeepLabCut file or JSON, not a cnnkit CSV table"
    if not ok:
        raise DataError(f"{into}: {kind}; merge writes back CSV tables and VIA 2 project files only. "
                        f"Pass out=<labels.csv or .json> (--out) to write the merged labels to a new file.")


def _read_corrected(corrected: str | Path | AnnotationTable, images: str | Path | None,
                    landmark_attribute: str | None) -> AnnotationTable:
    if isinstance(corrected, AnnotationTable):
        return corrected
    return read_annotations(corrected, unannotated="keep", images=images, landmark_attribute=landmark_attribute)


def _align(new: AnnotationTable, existing: AnnotationTable, into: Path) -> tuple[AnnotationTable, AnnotationTable]:
    """Same kind and names on both sides; a labels file with no annotations yet takes the corrected names."""
    if existing.task == "none":
        df = existing.df.copy()
        for col in _value_columns(new):
            df[col] = np.nan if new.landmarks else None
        existing = AnnotationTable(df, new.landmarks, new.classes, existing.source)
    if new.task != existing.task:
        raise DataError(f"{into} holds {existing.task} but the corrected file holds {new.task}; they cannot be merged")
    if new.landmarks and set(new.landmarks) != set(existing.landmarks):
        raise DataError(f"landmark names differ: {into} has {list(existing.landmarks)}, the corrected file has "
                        f"{list(new.landmarks)}. Use the same names (VIA: the region attribute's options).")
    if new.classes and not set(new.classes) <= set(existing.classes):
        existing = AnnotationTable(existing.df, (), tuple(existing.classes) + tuple(
            c for c in new.classes if c not in existing.classes), existing.source)
    return new, existing


def _value_columns(table: AnnotationTable) -> list[str]:
    if table.landmarks:
        xs, ys = table.point_columns
        return [c for pair in zip(xs, ys, strict=True) for c in pair]
    return ["label"] if table.classes else []


def _key(image: str) -> str:
    return os.path.normcase(os.path.realpath(image))


def _combine(existing: AnnotationTable, new: AnnotationTable, tol: float, prefer: Prefer | None,
             target: Path) -> tuple[AnnotationTable, MergeReport]:
    report = MergeReport(written=target, backup=None, prefer=prefer)
    cols = _value_columns(existing)
    df = existing.df.copy()
    rows = {_key(img): i for i, img in enumerate(existing.images)}
    additions = []
    for r, image in enumerate(new.images):
        values = new.df.iloc[r][cols]
        if not _labelled(values):
            report.skipped.append(image)
            continue
        i = rows.get(_key(image))
        if i is None:
            additions.append(r)
            report.added.append(image)
        elif not _labelled(df.iloc[i][cols]):
            df.loc[df.index[i], cols] = values.to_numpy()
            report.filled.append(image)
        else:
            conflict = _compare(existing, df.iloc[i][cols], values, tol, image)
            if conflict is None:
                report.unchanged.append(image)
            else:
                report.conflicts.append(conflict)
                if prefer == "corrected":
                    df.loc[df.index[i], cols] = values.to_numpy()
    if additions:
        df = pd.concat([df, new.df.iloc[additions][["image", *cols]]], ignore_index=True)
        _report_missing_columns(df, existing.df.columns, cols, len(additions))
    return existing.with_df(df), report


def _labelled(values: pd.Series) -> bool:
    return bool(values.notna().any())


def _compare(table: AnnotationTable, old: pd.Series, new: pd.Series, tol: float, image: str) -> Conflict | None:
    if not table.landmarks:
        same = str(old["label"]) == str(new["label"])
        return None if same else Conflict(image, ("label",), float("nan"))
    a = old.to_numpy(dtype=np.float64).reshape(-1, 2)
    b = new.to_numpy(dtype=np.float64).reshape(-1, 2)
    missing = np.isnan(a).any(axis=1) != np.isnan(b).any(axis=1)
    dist = np.where(missing, np.inf, np.nan_to_num(np.linalg.norm(a - b, axis=1), nan=0.0))
    differs = tuple(n for n, d in zip(table.landmarks, dist, strict=True) if d > tol)
    return Conflict(image, differs, float(dist.max())) if differs else None


def _report_missing_columns(df: pd.DataFrame, existing_cols: pd.Index, cols: list[str], n: int) -> None:
    extra = [c for c in existing_cols if c not in ("image", *cols)]
    if extra:
        log.info("%d added rows have no value in the labels file's other columns %s; fill them in if training "
                 "uses them (e.g. a split column)", n, extra)


def _via_attribute(path: Path) -> str:
    """The labels project's landmark attribute (its only dropdown/radio region attribute), else 'landmark'."""
    if path.suffix.lower() != ".json" or not path.exists():
        return "landmark"
    region = (json.loads(path.read_text(encoding="utf-8-sig")).get("_via_attributes") or {}).get("region") or {}
    choices = [k for k, v in region.items() if isinstance(v, dict) and v.get("type") in ("dropdown", "radio")]
    return choices[0] if len(choices) == 1 else "landmark"


def _backup(path: Path) -> Path:
    """Copy ``path`` to ``<stem>.backup-<UTC time>[-n]<suffix>`` beside it; never replaces a backup."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    for n in range(1000):
        candidate = path.with_name(f"{path.stem}.backup-{stamp}{f'-{n}' if n else ''}{path.suffix}")
        if not candidate.exists():
            shutil.copy2(path, candidate)
            return candidate
    raise DataError(f"{path}: could not find a free backup name beside it; remove old backups")


def _write(table: AnnotationTable, target: Path, attribute: str) -> None:
    if target.suffix.lower() == ".json":
        write_via(table, target, attribute=attribute)
    else:
        write_csv(table, target)
