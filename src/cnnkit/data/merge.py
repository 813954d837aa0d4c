"""``merge_annotations``: add corrected and new annotations to a training labels file.

Rows are matched by image file (resolved path). For each image of the corrected file:

- not in the labels file: **added**;
- in it without any point (or label): **filled** in;
- in it with the same points (within ``tolerance`` pixels; a missing point only equals a
  missing point) or label: **unchanged**;
- in it with different ones: a **conflict**. Conflicts are listed and nothing is written
  unless ``prefer`` says which side wins (``"corrected"`` or ``"existing"``).

Images of the corrected file without any point are skipped (not labelled yet). Every
image of the corrected file is taken as checked by a person: remove from it (or clear the
points of) the images you did not review.

The merge is a surgical edit (``merge_edit.py``): only the merged points (or labels) change
in the labels file; its other region and file attributes and their definitions, project
name and settings, other regions, region order, untouched images, CSV columns and cells are
kept as they were. The original is first copied to ``<name>.backup-<time><suffix>`` beside
it. A labels file that is a symbolic link is edited through the link (the link is how the
user names the file; replacing it would leave the real labels unchanged): the real file is
edited and backed up beside itself. A read-only labels file or folder is refused.

Landmark identity comes from a named region attribute in both files (``landmark_attribute``
applies to both; a file whose points do not carry it is read by its own unambiguous one,
said in one line), never from click order (``data/sources/via.py``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from cnnkit.atomic import atomic_write_text
from cnnkit.data.guard import check_writable, refuse_to_overwrite_labels
from cnnkit.data.merge_edit import Edit, edit_csv, edit_via, read_csv_text, rebase_folder, write_csv_text
from cnnkit.data.sources import load_json, read_annotations
from cnnkit.data.sources.via import ORDER, AttributeNotFoundError, identity_attribute, parse_via_json
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
        into: the labels file (CSV or VIA 2 project JSON); edited in place unless ``out``.
        prefer: which side wins a conflict: ``"corrected"`` or ``"existing"``; None: conflicts
            raise ``MergeConflictError`` and nothing is written.
        out: write the merged labels here instead (``into`` is then left untouched).
        images: folder the corrected file's image paths are relative to (e.g. a VIA export).
        landmark_attribute: VIA region attribute naming the points, in both files (default:
            the one named landmark/bodypart, or the only one; ambiguous files are refused).
        tolerance: points closer than this (pixels) are the same.

    Returns:
        A ``MergeReport``; ``str(report)`` is a short summary.

    Raises:
        MergeConflictError: conflicts and no ``prefer``.
        DataError: unreadable files, different landmark names, ambiguous landmark names, a
            read-only labels file or folder, or a labels file whose format merge cannot
            write back (pass ``out``).
    """
    if prefer not in (None, "corrected", "existing"):
        raise ConfigError(f"prefer must be 'corrected', 'existing' or None. Received: {prefer!r}")
    if landmark_attribute == ORDER:
        raise DataError("merge matches points by name; landmark_attribute='@order' (click order) cannot be merged. "
                        "Name the points with a region attribute in VIA first.")
    into = Path(into)
    target = _target(into, out)
    surgical = _edits_in_place(into, target)
    existing, attribute, into_named = _read_into(into, landmark_attribute, surgical)
    new, new_named = _read_corrected(corrected, images, landmark_attribute)
    if landmark_attribute is not None and not (into_named or new_named):
        raise DataError(f"landmark_attribute {landmark_attribute!r}: neither {into} nor {corrected} has points with "
                        f"that region attribute. Check its spelling (VIA: Attributes panel > Region attributes).")
    new, existing = _align(new, existing, into)
    edits, report = _plan(existing, new, tolerance, prefer, target)
    if report.conflicts and prefer is None:
        shown = "\n  ".join(str(c) for c in report.conflicts[:_SHOWN])
        more = f"\n  ... and {len(report.conflicts) - _SHOWN} more" if len(report.conflicts) > _SHOWN else ""
        raise MergeConflictError(
            f"{len(report.conflicts)} image(s) are labelled in both {into} and the corrected file with different "
            f"annotations; nothing was written:\n  {shown}{more}\nChoose which side wins with "
            f"prefer='corrected' or 'existing' (command line: --prefer corrected|existing).", report.conflicts)
    if target.exists():
        report.backup = _backup(target)
    if surgical:
        _write_edits(into, target, edits, new, attribute)
    else:
        _write_table(_merged_table(existing, new, edits), target)
    return report


