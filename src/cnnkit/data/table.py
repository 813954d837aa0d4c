"""``AnnotationTable``: the one canonical table every data source produces.

Schema of ``table.df`` (one row per image):
- ``image``: str. An image path (absolute once a reader has resolved it), or a member
  name inside ``table.zip`` when the images live in a zip archive.
- landmarks: ``<name>_x``, ``<name>_y`` float columns, one pair per landmark in
  ``table.landmarks`` order; NaN means the point is missing (never zero).
- classes: ``label``, a str column whose values are in ``table.classes``.
- any other columns are kept and ignored (e.g. ``split``, ``person``).

Convention: pixels of the stored image (after EXIF orientation), origin at the top-left
corner, x right, y down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from cnnkit.errors import DataError

Task = Literal["landmarks", "classes", "none"]


@dataclass(frozen=True)
class AnnotationTable:
    """One row per image, plus what the rows mean.

    Attributes:
        df: the canonical DataFrame (see module docstring). Treat as read-only.
        landmarks: landmark names in output order (empty for class tables).
        classes: class names; the label index is the position here.
        source: where the annotations came from (a path or a short description).
        zip: a zip archive holding the images, or None for files on disk.
        flip_pairs: left/right landmark name pairs swapped by a horizontal flip.
    """

    df: pd.DataFrame
    landmarks: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    source: str = "<DataFrame>"
    zip: Path | None = None
    flip_pairs: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        _check_schema(self)

    # -- what the table holds -------------------------------------------------
    @property
    def task(self) -> Task:
        if self.landmarks:
            return "landmarks"
        if self.classes:
            return "classes"
        return "none"

    def __len__(self) -> int:
        return len(self.df)

    @property
    def images(self) -> list[str]:
        return self.df["image"].astype(str).tolist()

    @property
    def point_columns(self) -> tuple[list[str], list[str]]:
        """(x columns, y columns) in landmark order."""
        return [f"{n}_x" for n in self.landmarks], [f"{n}_y" for n in self.landmarks]

    def points(self) -> np.ndarray:
        """Landmarks as a float64 array (N, K, 2) of (x, y) pixels; NaN where missing."""
        return columns_to_points(self.df, self.landmarks)

    def labels(self) -> np.ndarray:
        """Class indices (N,) int64, positions in ``self.classes``."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[str(v)] for v in self.df["label"]], dtype=np.int64)

    # -- new tables -----------------------------------------------------------
    def with_df(self, df: pd.DataFrame) -> AnnotationTable:
        """Same metadata, other rows (index reset)."""
        return AnnotationTable(
            df.reset_index(drop=True), self.landmarks, self.classes, self.source, self.zip, self.flip_pairs
        )

    def subset(self, rows: Sequence[int] | np.ndarray) -> AnnotationTable:
        """The rows at these positions, in this order."""
        return self.with_df(self.df.iloc[list(rows)])

    def split(
        self, fractions: Sequence[float], *, seed: int = 0, group: str | None = None
    ) -> tuple[AnnotationTable, ...]:
        """Random, seeded split into one table per fraction (e.g. ``(0.8, 0.2)``).

        With ``group`` (a column name), all rows sharing a value land in the same part,
        so e.g. a person never appears in both train and test.

        Example:
            >>> t = AnnotationTable(pd.DataFrame({"image": [f"{i}.png" for i in range(10)]}))
            >>> [len(p) for p in t.split((0.8, 0.2), seed=0)]
            [8, 2]
        """
        fr = np.asarray(fractions, dtype=np.float64)
        if fr.ndim != 1 or len(fr) < 1 or (fr < 0).any() or not np.isclose(fr.sum(), 1.0):
            raise DataError(f"split fractions must be >= 0 and sum to 1. Received: {list(fractions)}")
        rng = np.random.default_rng(seed)
        if group is None:
            keys = np.arange(len(self.df))
        else:
            if group not in self.df.columns:
                raise DataError(f"split group column {group!r} not found. Columns: {list(self.df.columns)}")
            keys = pd.factorize(self.df[group])[0]
        unique = rng.permutation(np.unique(keys))
        bounds = np.round(np.cumsum(fr) * len(unique)).astype(int)
        parts = np.split(unique, bounds[:-1])
        return tuple(self.subset(np.flatnonzero(np.isin(keys, p))) for p in parts)


