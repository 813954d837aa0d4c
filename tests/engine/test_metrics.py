"""Tests for cnnkit.engine.metrics against hand-computed numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cnnkit.engine.metrics import (
    ClassMeter,
    LandmarkMeter,
    class_metrics,
    confusion_matrix,
    landmark_metrics,
    normalisers,
    point_errors,
)
from cnnkit.errors import ConfigError

NAN = float("nan")
NAMES = ("a", "b", "c")
# image 0: box 30 x 40 (diagonal 50); errors a 5, b 0, c 10
# image 1: b missing; box 6 x 8 (diagonal 10); errors a 3, c 0
TRUE = np.array([[[0, 0], [30, 0], [0, 40]], [[10, 10], [NAN, NAN], [16, 18]]], dtype=float)
PRED = np.array([[[3, 4], [30, 0], [0, 50]], [[10, 13], [5, 5], [16, 18]]], dtype=float)


def test_point_errors_mark_missing_as_nan() -> None:
    err = point_errors(PRED, TRUE)
    assert err.shape == (2, 3)
    assert err[0].tolist() == [5.0, 0.0, 10.0]
    assert err[1, 0] == 3.0 and math.isnan(err[1, 1]) and err[1, 2] == 0.0


def test_landmark_metrics_hand_computed() -> None:
    m = landmark_metrics(PRED, TRUE, names=NAMES)
    assert m["error_px_mean"] == pytest.approx(18 / 5)
    assert m["error_px_median"] == pytest.approx(3.0)
    assert m["error_px/a"] == pytest.approx(4.0)
    assert m["error_px/b"] == pytest.approx(0.0)
    assert m["error_px/c"] == pytest.approx(5.0)
    assert m["nme"] == pytest.approx((5 / 50 + 1.5 / 10) / 2)  # per image, then over images
    assert m["pck"] == pytest.approx(2 / 5)  # relative errors 0.1, 0, 0.2, 0.3, 0
    assert "baseline_px_mean" not in m
    assert landmark_metrics(PRED, TRUE, names=NAMES, pck_threshold=0.15)["pck"] == pytest.approx(3 / 5)


def test_nme_with_a_landmark_pair() -> None:
    m = landmark_metrics(PRED, TRUE, names=NAMES, norm=("a", "c"))
    assert m["nme"] == pytest.approx((5 / 40 + 1.5 / 10) / 2)
    # pair with a missing point in image 1: that image has no normaliser and is left out
    m = landmark_metrics(PRED, TRUE, names=NAMES, norm=("a", "b"))
    assert m["nme"] == pytest.approx(5 / 30)
    assert m["pck"] == pytest.approx(1 / 3)
    assert m["error_px_mean"] == pytest.approx(18 / 5)  # pixel errors do not depend on the norm
    np.testing.assert_allclose(normalisers(TRUE, norm=("a", "b"), names=NAMES), [30.0, NAN])
    with pytest.raises(ConfigError, match=r"unknown landmark 'cc'.*Did you mean 'c'\?"):
        landmark_metrics(PRED, TRUE, names=NAMES, norm=("a", "cc"))
    with pytest.raises(ConfigError, match="diagonal"):
        landmark_metrics(PRED, TRUE, names=NAMES, norm="diag")


def test_baseline_mean_shape_and_per_image() -> None:
    mean_shape = TRUE[0]  # exact for image 0; image 1 errors: a sqrt(200), c sqrt(740)
    m = landmark_metrics(PRED, TRUE, names=NAMES, baseline_px=mean_shape)
    assert m["baseline_px_mean"] == pytest.approx((math.sqrt(200) + math.sqrt(740)) / 5)
    m = landmark_metrics(PRED, TRUE, names=NAMES, baseline_px=torch.from_numpy(TRUE))
    assert m["baseline_px_mean"] == pytest.approx(0.0)


def test_tensors_and_arrays_give_the_same_and_inputs_are_untouched() -> None:
    true_t, pred_t = torch.from_numpy(TRUE.copy()).float(), torch.from_numpy(PRED.copy()).float()
    a = landmark_metrics(pred_t, true_t, names=NAMES)
    b = landmark_metrics(PRED, TRUE, names=NAMES)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-6)
        assert isinstance(a[key], float)
    assert torch.isnan(true_t).sum() == 2


def test_no_present_points_gives_nan_not_zero() -> None:
    m = landmark_metrics(PRED, np.full_like(TRUE, NAN), names=NAMES)
    assert math.isnan(m["error_px_mean"]) and math.isnan(m["nme"]) and math.isnan(m["error_px/a"])


def _random_points(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    true = rng.uniform(0, 200, size=(20, 5, 2))
    true[rng.random((20, 5)) < 0.2] = NAN
    return true + rng.normal(0, 5, size=true.shape), true


def test_meter_over_uneven_batches_equals_one_pass() -> None:
    pred, true = _random_points(0)
    names = [f"p{i}" for i in range(5)]
    base = np.nanmean(true, axis=0)
    whole = landmark_metrics(pred, true, names=names, norm=("p0", "p1"), baseline_px=base)
    first = LandmarkMeter(names, norm=("p0", "p1"), baseline_px=base)
    for lo in range(0, 12, 4):  # uneven batches, tensors and arrays
        first.update(torch.from_numpy(pred[lo : lo + 4]), true[lo : lo + 4])
    first.update(pred[12:], true[12:])
    merged = first.compute()
    assert merged.keys() == whole.keys()
    for key in whole:
        assert merged[key] == pytest.approx(whole[key], rel=1e-12, nan_ok=True), key
    first.reset()
    assert math.isnan(first.compute()["error_px_mean"])


def test_meter_rejects_wrong_landmark_count() -> None:
    with pytest.raises(ValueError, match="expected 2 landmarks"):
        LandmarkMeter(["a", "b"]).update(PRED, TRUE)


# true:  0 0 0 1 1 2 2 2 2 ; pred: 0 0 1 1 1 2 2 0 0
TRUE_C = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
PRED_C = np.array([0, 0, 1, 1, 1, 2, 2, 0, 0])


def test_class_metrics_on_a_known_confusion() -> None:
    m = class_metrics(PRED_C, TRUE_C, classes=["x", "y", "z"])
    assert m["accuracy"] == pytest.approx(6 / 9)
    assert (m["precision/x"], m["recall/x"], m["f1/x"]) == pytest.approx((0.5, 2 / 3, 4 / 7))
    assert (m["precision/y"], m["recall/y"], m["f1/y"]) == pytest.approx((2 / 3, 1.0, 0.8))
    assert (m["precision/z"], m["recall/z"], m["f1/z"]) == pytest.approx((1.0, 0.5, 2 / 3))
    assert m["f1_macro"] == pytest.approx((4 / 7 + 0.8 + 2 / 3) / 3)
    assert "sensitivity" not in m
    cm = confusion_matrix(PRED_C, TRUE_C, classes=["x", "y", "z"])
    assert cm.loc["z", "x"] == 2 and cm.loc["x", "y"] == 1 and cm.values.sum() == 9
    assert cm.index.name == "true" and cm.columns.name == "predicted"


def test_binary_counts_sensitivity_specificity_from_scores() -> None:
    true = torch.tensor([1, 1, 1, 0, 0, 0, 0])
    pred_idx = [1, 1, 0, 0, 0, 1, 0]
    scores = torch.nn.functional.one_hot(torch.tensor(pred_idx), 2).float() * 3 - 1  # logits
    m = class_metrics(scores, true, classes=["neg", "pos"])
    assert (m["tp"], m["tn"], m["fp"], m["fn"]) == (2.0, 3.0, 1.0, 1.0)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["accuracy"] == pytest.approx(5 / 7)


def test_class_meter_over_batches_equals_one_pass_and_undefined_is_nan() -> None:
    a = ClassMeter(["x", "y", "z"])
    a.update(PRED_C[:4], TRUE_C[:4])
    a.update(PRED_C[4:], TRUE_C[4:])
    assert a.compute() == class_metrics(PRED_C, TRUE_C, classes=["x", "y", "z"])
    m = class_metrics([0, 0], [0, 0], classes=["x", "y"])
    assert math.isnan(m["precision/y"]) and math.isnan(m["sensitivity"]) and m["specificity"] == 1.0
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        class_metrics([0, 2], [0, 1], classes=["x", "y"])
