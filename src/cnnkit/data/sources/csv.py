"""CSV files and pandas DataFrames -> AnnotationTable (paths still as written).

Landmark layouts recognised (first match wins, or name them with ``landmarks=``):
- the seed's ``x0..xN`` and ``y0..yN`` columns -> landmarks ``p0..pN`` (columns
  ``p0_x, p0_y, ...``);
- ``<name>_x`` / ``<name>_y`` column pairs -> landmark ``<name>``, in column order.

Classes come from one label column (names, integers, or one-hot vectors written as
``"[0, 1, 0]"``) or from several 0/1 columns (``label_column=["ants", "bees"]``).
"""

from __future__ import annotations

import csv as _csv
import json
import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cnnkit.data.table import AnnotationTable
from cnnkit.errors import DataError, did_you_mean

log = logging.getLogger("cnnkit")

PATH_COLUMNS = ("image", "filename", "file", "path", "fullpath", "fullname")
LABEL_COLUMNS = ("label", "class", "category")
Landmarks = Sequence[str] | Mapping[str, tuple[str, str]] | None
_SEED_X, _SEED_Y = re.compile(r"^x(\d+)$"), re.compile(r"^y(\d+)$")


def load_csv(path: Path) -> pd.DataFrame:
    """Read a CSV file; a UTF-8 BOM and ``;``/tab separators are handled.

    Raises:
        DataError: the file is JSON (e.g. a VIA project), a VIA or DeepLabCut CSV, or unparsable.
    """
    raw = path.read_bytes()[:65536]
    encoding = "utf-8-sig" if raw.startswith(b"\xef\xbb\xbf") else "utf-8"
    head = raw.decode(encoding, errors="replace").lstrip("\ufeff")
    first = head.lstrip()[:1]
    if first in ("{", "["):
        kind = "a VIA project" if "_via_" in head else "JSON"
        raise DataError(f"{path}: this file is {kind}, not a CSV. Read it with read_annotations(path) "
                        f"without format='csv' (or format='via').")
    line = head.splitlines()[0] if head else ""
    if "region_shape_attributes" in line:
        raise DataError(f"{path}: this is a VIA CSV export, not a plain table. Use format='via'.")
    if line.startswith("scorer"):
        raise DataError(f"{path}: this is a DeepLabCut CollectedData CSV. Use format='dlc'.")
    try:
        sep = _csv.Sniffer().sniff(line, delimiters=",;\t").delimiter if line else ","
    except _csv.Error:
        sep = ","
    try:
        # index_col=False: a row with more fields than the header must not silently turn the
        # first columns into an index (shifting every value); pandas warns, and that is an error.
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, sep=sep, encoding=encoding, index_col=False)
    except pd.errors.ParserWarning:
        n = len(next(_csv.reader([line], delimiter=sep)))
        rows = _csv.reader(path.read_text(encoding=encoding, errors="replace").splitlines(), delimiter=sep)
        at, width = next(((i, len(r)) for i, r in enumerate(rows, 1) if len(r) > n), (0, 0))
        raise DataError(f"{path}: line {at} has {width} fields but the header has {n} ({line[:80]!r}). "
                        f"Quote cells that contain {sep!r} (e.g. decimal commas) and remove trailing "
                        f"separators.") from None
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: cannot parse as CSV (separator {sep!r}): {exc}") from exc


