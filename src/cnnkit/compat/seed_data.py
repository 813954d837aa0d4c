"""The seed's batch loaders (``df_x_y``, ``df_xy``, ``batch_params``) over cnnkit's tables and decoder.

Part of the seed API (``cnnkit.compat.seed_api`` re-exports these names); its deviations from
the seed are listed there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cnnkit.data.dataset import TableDataset
from cnnkit.data.table import AnnotationTable
from cnnkit.errors import DataError, did_you_mean


def _need_columns(df: pd.DataFrame, columns: Sequence[Any], what: str) -> None:
    for col in columns:
        if col not in df.columns:
            raise DataError(f"{what}: column {col!r} not found in the DataFrame.{did_you_mean(col, df.columns)} "
                            f"Columns: {list(df.columns)[:12]}...")  # fmt: skip


def _as_list(labels: Any) -> list[Any]:
    return [labels] if isinstance(labels, str) else list(labels)


def _image_table(df: pd.DataFrame, x_label: str, zip_file: Any) -> AnnotationTable:
    _need_columns(df, [x_label], "x_label")
    frame = pd.DataFrame({"image": df[x_label].astype(str).to_numpy()})
    return AnnotationTable(frame, zip=None if zip_file is None else Path(zip_file), source="<seed DataFrame>")


def _landmark_table(df: pd.DataFrame, x_label: str, xp_label: Any, yp_label: Any, zip_file: Any) -> AnnotationTable:
    """Seed columns -> canonical table: ``x_label`` -> 'image', xp[i]/yp[i] -> ``p{i}_x`` / ``p{i}_y``."""
    xs, ys = _as_list(xp_label), _as_list(yp_label if yp_label is not None else [])
    if len(xs) != len(ys) or not xs:
        raise DataError(f"xp_label and yp_label must list the same number (>= 1) of columns. "
                        f"Received {len(xs)} x columns and {len(ys)} y columns.")  # fmt: skip
    _need_columns(df, xs + ys, "xp_label/yp_label")
    base = _image_table(df, x_label, zip_file)
    columns: dict[str, np.ndarray] = {}
    for i, (cx, cy) in enumerate(zip(xs, ys, strict=True)):
        for col, key in ((cx, f"p{i}_x"), (cy, f"p{i}_y")):
            try:
                columns[key] = pd.to_numeric(df[col]).to_numpy(dtype=np.float64)
            except (ValueError, TypeError) as exc:
                raise DataError(f"landmark column {col!r} must hold numbers: {exc}") from None
    frame = pd.concat([base.df, pd.DataFrame(columns)], axis=1)  # one insert: no fragmentation
    names = tuple(f"p{i}" for i in range(len(xs)))
    return AnnotationTable(frame, landmarks=names, source=base.source, zip=base.zip)


def _one_hot(df: pd.DataFrame, y_label: str) -> np.ndarray:
    """Column of one-hot vectors (each (C,) or (1, C)) -> (N, C) float64."""
    _need_columns(df, [y_label], "y_label")
    rows = [np.asarray(v, dtype=np.float64).reshape(-1) for v in df[y_label]]
    sizes = {len(r) for r in rows}
    if len(sizes) > 1:
        bad = next(i for i, r in enumerate(rows) if len(r) != len(rows[0]))
        raise DataError(f"y_label {y_label!r}: one-hot vectors differ in length (row {bad} has {len(rows[bad])}, "
                        f"row 0 has {len(rows[0])}). Every row needs one entry per class.")  # fmt: skip
    return np.stack(rows) if rows else np.zeros((0, 0))


def _class_table(df: pd.DataFrame, x_label: str, y_label: str, zip_file: Any) -> AnnotationTable:
    """One-hot column -> canonical 'label' column with class names '0'..'C-1'."""
    onehot = _one_hot(df, y_label)
    if onehot.size == 0:
        raise DataError(f"y_label {y_label!r}: no rows (or empty one-hot vectors) to take classes from")
    base = _image_table(df, x_label, zip_file)
    frame = base.df.assign(label=[str(i) for i in onehot.argmax(axis=1)])
    classes = tuple(str(i) for i in range(onehot.shape[1]))
    return AnnotationTable(frame, classes=classes, source=base.source, zip=base.zip)


def _images(table: AnnotationTable, resize_wh: Sequence[int], gray: bool) -> tuple[np.ndarray, np.ndarray]:
    """Decode every row: NHWC uint8 images and (N, 2) float64 scales (fx, fy)."""
    ds = TableDataset(table, size=(int(resize_wh[0]), int(resize_wh[1])), grayscale=bool(gray))
    loaded = [ds.load(i) for i in range(len(ds))]
    if not loaded:
        return np.zeros((0, ds.size[1], ds.size[0], 1 if gray else 3), np.uint8), np.zeros((0, 2))
    return np.stack([a for a, _ in loaded]), np.array([g.scale for _, g in loaded], dtype=np.float64)


def _rows(df: pd.DataFrame, offset: int, batch_size: int) -> pd.DataFrame:
    if int(offset) < 0 or int(batch_size) < 1:
        raise DataError(f"need offset >= 0 and batch_size >= 1. Received offset={offset}, batch_size={batch_size}")
    return df.iloc[int(offset) : int(offset) + int(batch_size)]


def df_x_y(df: pd.DataFrame, x_label: str, xp_label: Sequence[str] | None = None, yp_label: Sequence[str] | None = None,
           batch_size: int = 5, offset: int = 0, resize_wh: Sequence[int] = (32, 32), toGray: bool = False,
           zip_file: str | os.PathLike[str] | None = None) -> Any:  # fmt: skip
    """Seed API: rows ``offset .. offset+batch_size`` as resized images and landmarks.

    Shapes:
        imgs: (B, height, width, C) uint8, C = 1 when ``toGray`` else 3; ``resize_wh`` = (width, height).
        fxs, fys: (B, K) float64, the ``xp_label`` / ``yp_label`` columns times ``fx = width / W``
            and ``fy = height / H`` (landmarks in resized pixels). Only ``imgs`` when ``xp_label`` is None.
    """
    rows = _rows(df, offset, batch_size)
    if xp_label is None:
        return _images(_image_table(rows, x_label, zip_file), resize_wh, toGray)[0]
    table = _landmark_table(rows, x_label, xp_label, yp_label, zip_file)
    imgs, scale = _images(table, resize_wh, toGray)
    pts = table.points()  # (B, K, 2) original pixels, float64
    return imgs, pts[:, :, 0] * scale[:, :1], pts[:, :, 1] * scale[:, 1:]


def df_xy(df: pd.DataFrame, x_label: str, y_label: str | None, batch_size: int = 5, offset: int = 0,
          resize_wh: Sequence[int] = (32, 32), toGray: bool = False,
          zip_file: str | os.PathLike[str] | None = None) -> Any:  # fmt: skip
    """Seed API: rows ``offset .. offset+batch_size`` as resized images and one-hot targets.

    Shapes:
        imgs as :func:`df_x_y`; targets (B, n_classes) float64. Only ``imgs`` when ``y_label`` is None.
    """
    rows = _rows(df, offset, batch_size)
    imgs, _ = _images(_image_table(rows, x_label, zip_file), resize_wh, toGray)
    return imgs if y_label is None else (imgs, _one_hot(rows, y_label))


def batch_params(df_xy_args: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """Seed API: ``(rows, full_batches, batch_size, rows_in_full_batches)`` of the dict's DataFrame."""
    rows, size = int(df_xy_args["df"].shape[0]), int(df_xy_args.get("batch_size", 5))
    return rows, rows // size, size, size * (rows // size)
