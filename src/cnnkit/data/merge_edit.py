"""The surgical half of ``merge``: apply a merge's edits to the labels document itself.

``merge_annotations`` decides what changes (``Edit``: one image, the landmarks or label to
set); this module writes exactly that into the file as it is, and nothing else:

- VIA 2 project: only the point regions of the merged landmarks change (``cx``/``cy`` of the
  region that carries the landmark's name, so its other region attributes stay; a point
  removed in review removes that region; a new point is appended). Other regions and their
  order, file attributes, ``_via_settings`` (project name included), ``_via_attributes`` (an
  option or the landmark attribute is only added when missing) and untouched images are
  kept as parsed. Added images are appended (and to ``_via_image_id_list``).
- CSV table: only the cells of the merged landmarks (or the label) change; every other cell
  keeps its text, the columns their order and names (``x0..``/``y0..`` stay), the separator,
  line ends and byte-order mark stay. Added images are appended as rows.

Row ``i`` of the table read from the file is the file's ``i``-th image (VIA) or row (CSV):
both readers keep every row, in order, with ``unannotated="keep"``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cnnkit.atomic import atomic_write_bytes
from cnnkit.data.sources.csv import landmark_columns, pick_image_column
from cnnkit.data.sources.via import local_folder
from cnnkit.data.table import AnnotationTable
from cnnkit.errors import DataError

log = logging.getLogger("cnnkit")


@dataclass(frozen=True)
class Edit:
    """Set ``names`` (landmarks, or ``("label",)``) of one image to the corrected file's row ``source``.

    ``row`` is the labels file's row, None for an image it does not hold yet (appended).
    """

    row: int | None
    source: int
    image: str
    names: tuple[str, ...]


# -- VIA 2 projects -----------------------------------------------------------------------
def edit_via(doc: dict[str, Any], edits: list[Edit], new: AnnotationTable, attribute: str, *,
             base: Path) -> dict[str, Any]:
    """A copy of the parsed project ``doc`` with ``edits`` applied (points named by ``attribute``).

    ``base``: the folder the project's relative file names are read against (for added images).
    """
    doc = json.loads(json.dumps(doc))  # a deep copy: the caller's document is never changed
    meta = doc["_via_img_metadata"]
    keys = list(meta)
    points = new.points()
    for edit in edits:
        if edit.row is None:
            _add_entry(doc, edit, points[edit.source], new.landmarks, attribute, base)
            continue
        regions = meta[keys[edit.row]].setdefault("regions", [])
        if not isinstance(regions, list):
            raise DataError(f"_via_img_metadata[{keys[edit.row]!r}]: 'regions' is not a list (a VIA 1 file?); "
                            f"merge writes VIA 2 projects only. Pass out=<another file> (--out).")
        for name in edit.names:
            _set_point(regions, attribute, name, points[edit.source, new.landmarks.index(name)])
    _declare_names(doc, attribute, new.landmarks)
    return doc


def _set_point(regions: list[Any], attribute: str, name: str, xy: np.ndarray) -> None:
    at = next((j for j, r in enumerate(regions) if isinstance(r, dict)
               and (r.get("shape_attributes") or {}).get("name") == "point"
               and (r.get("region_attributes") or {}).get(attribute) == name), None)
    if not np.isfinite(xy).all():
        if at is not None:
            del regions[at]  # removed in review
        return
    if at is None:
        regions.append(_point(attribute, name, xy))
    else:
        regions[at]["shape_attributes"].update(cx=float(xy[0]), cy=float(xy[1]))


def _point(attribute: str, name: str, xy: np.ndarray) -> dict[str, Any]:
    return {"shape_attributes": {"name": "point", "cx": float(xy[0]), "cy": float(xy[1])},
            "region_attributes": {attribute: name}}


def _add_entry(doc: dict[str, Any], edit: Edit, xy: np.ndarray, names: tuple[str, ...], attribute: str,
               base: Path) -> None:
    meta = doc["_via_img_metadata"]
    root = local_folder(str(((doc.get("_via_settings") or {}).get("core") or {}).get("default_filepath") or ""))
    filename = via_filename(edit.image, Path(base, root) if root else base)
    size = os.path.getsize(edit.image) if os.path.isfile(edit.image) else -1
    key = f"{filename}{size}"
    if key in meta:
        raise DataError(f"_via_img_metadata already has the key {key!r} for another image than {edit.image}; "
                        f"pass out=<another file> (--out)")
    regions = [_point(attribute, n, p) for n, p in zip(names, xy, strict=True) if np.isfinite(p).all()]
    meta[key] = {"filename": filename, "size": size, "regions": regions, "file_attributes": {}}
    if isinstance(doc.get("_via_image_id_list"), list):
        doc["_via_image_id_list"].append(key)


def via_filename(image: str, folder: Path) -> str:
    """``image`` relative to ``folder`` (POSIX) when it lies below it, else its absolute path."""
    rel = os.path.relpath(os.path.abspath(image), os.path.abspath(folder))
    if rel.startswith(".."):
        log.info("%s lies outside the project's image folder %s: written with its absolute path (cnnkit reads "
                 "it; VIA shows it only after its default path is changed)", image, folder)
        return Path(image).absolute().as_posix()
    return Path(rel).as_posix()


def _declare_names(doc: dict[str, Any], attribute: str, names: tuple[str, ...]) -> None:
    """Add the landmark attribute (a dropdown) or its missing options; never remove or reorder any."""
    attrs = doc.setdefault("_via_attributes", {})
    region = attrs.setdefault("region", {})
    spec = region.get(attribute)
    if spec is None:
        region[attribute] = {"type": "dropdown", "description": "landmark name",
                             "options": {n: n for n in names}, "default_options": {}}
    elif isinstance(spec, dict) and spec.get("type") in ("dropdown", "radio"):
        options = spec.setdefault("options", {})
        for n in names:
            options.setdefault(n, n)


def rebase_folder(doc: dict[str, Any], into: Path) -> dict[str, Any]:
    """The project written beside another folder than ``into``'s: its images stay where they were.

    A relative or empty ``default_filepath`` named a folder relative to ``into``; it becomes that
    folder's ``file://`` URI (how cnnkit writes projects), so VIA and cnnkit still find the images.
    """
    core = doc.setdefault("_via_settings", {}).setdefault("core", {})
    current = str(core.get("default_filepath") or "")
    if "://" in current or os.path.isabs(current):
        return doc
    folder = (into.parent / current).resolve()
    core["default_filepath"] = folder.as_uri() + "/"
    return doc


# -- CSV tables ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CsvText:
    """A CSV table as text cells, with what it takes to write it back as it was."""

    cells: pd.DataFrame
    sep: str
    newline: str
    bom: bool


def read_csv_text(path: Path) -> CsvText:
    """Every cell as the text it holds (nothing parsed, nothing turned into NaN)."""
    raw = path.read_bytes()
    bom = raw.startswith(b"\xef\xbb\xbf")
    text = raw.decode("utf-8-sig" if bom else "utf-8")
    first = text.splitlines()[0] if text else ""
    try:
        sep = csv.Sniffer().sniff(first, delimiters=",;\t").delimiter if first else ","
    except csv.Error:
        sep = ","
    cells = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, index_col=False)
    return CsvText(cells, sep, "\r\n" if "\r\n" in text[:65536] else "\n", bom)


def edit_csv(table: CsvText, edits: list[Edit], new: AnnotationTable, *, folder: Path, source: str) -> CsvText:
    """``table`` with the edited cells changed and the added images appended as rows."""
    cells = table.cells.copy()
    image_col = pick_image_column(cells, None, source)
    pairs = landmark_columns(cells, None, source) if new.landmarks else {}
    label_col = _label_column(cells, new, source)
    added = []
    for edit in edits:
        values = _cell_values(new, edit, pairs, label_col)
        if edit.row is None:
            added.append({**dict.fromkeys(cells.columns, ""), image_col: _csv_path(edit.image, folder), **values})
        else:
            for col, value in values.items():
                cells.at[cells.index[edit.row], col] = value
    if added:
        cells = pd.concat([cells, pd.DataFrame(added, columns=cells.columns)], ignore_index=True)
    return CsvText(cells, table.sep, table.newline, table.bom)


def write_csv_text(table: CsvText, path: Path) -> None:
    text = table.cells.to_csv(sep=table.sep, index=False, lineterminator=table.newline)
    atomic_write_bytes(path, (b"\xef\xbb\xbf" if table.bom else b"") + text.encode("utf-8"))


def _label_column(cells: pd.DataFrame, new: AnnotationTable, source: str) -> str | None:
    if not new.classes:
        return None
    lower = {c.lower(): c for c in cells.columns}
    found = [lower[n] for n in ("label", "class", "category") if n in lower]
    if not found:
        raise DataError(f"{source}: merge writes class labels into one label column (label, class or category); "
                        f"this table has none (one-hot columns?). Pass out=<another file> (--out).")
    return found[0]


def _cell_values(new: AnnotationTable, edit: Edit, pairs: dict[str, tuple[str, str]],
                 label_col: str | None) -> dict[str, str]:
    row = new.df.iloc[edit.source]
    if label_col is not None:
        return {label_col: str(row["label"])}
    values = {}
    for name in edit.names:
        x_col, y_col = pairs[name]
        values[x_col], values[y_col] = _number(row[f"{name}_x"]), _number(row[f"{name}_y"])
    return values


def _number(value: Any) -> str:
    return "" if pd.isna(value) else repr(float(value))


def _csv_path(image: str, folder: Path) -> str:
    rel = os.path.relpath(os.path.abspath(image), os.path.abspath(folder))
    return image if rel.startswith("..") else Path(rel).as_posix()
