"""COCO keypoints JSON -> AnnotationTable (paths still as written).

One row per keypoint annotation (``annotation_id`` column; an image with several
annotated instances appears on several rows), plus an all-NaN row for each image
without one. ``[x, y, v]`` with ``v = 0`` (not labelled) becomes NaN; ``v = 1`` (labelled,
hidden) and ``v = 2`` (visible) are kept. Landmark names come from the category's
``keypoints``; ``skeleton`` is ignored. Coordinates are taken as they are written.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cnnkit.data.sources.json_shape import json_shape_errors
from cnnkit.data.table import AnnotationTable
from cnnkit.errors import DataError


def is_coco(data: Any) -> bool:
    """Whether a parsed JSON document looks like COCO (``images``, ``annotations``, ``categories``)."""
    return isinstance(data, dict) and {"images", "annotations", "categories"} <= set(data)


def coco_table(data: Any, *, source: str) -> AnnotationTable:
    """The landmark table of a COCO keypoints document.

    Raises:
        DataError: not COCO, or a part of it has the wrong JSON type.
    """
    with json_shape_errors(source, "COCO", "Expected lists 'images' [{id, file_name}], 'annotations' "
                           "[{image_id, category_id, keypoints}], 'categories' [{id, keypoints}]."):
        return _coco_table(data, source)


def _coco_table(data: Any, source: str) -> AnnotationTable:
    if not is_coco(data):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DataError(f"{source}: a COCO file needs the keys 'images', 'annotations', 'categories'; found {found}")
    cats = [c for c in data["categories"] if c.get("keypoints")]
    if len(cats) != 1:
        raise DataError(f"{source}: expected exactly one category with 'keypoints'; found {len(cats)} "
                        f"({[c.get('name') for c in cats]}). Split the file per category.")
    names = [str(n) for n in cats[0]["keypoints"]]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # two columns of one name would silently merge into one landmark
        raise DataError(f"{source}: categories[id={cats[0].get('id')!r}].keypoints names {twice} more than once; "
                        f"every keypoint needs its own name")
    files = {img["id"]: str(img["file_name"]) for img in data["images"]}
    rows: list[tuple[str, Any, np.ndarray]] = []
    seen = set()
    for i, ann in enumerate(data["annotations"]):
        if ann.get("category_id") != cats[0]["id"] or "keypoints" not in ann:
            continue
        if ann.get("image_id") not in files:
            raise DataError(f"{source}: annotations[{i}].image_id = {ann.get('image_id')!r} is not in images[].id")
        rows.append((files[ann["image_id"]], ann.get("id"), _points(ann["keypoints"], len(names), source, i)))
        seen.add(ann["image_id"])
    empty = np.full((len(names), 2), np.nan)
    rows += [(f, None, empty) for iid, f in files.items() if iid not in seen]
    pts = np.stack([r[2] for r in rows]) if rows else np.empty((0, len(names), 2))
    df = pd.DataFrame({"image": [r[0] for r in rows], "annotation_id": [r[1] for r in rows]})
    cols = {c: pts[:, k, a] for k, n in enumerate(names) for a, c in enumerate((f"{n}_x", f"{n}_y"))}
    return AnnotationTable(pd.concat([df, pd.DataFrame(cols)], axis=1), tuple(names), (), source)


def _points(flat: Any, k: int, source: str, index: int) -> np.ndarray:
    arr = np.asarray(flat, dtype=np.float64)
    if arr.shape != (3 * k,):
        raise DataError(f"{source}: annotations[{index}].keypoints has {arr.size} numbers; expected "
                        f"3 x {k} keypoints = {3 * k} ([x, y, v] per keypoint)")
    xyv = arr.reshape(k, 3)
    out = xyv[:, :2].copy()
    out[xyv[:, 2] == 0] = np.nan  # v = 0: not labelled
    return out

