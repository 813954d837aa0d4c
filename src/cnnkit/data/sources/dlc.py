"""DeepLabCut ``CollectedData_*.csv`` -> AnnotationTable (paths still as written).

Two layouts are read: the classic one (one index column holding
``labeled-data/<video>/<image>``) and the newer one (three index columns: ``labeled-data``,
video, image). Header rows are ``scorer``, optionally ``individuals`` (multi-animal
projects: landmarks are named ``<individual>_<bodypart>``), ``bodyparts``, ``coords``.
Empty cells are missing points (NaN); ``likelihood`` columns are ignored. The ``.h5``
twin of the file is not read (use the CSV beside it).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from cnnkit.data.table import AnnotationTable
from cnnkit.errors import DataError


def read_dlc(path: Path) -> tuple[AnnotationTable, list[Path]]:
    """The table and extra roots (the DLC project folder above ``labeled-data``) for relative paths."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    header = _header_rows(rows, path)
    coords = rows[len(header) - 1]
    n_index = 1 + next((i for i, c in enumerate(coords[1:]) if c.strip()), 0)
    names, cols = _landmark_columns(header, n_index, path)
    data = rows[len(header):]
    images = ["/".join(c for c in r[:n_index] if c) for r in data]
    out: dict[str, object] = {"image": images}
    for name in names:
        for axis in ("x", "y"):
            out[f"{name}_{axis}"] = [_cell(r, cols[(name, axis)], path, i + len(header)) for i, r in enumerate(data)]
    table = AnnotationTable(pd.DataFrame(out), tuple(names), (), str(path))
    project = next((p.parent for p in path.resolve().parents if p.name == "labeled-data"), None)
    return table, [project] if project is not None else []


def _header_rows(rows: list[list[str]], path: Path) -> list[list[str]]:
    if not rows or not rows[0] or rows[0][0].strip() != "scorer":
        raise DataError(f"{path}: not a DeepLabCut CollectedData CSV: the first cell must be 'scorer'")
    for i, row in enumerate(rows[:5]):
        if row and row[0].strip() == "coords":
            return rows[: i + 1]
    raise DataError(f"{path}: DeepLabCut header has no 'coords' row within the first 5 rows")


def _landmark_columns(header: list[list[str]], n_index: int, path: Path
                      ) -> tuple[list[str], dict[tuple[str, str], int]]:
    by_key = {row[0].strip(): row for row in header}
    if "bodyparts" not in by_key:
        raise DataError(f"{path}: DeepLabCut header has no 'bodyparts' row")
    parts, coords, animals = by_key["bodyparts"], by_key["coords"], by_key.get("individuals")
    names: list[str] = []
    cols: dict[tuple[str, str], int] = {}
    for j in range(n_index, len(coords)):
        axis = coords[j].strip()
        if axis not in ("x", "y"):
            continue  # likelihood
        name = f"{animals[j]}_{parts[j]}" if animals else parts[j]
        if name not in names:
            names.append(name)
        if (name, axis) in cols:  # a repeated body part would silently overwrite the earlier column
            raise DataError(f"{path}: body part {name!r} has two {axis!r} columns ({cols[(name, axis)] + 1} and "
                            f"{j + 1}); every body part needs its own name")
        cols[(name, axis)] = j
    unpaired = [n for n in names if (n, "x") not in cols or (n, "y") not in cols]
    if unpaired or not names:
        raise DataError(f"{path}: DeepLabCut body parts without both x and y columns: {unpaired or 'all'}")
    return names, cols


def _cell(row: list[str], j: int, path: Path, line: int) -> float:
    text = row[j].strip() if j < len(row) else ""
    if not text:
        return np.nan
    try:
        return float(text)
    except ValueError as exc:
        raise DataError(f"{path}: line {line + 1}, column {j + 1}: {text!r} is not a number") from exc
