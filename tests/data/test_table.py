from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cnnkit import AnnotationTable, DataError


def _table(n: int = 10, **cols) -> AnnotationTable:
    df = pd.DataFrame({"image": [f"{i}.png" for i in range(n)], "a_x": np.arange(n, dtype=float),
                       "a_y": np.arange(n, dtype=float) * 2, **cols})
    return AnnotationTable(df, landmarks=("a",))


def test_points_layout_and_nan() -> None:
    t = _table(3)
    t.df.loc[1, "a_x"] = np.nan
    pts = t.points()
    assert pts.shape == (3, 1, 2)
    assert pts[2, 0].tolist() == [2.0, 4.0]
    assert np.isnan(pts[1, 0, 0])


def test_split_is_random_seeded_and_complete() -> None:
    t = _table(100)
    a, b = t.split((0.8, 0.2), seed=1)
    assert (len(a), len(b)) == (80, 20)
    assert sorted(a.images + b.images) == sorted(t.images)
    assert a.images != t.images[:80]  # not a contiguous slice
    a2, _ = t.split((0.8, 0.2), seed=1)
    assert a2.images == a.images
    a3, _ = t.split((0.8, 0.2), seed=2)
    assert a3.images != a.images


def test_split_grouped_keeps_groups_together() -> None:
    t = _table(60, person=[i // 3 for i in range(60)])
    a, b = t.split((0.5, 0.5), seed=0, group="person")
    assert not set(a.df["person"]) & set(b.df["person"])
    assert len(a) + len(b) == 60


def test_bad_split_and_schema_errors() -> None:
    with pytest.raises(DataError, match="sum to 1"):
        _table().split((0.8, 0.3))
    with pytest.raises(DataError, match="group column 'persn'"):
        _table().split((0.5, 0.5), group="persn")
    with pytest.raises(DataError, match="landmark columns missing"):
        AnnotationTable(pd.DataFrame({"image": ["a"]}), landmarks=("nose",))
    with pytest.raises(DataError, match="not among classes"):
        AnnotationTable(pd.DataFrame({"image": ["a"], "label": ["cat"]}), classes=("dog",))


def test_infer_flip_pairs_only_obvious_pairs() -> None:
    from cnnkit.data.table import infer_flip_pairs

    names = ["nose", "left_eye", "right_eye", "Lhand", "RHand", "ear_l", "ear_r", "L_foot", "R_foot", "leftover"]
    assert infer_flip_pairs(names) == (("left_eye", "right_eye"), ("ear_l", "ear_r"), ("L_foot", "R_foot"))
    assert infer_flip_pairs(["left", "center"]) == ()