def columns_to_points(df: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    """``<name>_x``, ``<name>_y`` columns -> a float64 array (N, K, 2), in ``names`` order.

    Example:
        >>> columns_to_points(pd.DataFrame({"a_x": [1.0], "a_y": [2.0]}), ["a"]).tolist()
        [[[1.0, 2.0]]]
    """
    x = df[[f"{n}_x" for n in names]].to_numpy(dtype=np.float64)
    y = df[[f"{n}_y" for n in names]].to_numpy(dtype=np.float64)
    return np.stack([x, y], axis=-1).reshape(len(df), len(names), 2)


def points_to_columns(points: np.ndarray, names: Sequence[str],
                      likelihood: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """(N, K, 2) points (and (N, K) likelihoods) -> ``<name>_x``, ``<name>_y`` (``<name>_likelihood``) per
    landmark, in that order: the columns of tables, predictions and evaluations.

    Example:
        >>> list(points_to_columns(np.zeros((1, 1, 2)), ["nose"], np.ones((1, 1))))
        ['nose_x', 'nose_y', 'nose_likelihood']
    """
    columns: dict[str, np.ndarray] = {}
    for k, name in enumerate(names):
        columns[f"{name}_x"], columns[f"{name}_y"] = points[:, k, 0], points[:, k, 1]
        if likelihood is not None:
            columns[f"{name}_likelihood"] = likelihood[:, k]
    return columns


def _check_schema(table: AnnotationTable) -> None:
    df = table.df
    where = table.source
    if "image" not in df.columns:
        raise DataError(f"{where}: the table has no 'image' column. Columns: {list(df.columns)}")
    if table.landmarks and table.classes:
        raise DataError(f"{where}: a table holds landmarks or classes, not both")
    xs, ys = table.point_columns
    missing = [c for c in xs + ys if c not in df.columns]
    if missing:
        raise DataError(f"{where}: landmark columns missing: {missing[:6]}")
    if table.classes:
        if "label" not in df.columns:
            raise DataError(f"{where}: a class table needs a 'label' column")
        unknown = sorted(set(df["label"].astype(str)) - set(table.classes))
        if unknown:
            raise DataError(f"{where}: labels {unknown[:5]} are not among classes {list(table.classes)}")
    names = set(table.landmarks)
    for a, b in table.flip_pairs:
        if a not in names or b not in names:
            raise DataError(f"{where}: flip pair ({a!r}, {b!r}) names a landmark not in {list(table.landmarks)}")


_SIDES = (("left", "right"), ("Left", "Right"), ("LEFT", "RIGHT"))


def infer_flip_pairs(names: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """Obvious left/right landmark pairs from names; a name with no partner is left alone.

    Recognised: ``left*``/``right*`` anywhere in the name (any of three cases),
    ``*_l``/``*_r`` (or ``*_L``/``*_R``) suffixes and ``L``/``R`` prefixes followed by
    ``_`` or an upper-case letter (``L_eye``, ``LEye``).

    Example:
        >>> infer_flip_pairs(["nose", "left_eye", "right_eye", "ear_l", "ear_r", "LHand", "RHand"])
        (('left_eye', 'right_eye'), ('ear_l', 'ear_r'), ('LHand', 'RHand'))
    """
    present = set(names)
    pairs: list[tuple[str, str]] = []
    for name in names:
        for partner in _partners(name):
            if partner in present and partner != name:
                pairs.append((name, partner))
                break
    return tuple(pairs)


def _partners(name: str) -> list[str]:
    """Right-side counterparts a left-side ``name`` could have (empty if not left-side)."""
    out = [name.replace(left, right) for left, right in _SIDES if left in name]
    for sep in ("_", "-", "."):
        for low, high in (("l", "r"), ("L", "R")):
            if name.endswith(sep + low):
                out.append(name[: -len(low)] + high)
    if len(name) > 1 and name[0] == "L" and (name[1] == "_" or name[1].isupper()):
        out.append("R" + name[1:])
    return out
