"""Write an AnnotationTable back out: a CSV table, or a VIA 2 project to review in VIA.

Both writers are atomic (a temporary file in the same folder, then ``os.replace``).
Reading either file back with ``read_annotations`` gives the same table.

CSV: image paths relative to the CSV's folder when the image lies below it, so the CSV
can be moved together with its images; other paths stay absolute.

VIA 2 project: VIA shows an image from ``_via_settings.core.default_filepath +
filename`` (via.js ``_via_file_resolve_file_to_default_filepath``; with an empty
``default_filepath`` it shows nothing until the user sets the path by hand), and its
"Add Files" re-attaches a chosen file to the entry whose ``filename`` equals the file's
bare name (``project_file_add_local``). So ``default_filepath`` is the images' folder as
a ``file://`` URI (absolute, percent-encoded, trailing slash; it works from a via.html
anywhere on the same machine) and ``filename`` is the bare file name. Images spread over
several folders get their deepest common folder and names relative to it (VIA still
shows them; "Add Files" then cannot match them, which is reported).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.atomic import atomic_path
from cnnkit.data.table import AnnotationTable

log = logging.getLogger("cnnkit")

VIA_FORMAT_VERSION = "2.0.10"


def write_csv(table: AnnotationTable, path: str | Path) -> Path:
    """Write ``table.df`` as CSV (``image`` relative to the CSV's folder when possible).

    Missing points are written as empty cells. Returns the path written.
    """
    path = Path(path)
    df = table.df.assign(image=[_relative(p, path.parent, table) for p in table.images])
    _atomic_write(path, lambda fh: df.to_csv(fh, index=False, lineterminator="\n"))
    return path


def write_via(table: AnnotationTable, path: str | Path, *, attribute: str = "landmark") -> Path:
    """Write a VIA 2 project JSON: one point region per present landmark, named by ``attribute``.

    ``_via_attributes.region[attribute]`` is a dropdown of the landmark names, in order;
    a class table's labels go to a file attribute ``label`` (a dropdown of the classes).
    ``size`` is the image file's size in bytes (-1 when unknown, e.g. zip members); NaN
    points are simply absent. Returns the path written.
    """
    path = Path(path)
    meta: dict[str, Any] = {}
    pts = table.points() if table.landmarks else np.empty((len(table), 0, 2))
    labels = table.df["label"].astype(str).tolist() if table.classes else None
    folder, names = via_locations(table)
    for i, (image, name) in enumerate(zip(table.images, names, strict=True)):
        size = _file_size(image) if table.zip is None else -1
        regions = [{"shape_attributes": {"name": "point", "cx": float(x), "cy": float(y)},
                    "region_attributes": {attribute: lm}}
                   for lm, (x, y) in zip(table.landmarks, pts[i], strict=True) if np.isfinite([x, y]).all()]
        file_attrs = {"label": labels[i]} if labels is not None else {}
        meta[f"{name}{size}"] = {"filename": name, "size": size, "regions": regions, "file_attributes": file_attrs}
    project = {
        "_via_settings": _settings(path.stem, attribute, folder),
        "_via_img_metadata": meta,
        "_via_attributes": {"region": _dropdown(attribute, table.landmarks, "landmark name") if table.landmarks
                            else {}, "file": _dropdown("label", table.classes, "class") if table.classes else {}},
        "_via_data_format_version": VIA_FORMAT_VERSION,
        "_via_image_id_list": list(meta),
    }
    _atomic_write(path, lambda fh: json.dump(project, fh, ensure_ascii=False))
    return path


def _dropdown(name: str, options: tuple[str, ...], what: str) -> dict[str, Any]:
    return {name: {"type": "dropdown", "description": what, "options": {o: o for o in options},
                   "default_options": {}}}


def via_locations(table: AnnotationTable) -> tuple[str, list[str]]:
    """(``default_filepath``, ``filename`` per row) so that VIA finds every image.

    One folder: its ``file://`` URI and bare names. Several: their common folder and
    POSIX paths relative to it. Zip members: no folder (VIA cannot open archives).
    """
    if table.zip is not None:
        return "", table.images
    images = [os.path.abspath(p) for p in table.images]
    folders = sorted({os.path.dirname(p) for p in images})
    try:
        root = os.path.commonpath(folders) if folders else ""
    except ValueError:  # Windows paths on different drives: no common folder
        log.info("images on different drives: VIA needs its default path set by hand")
        return "", [Path(p).as_posix() for p in images]
    if len(folders) > 1:
        log.info("images in %d folders: VIA shows them from %s, but its 'Add Files' can re-attach moved "
                 "images only when they share one folder", len(folders), root)
    return _folder_uri(root), [Path(os.path.relpath(p, root)).as_posix() for p in images]


def _folder_uri(folder: str) -> str:
    """``file:///abs/folder/``: VIA appends the file name to it as written."""
    if not folder:
        return ""
    uri = Path(folder).as_uri()
    return uri if uri.endswith("/") else uri + "/"


def _settings(project_name: str, attribute: str, folder: str = "") -> dict[str, Any]:
    """VIA 2's own defaults, labelling and colouring regions by landmark name, images from ``folder``."""
    return {
        "ui": {"annotation_editor_height": 25, "annotation_editor_fontsize": 0.8, "leftsidebar_width": 18,
               "image_grid": {"img_height": 80, "rshape_fill": "none", "rshape_fill_opacity": 0.3,
                              "rshape_stroke": "yellow", "rshape_stroke_width": 2, "show_region_shape": True,
                              "show_image_policy": "all"},
               "image": {"region_label": attribute, "region_color": attribute,
                         "region_label_font": "10px Sans", "on_image_annotation_editor_placement": "NEAR_REGION"}},
        "core": {"buffer_size": 18, "filepath": {}, "default_filepath": folder},
        "project": {"name": project_name},
    }


def _relative(image: str, base: Path, table: AnnotationTable) -> str:
    """``image`` relative to ``base`` (POSIX separators) when below it; zip members unchanged."""
    if table.zip is not None or not os.path.isabs(image):
        return image
    rel = os.path.relpath(image, os.path.abspath(base))
    return image if rel.startswith("..") else Path(rel).as_posix()


def _file_size(image: str) -> int:
    try:
        return os.path.getsize(image)
    except OSError:
        return -1


def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Write text through ``cnnkit.atomic`` (temporary file, fsync, rename over ``path``)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        write(fh)