def _target(into: Path, out: str | Path | None) -> Path:
    """The file to write: ``out``, or ``into`` itself (through a link, to the real file); checked."""
    if out is not None and Path(out).absolute() != into.absolute():
        refuse_to_overwrite_labels(out, what="the merged output")
        return Path(out)
    if into.is_symlink():
        real = into.resolve()
        log.info("%s is a symbolic link to %s: merging into %s (its backup goes beside it)", into, real, real)
        check_writable(real, what="the labels file (the target of the link)")
        return real
    check_writable(into, what="the labels file")
    return into


def _edits_in_place(into: Path, target: Path) -> bool:
    """Edit ``into``'s own document (True) or write a new file from the merged table (False)."""
    if not into.exists():
        return False
    same_kind = (into.suffix.lower() == ".json") == (target.suffix.lower() == ".json")
    if target.resolve() == into.resolve():
        _check_writable_format(into)
        return True
    if not same_kind:
        return False
    try:
        _check_writable_format(into)
    except DataError:
        return False  # e.g. a DeepLabCut file into a new CSV: a conversion, from the table
    return True


def _read_into(into: Path, wanted: str | None, surgical: bool) -> tuple[AnnotationTable, str, bool]:
    """The labels as a table, the region attribute that names their points (VIA), and whether
    their points carry ``wanted``."""
    if not into.exists():  # a new labels file: the corrected annotations are its first rows
        log.info("%s does not exist yet: it will hold the corrected annotations", into)
        empty = AnnotationTable(pd.DataFrame({"image": pd.Series([], dtype=object)}), source=str(into))
        return empty, wanted or "landmark", False
    table, named = _read_named(into, wanted, unannotated="keep")
    attribute = "landmark"
    if surgical and into.suffix.lower() == ".json":
        attribute = _write_attribute(into, wanted if named else None)
    return table, attribute, named


def _read_named(path: Path, wanted: str | None, **opts: Any) -> tuple[AnnotationTable, bool]:
    """Read with ``wanted`` naming the points (True); a file whose points lack it is read by its own name."""
    try:
        return read_annotations(path, landmark_attribute=wanted, **opts), wanted is not None
    except AttributeNotFoundError as missing:
        try:
            table = read_annotations(path, **opts)
        except DataError:
            raise missing from None  # no name of its own either: the misspelt option is the news
        log.info("%s: its points do not carry %r; read by its own landmark attribute", path, wanted)
        return table, False


def _write_attribute(into: Path, wanted: str | None) -> str:
    """The region attribute that names the labels project's points (new points get it too)."""
    project = parse_via_json(load_json(into), str(into))
    if any(s.get("name") == "point" for img in project.images for s, _ in img.regions):
        name = identity_attribute(project, wanted, str(into))
        return name if name is not None else "landmark"
    if wanted is not None:
        return wanted
    named = [k for k in project.options if k.strip().lower() in ("landmark", "landmarks", "bodypart", "bodyparts")]
    if len(named) == 1 or len(project.options) == 1:
        return named[0] if named else next(iter(project.options))
    if project.options:
        raise DataError(f"{into}: its region attributes {list(project.options)} could each name the points and none "
                        f"is named 'landmark'; choose one with landmark_attribute=<name> (--landmark-attribute).")
    return "landmark"


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
                    wanted: str | None) -> tuple[AnnotationTable, bool]:
    if isinstance(corrected, AnnotationTable):
        return corrected, False
    return _read_named(Path(corrected), wanted, unannotated="keep", images=images)


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


