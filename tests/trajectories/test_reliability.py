"""ROC AUC against the pairwise count, and the reliability table."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import DataError
from cnnkit.trajectories.reliability import (
    average_ranks,
    calibration_error,
    error_auc,
    reliability_table,
    roc_auc,
)


def _pairwise_auc(score: np.ndarray, positive: np.ndarray) -> float:
    pos, neg = score[positive], score[~positive]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


@pytest.mark.parametrize("seed", range(6))
def test_roc_auc_equals_the_pairwise_count_ties_included(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    score = rng.integers(0, 8, n).astype(float) if seed % 2 else rng.normal(size=n)  # many ties / none
    positive = rng.random(n) < rng.uniform(0.1, 0.9)
    positive[:2] = [True, False]  # both classes present
    assert roc_auc(score, positive) == pytest.approx(_pairwise_auc(score, positive), abs=1e-12)


def test_roc_auc_edges() -> None:
    assert roc_auc(np.array([1.0, 2.0]), np.array([False, True])) == 1.0
    assert roc_auc(np.array([2.0, 1.0]), np.array([False, True])) == 0.0
    assert roc_auc(np.ones(4), np.array([True, False, True, False])) == 0.5
    assert np.isnan(roc_auc(np.array([1.0, 2.0]), np.array([True, True])))
    assert roc_auc(np.array([np.nan, 1.0, 2.0]), np.array([True, False, True])) == 1.0  # NaN scores dropped
    with pytest.raises(DataError, match="differ in size"):
        roc_auc(np.ones(3), np.ones(2, dtype=bool))


def test_error_auc_uses_the_threshold_and_drops_missing_errors() -> None:
    error = np.array([1.0, 12.0, 3.0, 30.0, np.nan])
    score = np.array([0.1, 0.9, 0.2, 0.5, 5.0])
    assert error_auc(score, error) == 1.0
    assert error_auc(score, error, threshold_px=2.0) == pytest.approx(_pairwise_auc(score[:4], error[:4] > 2.0))


def test_average_ranks_share_ties() -> None:
    assert average_ranks(np.array([5.0, 5.0, 5.0, 1.0])).tolist() == [3.0, 3.0, 3.0, 1.0]


def test_reliability_table_bins_by_predicted_error() -> None:
    predicted = np.arange(100, dtype=float)
    observed = 2.0 * predicted
    table = reliability_table(predicted, observed, n_bins=4)
    assert table["n"].tolist() == [25] * 4
    assert table["predicted_px"].tolist() == [12.0, 37.0, 62.0, 87.0]
    np.testing.assert_allclose(table["observed_px"], 2 * table["predicted_px"])
    assert table["predicted_from"].tolist() == [0.0, 25.0, 50.0, 75.0]
    assert calibration_error(table) == pytest.approx(49.5)  # mean |2p - p|
    assert calibration_error(reliability_table(predicted, predicted)) == 0.0


def test_reliability_table_drops_nan_pairs_and_handles_few_points() -> None:
    table = reliability_table(np.array([1.0, np.nan, 3.0]), np.array([2.0, 5.0, np.nan]), n_bins=10)
    assert table["n"].tolist() == [1] and table["observed_px"].tolist() == [2.0]
    assert reliability_table(np.array([]), np.array([])).empty