def read_csv_table(
    frame: pd.DataFrame,
    *,
    source: str,
    image_column: str | None = None,
    label_column: str | Sequence[str] | None = None,
    landmarks: Landmarks = None,
) -> AnnotationTable:
    """A table from a DataFrame (a loaded CSV); the caller's frame is not modified."""
    if frame.empty and len(frame.columns) == 0:
        raise DataError(f"{source}: the table is empty (no columns)")
    img_col = pick_image_column(frame, image_column, source)
    pairs = landmark_columns(frame, landmarks, source)
    out = pd.DataFrame({"image": frame[img_col].astype(str)})
    if frame[img_col].isna().any():
        rows = np.flatnonzero(frame[img_col].isna().to_numpy())[:5].tolist()
        raise DataError(f"{source}: column {img_col!r} is empty in rows {rows}. Every row needs an image path.")
    used = {img_col} | {c for xy in pairs.values() for c in xy}
    classes: tuple[str, ...] = ()
    label_cols = _label_columns(frame, label_column, source) if not pairs else []
    if label_cols:
        out["label"], classes = _labels(frame, label_cols, source)
        used |= set(label_cols)
    points = {f"{n}_{a}": _numbers(frame[c], c, source) for n, xy in pairs.items() for a, c in zip("xy", xy, strict=True)}
    rest = [c for c in frame.columns if c not in used and c not in out.columns and c not in points]
    out = pd.concat([out, pd.DataFrame(points), frame[rest].reset_index(drop=True)], axis=1)
    if not pairs and not classes:
        log.info("%s: no landmark or label columns found; a table of images only", source)
    return AnnotationTable(out.reset_index(drop=True), tuple(pairs), classes, source)


def pick_image_column(frame: pd.DataFrame, image_column: str | None, source: str) -> str:
    """The path column: ``image_column`` or the first of PATH_COLUMNS present (any case)."""
    cols = [str(c) for c in frame.columns]
    if image_column is not None:
        if image_column not in cols:
            raise DataError(f"{source}: image_column {image_column!r} not found."
                            f"{did_you_mean(image_column, cols)} Columns: {cols}")
        return image_column
    lower = {c.lower(): c for c in reversed(cols)}
    found = [lower[n] for n in PATH_COLUMNS if n in lower]
    if not found:
        raise DataError(f"{source}: no image path column (looked for {', '.join(PATH_COLUMNS)}). "
                        f"Columns: {cols[:12]}. Pass image_column=<the column with the paths>.")
    if len(found) > 1:
        log.info("%s: using column %r for image paths (also found %s; pass image_column= to choose)",
                 source, found[0], found[1:])
    return found[0]


def landmark_columns(frame: pd.DataFrame, landmarks: Landmarks, source: str) -> dict[str, tuple[str, str]]:
    """Landmark name -> (x column, y column), in landmark order."""
    cols = [str(c) for c in frame.columns]
    if isinstance(landmarks, Mapping):
        pairs = {str(k): (str(v[0]), str(v[1])) for k, v in landmarks.items()}
    elif landmarks is not None:
        pairs = _named_pairs([str(n) for n in landmarks], cols, source)
    else:
        pairs = _seed_pairs(cols) or _suffix_pairs(cols, source)
    absent = [c for xy in pairs.values() for c in xy if c not in cols]
    if absent:
        raise DataError(f"{source}: landmark columns {absent[:6]} not found."
                        f"{did_you_mean(absent[0], cols)} Columns: {cols[:12]}")
    return pairs


def _seed_pairs(cols: Sequence[str]) -> dict[str, tuple[str, str]]:
    xs = {int(m.group(1)): c for c in cols if (m := _SEED_X.match(c))}
    ys = {int(m.group(1)): c for c in cols if (m := _SEED_Y.match(c))}
    if not xs or set(xs) != set(ys):
        return {}
    return {f"p{i}": (xs[i], ys[i]) for i in sorted(xs)}


def _suffix_pairs(cols: Sequence[str], source: str) -> dict[str, tuple[str, str]]:
    names = [c[:-2] for c in cols if c.endswith("_x") and len(c) > 2]
    unpaired = [f"{n}_x" for n in names if f"{n}_y" not in cols]
    unpaired += [c for c in cols if c.endswith("_y") and len(c) > 2 and f"{c[:-2]}_x" not in cols]
    if unpaired:
        raise DataError(f"{source}: landmark columns without a partner: {unpaired[:6]}. Every <name>_x needs "
                        f"a <name>_y; or pass landmarks=[names] / {{name: (x_col, y_col)}}.")
    return {n: (f"{n}_x", f"{n}_y") for n in names}


