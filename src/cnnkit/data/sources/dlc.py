"""DeepLabCut ``CollectedData_*.csv`` -> AnnotationTable (paths still as written).

Two layouts are read: the classic one (one index column holding
``labeled-data/<video>/<image>``) and the newer one (three index columns: ``labeled-data``,
video, image). Header rows are ``scorer``, optionally ``individuals`` (multi-animal
projects: landmarks are named ``<individual>_<bodypart>``), ``bodyparts``, ``coords``.
Empty cells are missing points (NaN); ``likelihood`` columns are ignored.

The ``.h5`` twin (``CollectedData_<scorer>.h5``, pandas' "fixed" HDF5 layout under the key
``df_with_missing``, or ``keypoints`` as napari-deeplabcut saves it) is read with h5py from its
arrays, never through pandas/PyTables, which would unpickle any Python object stored in it:
string and integer labels only; a file holding pickled objects is refused. Its index is the path
string (older files) or DeepLabCut 2.2+'s MultiIndex ``('labeled-data', video, file)``, joined
with ``/`` as in the CSV.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cnnkit.data.table import AnnotationTable
from cnnkit.errors import ConfigError, DataError

H5_KEYS = ("df_with_missing", "keypoints")  # DeepLabCut's key; napari-deeplabcut's


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
    return _table(out, names, path)


def read_dlc_h5(path: Path) -> tuple[AnnotationTable, list[Path]]:
    """``CollectedData_*.h5`` -> the same table and roots as :func:`read_dlc` gives for its CSV twin."""
    try:
        import h5py
    except ImportError:
        raise ConfigError(f"{path}: reading DeepLabCut .h5 files needs h5py: pip install 'cnnkit[formats]'") from None
    with h5py.File(path, "r") as f:
        key = next((k for k in H5_KEYS if k in f), None)
        if key is None:
            raise DataError(f"{path}: no {' or '.join(repr(k) for k in H5_KEYS)} group: not DeepLabCut labels")
        group = f[key]
        if _text(group.attrs.get("pandas_type", b"")) != "frame" or "axis0_variety" not in group.attrs:
            raise DataError(f"{path}: {key!r} is not in pandas' fixed layout (DeepLabCut's CollectedData); "
                            f"read the CollectedData CSV beside it")
        columns = _h5_index(group, "axis0", path)
        images = ["/".join(str(c) for c in row if c != "") for row in _h5_index(group, "axis1", path)]
        values = _h5_values(group, columns, len(images), path)
    levels = _level_names(len(columns[0]) if columns else 0)
    header = [[level, *(str(c[i]) for c in columns)] for i, level in enumerate(levels)]
    names, cols = _landmark_columns(header, 1, path)
    out: dict[str, object] = {"image": images}
    for name in names:
        for axis in ("x", "y"):
            out[f"{name}_{axis}"] = values[:, cols[(name, axis)] - 1]
    return _table(out, names, path)


def _table(out: dict[str, object], names: list[str], path: Path) -> tuple[AnnotationTable, list[Path]]:
    table = AnnotationTable(pd.DataFrame(out), tuple(names), (), str(path))
    project = next((p.parent for p in path.resolve().parents if p.name == "labeled-data"), None)
    return table, [project] if project is not None else []


def _level_names(n: int) -> list[str]:
    """DeepLabCut's column levels: scorer, (individuals,) bodyparts, coords."""
    if n == 4:
        return ["scorer", "individuals", "bodyparts", "coords"]
    return ["scorer", "bodyparts", "coords"][-n:] if n else ["coords"]


def _h5_index(group: Any, key: str, path: Path) -> list[tuple[Any, ...]]:
    """pandas' fixed-layout index ``key`` (regular or MultiIndex) as one tuple per entry."""
    if _text(group.attrs.get(f"{key}_variety", b"")) == "regular":
        return [(v,) for v in _h5_labels(group[key], path)]
    levels, codes = [], []
    for i in range(int(group.attrs[f"{key}_nlevels"])):
        levels.append(_h5_labels(group[f"{key}_level{i}"], path))
        codes.append(np.asarray(group[f"{key}_label{i}"][()], dtype=np.int64))
    return [tuple(lev[c] if c >= 0 else "" for lev, c in zip(levels, row, strict=True)) for row in zip(*codes, strict=True)]


def _h5_labels(node: Any, path: Path) -> list[Any]:
    """The labels of one index node: strings or integers, never unpickled objects."""
    kind = _text(node.attrs.get("kind", b""))
    data = node[()]
    if kind == "string":
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.atleast_1d(data)]
    if kind == "integer":
        return [int(v) for v in np.atleast_1d(data)]
    raise DataError(f"{path}: {node.name} holds labels of kind {kind!r} (pickled Python objects are not read); "
                    f"read the CollectedData CSV beside it")


def _h5_values(group: Any, columns: list[tuple[Any, ...]], n_rows: int, path: Path) -> np.ndarray:
    """(rows, columns) floats from the blocks pandas split the frame into, in ``columns`` order."""
    out = np.full((n_rows, len(columns)), np.nan)
    where = {c: j for j, c in enumerate(columns)}
    for b in range(int(group.attrs.get("nblocks", 0))):
        items = _h5_index(group, f"block{b}_items", path)
        node = group[f"block{b}_values"]
        if not np.issubdtype(node.dtype, np.number):
            raise DataError(f"{path}: {node.name} is not numeric; read the CollectedData CSV beside it")
        block = np.asarray(node[()], dtype=np.float64)
        block = block if int(node.attrs.get("transposed", 0)) else block.T  # -> (rows, items)
        for i, item in enumerate(items):
            out[:, where[item]] = block[:, i]
    return out


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


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
