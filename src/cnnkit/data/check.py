"""``check_data``: every problem of a table's images and points, in one report.

Errors (a row with one is dropped by ``on_error='skip'``): missing file or zip member,
unreadable or corrupt image, duplicate row (same image as an earlier row; the first is kept),
landmark outside the image (x outside [0, width] or y outside [0, height], in the frame after
EXIF orientation), infinite landmark value. Counted, not errors: missing (NaN) landmarks.
An empty table is an error of its own.
"""

from __future__ import annotations

import io
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from PIL import Image

from cnnkit.data.decode import DECODE_ERRORS, error_text, exif_orientation, oriented_size
from cnnkit.data.images import ImageSource
from cnnkit.data.table import AnnotationTable
from cnnkit.errors import DataError

_SHOWN = 10


@dataclass(frozen=True)
class Problem:
    """One offending row: its position, image, kind ('missing', 'unreadable', 'duplicate',
    'outside', 'infinite', 'empty') and what exactly is wrong."""

    row: int
    image: str
    kind: str
    detail: str


@dataclass(frozen=True)
class DataReport:
    """What :func:`check_data` found. ``table`` is the clean table (error rows dropped)."""

    n_rows: int
    problems: tuple[Problem, ...]
    nan_values: int
    table: AnnotationTable
    source: str = ""
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def bad_rows(self) -> list[int]:
        return sorted({p.row for p in self.problems if p.row >= 0})

    def __str__(self) -> str:
        head = f"check-data {self.source}: {self.n_rows} rows, "
        if self.ok:
            head += "no problems"
        else:
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
            head += f"{len(self.problems)} problems in {len(self.bad_rows)} rows ({kinds})"
        head += f"; {self.nan_values} missing (NaN) landmark values"
        lines = [head] + [f"  row {p.row}: {p.image!r}: {p.kind}: {p.detail}" for p in self.problems[:_SHOWN]]
        if len(self.problems) > _SHOWN:
            lines.append(f"  ... and {len(self.problems) - _SHOWN} more")
        return "\n".join(lines)


def check_data(
    table: AnnotationTable,
    *,
    on_error: Literal["raise", "skip"] = "raise",
    decode: bool = True,
    workers: int = 0,
) -> DataReport:
    """Check every row of ``table``; raise or drop the rows with errors.

    Args:
        table: the rows to check.
        on_error: 'raise' -> DataError with the report text when any error is found;
            'skip' -> return the report, its ``table`` without the error rows.
        decode: decode every image fully (finds truncated/corrupt data; JPEGs are decoded at
            reduced size, which still reads every byte). False reads headers only.
        workers: threads reading images (Pillow releases the GIL while decoding).

    Returns:
        DataReport; ``str(report)`` shows counts and the first offending rows.
    """
    if on_error not in ("raise", "skip"):
        raise DataError(f"on_error must be 'raise' or 'skip'. Received: {on_error!r}")
    problems: list[Problem] = []
    if len(table) == 0:
        problems.append(Problem(-1, "", "empty", "the table has no rows; check the annotation file"))
    names = table.images
    sizes = _image_sizes(table, decode, workers, problems)
    problems += _duplicates(names)
    points = table.points()
    problems += _point_problems(names, points, sizes, table.landmarks)
    problems.sort(key=lambda p: (p.row, p.kind))
    bad = {p.row for p in problems}
    clean = table.subset([i for i in range(len(table)) if i not in bad])
    report = DataReport(
        n_rows=len(table),
        problems=tuple(problems),
        nan_values=int(np.isnan(points).sum()),
        table=clean,
        source=table.source,
        counts=dict(Counter(p.kind for p in problems)),
    )
    if on_error == "raise" and not report.ok:
        raise DataError(str(report) + "\nFix these rows, or pass on_error='skip' to drop them.")
    return report


def _image_sizes(
    table: AnnotationTable, decode: bool, workers: int, problems: list[Problem]
) -> list[tuple[int, int] | None]:
    """(width, height) after EXIF per row, None where the image is missing or unreadable."""
    source = ImageSource.for_table(table)

    def one(name: str) -> tuple[tuple[int, int] | None, str, str]:
        if not source.exists(name):
            return None, "missing", f"not found ({source.describe(name)})"
        try:
            return _probe(source.read(name), decode), "", ""
        except (DataError, *DECODE_ERRORS, Image.DecompressionBombError) as exc:
            return None, "unreadable", f"{type(exc).__name__}: {error_text(exc)}"

    names = table.images
    if workers > 0:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(one, names))
    else:
        results = [one(n) for n in names]
    sizes = []
    for row, (name, (size, kind, detail)) in enumerate(zip(names, results, strict=True)):
        if kind:
            problems.append(Problem(row, name, kind, detail))
        sizes.append(size)
    return sizes


def _probe(data: bytes, decode: bool) -> tuple[int, int]:
    """Size after EXIF orientation; with ``decode`` the pixels are decoded too (at 1/8 for JPEG)."""
    with Image.open(io.BytesIO(data)) as im:
        size = oriented_size(im.size, exif_orientation(im))
        if decode:
            if im.format == "JPEG":
                im.draft(None, (max(1, im.size[0] // 8), max(1, im.size[1] // 8)))
            im.load()
    return size


def _duplicates(names: list[str]) -> list[Problem]:
    first: dict[str, int] = {}
    out = []
    for row, name in enumerate(names):
        if name in first:
            out.append(Problem(row, name, "duplicate", f"same image as row {first[name]}"))
        else:
            first[name] = row
    return out


def _point_problems(
    names: list[str], points: np.ndarray, sizes: list[tuple[int, int] | None], landmarks: tuple[str, ...]
) -> list[Problem]:
    """Infinite values, and finite points outside the image (when its size is known)."""
    out = []
    for inf_row in np.flatnonzero(np.isinf(points).any(axis=(1, 2))).tolist():
        out.append(Problem(inf_row, names[inf_row], "infinite", "a landmark coordinate is +-inf"))
    for row, size in enumerate(sizes):
        if size is None or points.shape[1] == 0:
            continue
        p = points[row]
        outside = np.isfinite(p).all(axis=1) & (
            (p[:, 0] < 0) | (p[:, 0] > size[0]) | (p[:, 1] < 0) | (p[:, 1] > size[1])
        )
        for k in np.flatnonzero(outside)[:1]:
            detail = f"landmark {landmarks[k]!r} at ({p[k, 0]:.1f}, {p[k, 1]:.1f}) outside the {size[0]}x{size[1]} image"
            more = int(outside.sum()) - 1
            out.append(Problem(row, names[row], "outside", detail + (f" (+{more} more)" if more else "")))
    return out