def _named_pairs(names: Sequence[str], cols: Sequence[str], source: str) -> dict[str, tuple[str, str]]:
    if all(f"{n}_x" in cols for n in names):
        return {n: (f"{n}_x", f"{n}_y") for n in names}
    seed = _seed_pairs(cols)
    if len(seed) == len(names):
        return {n: xy for n, xy in zip(names, seed.values(), strict=True)}
    raise DataError(f"{source}: landmarks={list(names)[:4]}... ({len(names)} names) match neither "
                    f"<name>_x/<name>_y columns nor the {len(seed)} x0..xN/y0..yN columns")


def _numbers(col: pd.Series, name: str, source: str) -> pd.Series:
    num = pd.to_numeric(col, errors="coerce").astype(np.float64)
    if pd.api.types.is_numeric_dtype(col):
        return num.reset_index(drop=True)  # the fast path: nothing to coerce
    suspect = num.isna() & col.notna()  # check only cells that became NaN (cheap on 100k rows)
    bad = pd.Series(False, index=col.index)
    bad[suspect] = col[suspect].astype(str).str.strip() != ""
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{source}: row {i}, column {name!r}: {col.iloc[i]!r} is not a number "
                        f"({int(bad.sum())} such cells). Landmark cells hold pixels; leave missing ones empty.")
    return num.reset_index(drop=True)


def _label_columns(frame: pd.DataFrame, label_column: str | Sequence[str] | None, source: str) -> list[str]:
    cols = [str(c) for c in frame.columns]
    wanted = [label_column] if isinstance(label_column, str) else list(label_column or [])
    if not wanted:
        lower = {c.lower(): c for c in cols}
        wanted = [lower[n] for n in LABEL_COLUMNS if n in lower][:1]
    for c in wanted:
        if c not in cols:
            raise DataError(f"{source}: label column {c!r} not found.{did_you_mean(c, cols)} Columns: {cols[:12]}")
    return wanted


def _labels(frame: pd.DataFrame, cols: Sequence[str], source: str) -> tuple[pd.Series, tuple[str, ...]]:
    """(label names per row, class names) from one column or several one-hot columns."""
    if len(cols) > 1:
        onehot, names = frame[list(cols)].to_numpy(), [str(c) for c in cols]
    else:
        values = frame[cols[0]].reset_index(drop=True)
        if values.isna().any():
            rows = np.flatnonzero(values.isna().to_numpy())[:5].tolist()
            raise DataError(f"{source}: column {cols[0]!r} has no label in rows {rows}")
        text = values.astype(str).str.strip()
        if text.empty or not text.str.startswith("[").all():  # no rows: no one-hot width to read
            return _plain_labels(values, text)
        onehot = np.array([_parse_vector(t, i, cols[0], source) for i, t in enumerate(text)], dtype=object)
        names = [str(i) for i in range(len(onehot[0]))]
    return _from_onehot(onehot, names, cols, source)


def _plain_labels(values: pd.Series, text: pd.Series) -> tuple[pd.Series, tuple[str, ...]]:
    if pd.api.types.is_numeric_dtype(values) and (values == values.round()).all():
        ints = values.astype(np.int64)
        return ints.astype(str), tuple(str(v) for v in sorted(ints.unique()))
    return text, tuple(sorted(text.unique()))


def _parse_vector(text: str, row: int, col: str, source: str) -> list[float]:
    try:
        vec = json.loads(text.replace("(", "[").replace(")", "]"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{source}: row {row}, column {col!r}: {text!r} is not a one-hot list like [0, 1]") from exc
    return [float(v) for v in vec]


def _from_onehot(onehot: np.ndarray, names: list[str], cols: Sequence[str], source: str
                 ) -> tuple[pd.Series, tuple[str, ...]]:
    try:
        mat = np.array([np.asarray(r, dtype=np.float64) for r in onehot])
    except ValueError as exc:
        raise DataError(f"{source}: one-hot vectors in {list(cols)} have different lengths") from exc
    bad = np.flatnonzero(~((mat == 1).sum(axis=1) == 1) | ~np.isin(mat, (0, 1)).all(axis=1))
    if len(bad):
        raise DataError(f"{source}: rows {bad[:5].tolist()} of {list(cols)} are not one-hot "
                        f"(exactly one 1, the rest 0). First: {mat[bad[0]].tolist()}")
    return pd.Series([names[i] for i in mat.argmax(axis=1)]), tuple(names)