def _plan(existing: AnnotationTable, new: AnnotationTable, tol: float, prefer: Prefer | None,
          target: Path) -> tuple[list[Edit], MergeReport]:
    """What changes (one ``Edit`` per image written) and the report of every image."""
    report = MergeReport(written=target, backup=None, prefer=prefer)
    cols = _value_columns(existing)
    names = existing.landmarks or ("label",)
    rows = {_key(img): i for i, img in enumerate(existing.images)}
    edits: list[Edit] = []
    for r, image in enumerate(new.images):
        values = new.df.iloc[r][cols]
        i = rows.get(_key(image))
        if not _labelled(values):
            report.skipped.append(image)
        elif i is None:
            edits.append(Edit(None, r, image, names))
            report.added.append(image)
        elif not _labelled(existing.df.iloc[i][cols]):
            edits.append(Edit(i, r, image, names))
            report.filled.append(image)
        elif (conflict := _compare(existing, existing.df.iloc[i][cols], values, tol, image)) is None:
            report.unchanged.append(image)
        else:
            report.conflicts.append(conflict)
            if prefer == "corrected":
                edits.append(Edit(i, r, image, conflict.differs))
    return edits, report


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


def _write_edits(into: Path, target: Path, edits: list[Edit], new: AnnotationTable, attribute: str) -> None:
    """Apply ``edits`` to ``into``'s own document and write it to ``target``."""
    if into.suffix.lower() == ".json":
        doc = edit_via(load_json(into), edits, new, attribute, base=into.parent)
        if target.resolve().parent != into.resolve().parent:
            doc = rebase_folder(doc, into)
        atomic_write_text(target, json.dumps(doc, ensure_ascii=False))
    else:
        text = edit_csv(read_csv_text(into), edits, new, folder=target.parent, source=str(into))
        write_csv_text(text, target)


def _merged_table(existing: AnnotationTable, new: AnnotationTable, edits: list[Edit]) -> AnnotationTable:
    """The labels as a table with ``edits`` applied (a new file, or another format than ``into``)."""
    df = existing.df.copy()
    added = []
    for edit in edits:
        cols = ["label"] if edit.names == ("label",) else [f"{n}_{a}" for n in edit.names for a in "xy"]
        if edit.row is None:
            added.append(edit.source)
        else:
            df.loc[df.index[edit.row], cols] = new.df.iloc[edit.source][cols].to_numpy()
    if added:
        cols = _value_columns(existing)
        df = pd.concat([df, new.df.iloc[added][["image", *cols]]], ignore_index=True)
        _report_missing_columns(df, existing.df.columns, cols, len(added))
    return existing.with_df(df)


def _report_missing_columns(df: pd.DataFrame, existing_cols: pd.Index, cols: list[str], n: int) -> None:
    extra = [c for c in existing_cols if c not in ("image", *cols)]
    if extra:
        log.info("%d added rows have no value in the labels file's other columns %s; fill them in if training "
                 "uses them (e.g. a split column)", n, extra)


def _backup(path: Path) -> Path:
    """Copy ``path`` to ``<stem>.backup-<UTC time>[-n]<suffix>`` beside it; never replaces a backup."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    for n in range(1000):
        candidate = path.with_name(f"{path.stem}.backup-{stamp}{f'-{n}' if n else ''}{path.suffix}")
        if not candidate.exists():
            shutil.copy2(path, candidate)
            return candidate
    raise DataError(f"{path}: could not find a free backup name beside it; remove old backups")


def _write_table(table: AnnotationTable, target: Path) -> None:
    if target.suffix.lower() == ".json":
        write_via(table, target)
    else:
        write_csv(table, target)
