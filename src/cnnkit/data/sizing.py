"""The default network input size: the training images' shape at a fixed pixel budget.

``data.size: auto`` (the default) keeps the median aspect ratio of the training images and
gives the network about ``AUTO_AREA`` pixels (160x120 for 4:3 frames, the size every landmark
figure in docs/ACCURACY.md was measured at), rounded to multiples of 8 (stride-8 maps tile it).
Only image headers are read (Pillow opens lazily), from an even sample of at most ``SAMPLE``
rows, so this costs milliseconds even on a large set.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from cnnkit.config import CropConfig
from cnnkit.data.decode import DECODE_ERRORS, exif_orientation, oriented_size
from cnnkit.data.images import ImageSource
from cnnkit.data.table import AnnotationTable
from cnnkit.errors import DataError

AUTO_AREA = 160 * 120
SAMPLE = 64
MULTIPLE = 8


def size_for_aspect(aspect: float, area: int = AUTO_AREA, multiple: int = MULTIPLE) -> tuple[int, int]:
    """(width, height) with ``width / height ~ aspect`` and ``width * height ~ area``.

    Example:
        >>> size_for_aspect(4 / 3), size_for_aspect(1.0), size_for_aspect(0.75)
        ((160, 120), (136, 136), (120, 160))
    """
    width = math.sqrt(area * aspect)

    def snap(v: float) -> int:
        return max(multiple * 2, int(round(v / multiple)) * multiple)

    return snap(width), snap(area / width)


def sampled_frame_sizes(table: AnnotationTable) -> dict[int, tuple[int, int]]:
    """{row: (width, height) after EXIF orientation} of an even sample of at most ``SAMPLE`` rows,
    from the image headers; a broken image is left out (the dataset reports it, with its row)."""
    source = ImageSource.for_table(table)
    names = table.images
    picks = np.unique(np.linspace(0, len(names) - 1, min(SAMPLE, len(names))).round().astype(int))
    sizes: dict[int, tuple[int, int]] = {}
    for i in picks:
        try:
            with Image.open(io.BytesIO(source.read(names[i]))) as img:
                sizes[int(i)] = oriented_size(img.size, exif_orientation(img))
        except (*DECODE_ERRORS, DataError):
            continue
    return sizes


def auto_size(table: AnnotationTable, area: int = AUTO_AREA) -> tuple[int, int]:
    """The default input size for ``table``: its median image aspect ratio at ``area`` pixels."""
    if not len(table):
        raise DataError(f"{table.source}: no images to choose data.size from; give data.size, e.g. 160x120")
    sizes = sampled_frame_sizes(table)
    if not sizes:
        raise DataError(f"{table.source}: none of the sampled images could be opened to choose "
                        f"data.size; run `cnnkit check-data`, or give data.size, e.g. 160x120")
    aspects = [w / h for w, h in sizes.values()]
    return size_for_aspect(float(np.median(aspects)), area)


#: ``data.crop: auto`` trains on views only where the frames' larger side is at least this multiple
#: of the view's: below it, the whole frame at 160x120 loses under 2x of the labels' resolution.
AUTO_CROP_MIN_FRAME = 2.0


def table_subject_share(table: AnnotationTable, sizes: dict[int, tuple[int, int]] | None = None) -> float | None:
    """How much of the frame the subject spans: the median over the rows ``sampled_frame_sizes`` reads
    (headers only) of the points' box over the frame, on the box's larger axis; None without points.

    The one measurement of it: ``data.crop: auto`` decides on it, and a crop model records it
    (``views: auto`` falls back on it for a model whose strategies were not measured).
    """
    from cnnkit.data.views import subject_share

    sizes = sampled_frame_sizes(table) if sizes is None else sizes
    rows = list(sizes)
    return subject_share(table.points()[rows], lambda j: sizes[rows[j]], len(rows)) if rows else None


def auto_crop(table: AnnotationTable, crop: CropConfig | None = None) -> tuple[CropConfig | None, str]:
    """``data.crop: auto`` -> (``crop`` (default ``CropConfig()``) or None, the reason in words).

    On for landmark tables whose subject is small in large frames: the points' box spans under
    :data:`cnnkit.data.views.SMALL_SUBJECT_SHARE` of the frame (median over up to ``SAMPLE`` rows)
    and the frames' median larger side is at least ``AUTO_CROP_MIN_FRAME`` x the view's. Only
    headers are read.
    """
    from cnnkit.data.views import SMALL_SUBJECT_SHARE

    crop = crop or CropConfig()
    if table.task != "landmarks":
        return None, "not a landmark table"
    sizes = sampled_frame_sizes(table)
    if not sizes:
        return None, "no sampled image could be opened"
    share = table_subject_share(table, sizes)
    side = float(np.median([max(wh) for wh in sizes.values()]))
    where = f"the points span {'?' if share is None else f'{share:.2f}'} of {side:.0f} px frames"
    if share is None or share >= SMALL_SUBJECT_SHARE:
        return None, f"{where} (>= {SMALL_SUBJECT_SHARE}): the whole frame resized"
    if side < AUTO_CROP_MIN_FRAME * max(crop.size):
        return None, f"{where}, under {AUTO_CROP_MIN_FRAME:g}x the {max(crop.size)} px view: the whole frame resized"
    return crop, f"{where} (< {SMALL_SUBJECT_SHARE}): crop training on {crop.size[0]}x{crop.size[1]} views"
