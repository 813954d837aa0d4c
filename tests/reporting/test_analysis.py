"""The report's own numbers: PCK curves, confused landmarks, left/right swaps, per-class rates."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.engine.metrics import class_metrics
from cnnkit.reporting import analysis as A

NAMES = ["left_eye", "right_eye", "nose"]
TRUE = np.array([[[10.0, 10.0], [30.0, 10.0], [20.0, 20.0]]] * 4)


def test_pck_curve_counts_present_points_strictly_below() -> None:
    errors = np.array([[0.0, 1.0, np.nan], [2.0, 3.0, 4.0]])
    assert A.pck_curve(errors, np.array([0.0, 1.0, 2.5, 10.0])).tolist() == [0.0, 0.2, 0.6, 1.0]
    assert np.isnan(A.pck_curve(np.full((2, 2), np.nan), np.array([1.0]))).all()
    t = A.thresholds_up_to(errors)
    assert t[0] == 0 and t[-1] > 4 * 0.99 and np.all(np.diff(t) > 0)


def test_a_swapped_pair_is_found_and_others_are_not() -> None:
    pred = TRUE.copy()
    pred[0, [0, 1]] = pred[0, [1, 0]] + 1.0  # image 0: both eyes swapped
    pred[1, 0] = [27.0, 10.0]  # image 1: only the left eye lies on the right eye
    pred[2, 2] = [np.nan, np.nan]  # image 2: nose not predicted (ignored)
    swaps = A.swap_table(pred, TRUE, NAMES, [("left_eye", "right_eye")])
    row = swaps.iloc[0]
    assert (row["images"], row["left_nearer_right"], row["right_nearer_left"], row["both_swapped"]) == (4, 0.5, 0.25,
                                                                                                         0.25)
    conf = A.landmark_confusions(pred, TRUE, NAMES, [("left_eye", "right_eye")])
    top = conf.iloc[0]
    assert (top["landmark"], top["nearer_to"], top["images"], top["rate"], top["pair"]) == (
        "left_eye", "right_eye", 2, 0.5, True)
    assert set(zip(conf["landmark"], conf["nearer_to"], strict=True)) == {("left_eye", "right_eye"),
                                                                           ("right_eye", "left_eye")}


def test_missing_true_points_are_never_the_nearest() -> None:
    true = TRUE.copy()
    true[:, 1] = np.nan  # right eye never annotated
    pred = TRUE.copy()
    pred[:, 0] = [29.0, 10.0]  # left eye predicted on the (unannotated) right eye
    nearest = A.nearest_true(pred, true)
    assert (nearest[:, 0] != 1).all() and (nearest[:, 1] != 1).all()
    assert A.landmark_confusions(pred, true, NAMES)["nearer_to"].tolist() == ["nose"]


def test_many_images_are_processed_in_blocks() -> None:
    rng = np.random.default_rng(0)
    true = rng.uniform(0, 100, size=(600, 68, 2))
    nearest = A.nearest_true(true + 0.01, true)
    assert (nearest == np.arange(68)).all()


def test_mean_shape_ignores_position_and_scale() -> None:
    small = TRUE[0]
    big = small * 3 + 50
    shape = A.mean_shape(np.stack([small, big]))
    assert shape == pytest.approx(A.mean_shape(small[None]))
    assert A.mean_shape(small[None]).mean(axis=0) == pytest.approx([0, 0])


def test_class_table_matches_evaluates_class_metrics() -> None:
    rng = np.random.default_rng(1)
    true = rng.integers(0, 3, size=200)
    pred = np.where(rng.random(200) < 0.7, true, rng.integers(0, 3, size=200))
    counts = np.zeros((3, 3), dtype=int)
    np.add.at(counts, (true, pred), 1)
    table = A.class_table(counts, ["a", "b", "c"])
    m = class_metrics(pred, true, classes=["a", "b", "c"])
    assert table["#"].tolist() == [0, 1, 2] and table["images"].sum() == 200
    for row in table.to_dict("records"):
        assert row["precision"] == pytest.approx(m[f"precision/{row['class']}"])
        assert row["recall"] == pytest.approx(m[f"recall/{row['class']}"])
        assert row["f1"] == pytest.approx(m[f"f1/{row['class']}"])
    binary = A.class_table(counts[:2, :2], ["a", "b"])
    m2 = class_metrics(np.repeat([0, 1, 0, 1], counts[:2, :2].ravel()), np.repeat([0, 0, 1, 1],
                       counts[:2, :2].ravel()), classes=["a", "b"])
    assert binary["specificity"][1] == pytest.approx(m2["specificity"])
    assert binary["recall"][1] == pytest.approx(m2["sensitivity"])
    assert np.isnan(A.class_table(np.array([[0, 0], [0, 3]]), ["x", "y"])["recall"][0])  # 0/0
