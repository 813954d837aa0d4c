"""The ensemble strategy's arithmetic (median, spread, mean likelihood), its refusals, and the calibrated wrapper."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cnnkit.engine.ensemble import EnsembleStrategy, check_members, combine
from cnnkit.engine.scored import Outputs, Scored
from cnnkit.engine.uncertainty import Calibrated
from cnnkit.errors import ConfigError
from cnnkit.trajectories import fit_calibration


def _scored(points: list[list[list[float]]], lik: list[list[float]] | None = None) -> Scored:
    pred = np.array(points, dtype=np.float64)  # (B, K, 2)
    b = len(pred)
    return Scored(index=np.arange(b), pred=pred, true=None, scale=np.full((b, 2), 0.5), offset=np.ones((b, 2)),
                  likelihood=None if lik is None else np.array(lik, dtype=np.float64))


def test_combine_takes_the_median_the_mean_likelihood_and_the_spread() -> None:
    parts = [_scored([[[0.0, 0.0], [10.0, 10.0]]], [[0.2, 0.9]]), _scored([[[4.0, 0.0], [10.0, 10.0]]], [[0.4, 0.9]]),
             _scored([[[30.0, 3.0], [10.0, 10.0]]], [[0.9, 0.6]])]
    out = combine(parts)
    np.testing.assert_allclose(out.pred, [[[4.0, 0.0], [10.0, 10.0]]])  # the median resists member 3's outlier
    np.testing.assert_allclose(out.likelihood, [[0.5, 0.8]])
    xs, ys = np.array([0.0, 4.0, 30.0]), np.array([0.0, 0.0, 3.0])
    assert out.spread is not None
    assert out.spread[0, 0] == pytest.approx(np.sqrt((xs.var() + ys.var()) / 2))  # sd per axis, rms of x and y
    assert out.spread[0, 1] == 0.0
    np.testing.assert_allclose(out.pred_input_px, out.pred * 0.5 + 1.0)  # placed in the frame of scale/offset


def test_combine_with_missing_points_uses_the_members_that_have_them() -> None:
    nan = float("nan")
    out = combine([_scored([[[1.0, 1.0], [nan, nan]]]), _scored([[[3.0, 1.0], [5.0, 5.0]]]),
                   _scored([[[8.0, 1.0], [nan, nan]]])])
    np.testing.assert_allclose(out.pred, [[[3.0, 1.0], [5.0, 5.0]]])
    assert out.spread is not None and np.isnan(out.spread[0, 1])  # one member alone: no spread to measure
    assert out.likelihood is None  # the members had none


def test_combine_averages_class_probabilities() -> None:
    def probs(p: list[float]) -> Scored:
        return Scored(index=np.arange(1), pred=np.array([p]), true=np.array([1]), scale=np.ones((1, 2)),
                      offset=np.zeros((1, 2)))

    out = combine([probs([0.8, 0.2]), probs([0.2, 0.8]), probs([0.5, 0.5])])
    np.testing.assert_allclose(out.pred, [[0.5, 0.5]])
    assert out.spread is None


def test_members_that_read_images_differently_are_refused() -> None:
    meta = {"task": "landmarks", "landmarks": ["a", "b"], "size": [64, 48], "normalisation": {"mean": [0.5]}}
    check_members([meta, dict(meta)], ["m1", "m2"])
    with pytest.raises(ConfigError, match=r"m2: size \[96, 72\] differs from m1's \[64, 48\]"):
        check_members([meta, {**meta, "size": [96, 72]}], ["m1", "m2"])
    with pytest.raises(ConfigError, match="m3: landmarks"):
        check_members([meta, meta, {**meta, "landmarks": ["b", "a"]}], ["m1", "m2", "m3"])


class _Fixed:
    """A strategy that returns the same scores every time."""

    def __init__(self, scored: Scored, name: str = "whole-frame") -> None:
        self.scored, self.name, self.evaluated = scored, name, False

    def eval(self) -> None:
        self.evaluated = True

    def score(self, batch: Any, loss_fn: Any = None) -> Scored:
        return Scored(**{k: getattr(self.scored, k) for k in ("index", "pred", "true", "scale", "offset",
                                                                "likelihood")})


def test_ensemble_strategy_scores_with_every_member() -> None:
    members = [_Fixed(_scored([[[0.0, 0.0]]], [[0.5]])), _Fixed(_scored([[[2.0, 0.0]]], [[0.7]]), "two-pass")]
    strategy = EnsembleStrategy(members)
    strategy.eval()
    assert all(m.evaluated for m in members) and strategy.name == "ensemble of 2 (two-pass, whole-frame)"
    out = Outputs.join([strategy.score({}), strategy.score({})])
    np.testing.assert_allclose(out.pred[:, 0], [[1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(out.spread, [[np.sqrt(0.5)], [np.sqrt(0.5)]])  # x sd 1, y sd 0


def test_calibrated_fills_the_expected_error_from_the_fitted_signal() -> None:
    rng = np.random.default_rng(0)
    lik = rng.uniform(0, 1, (400, 2))
    cal = fit_calibration(20 * (1 - lik) + 1, likelihood=lik, landmarks=np.broadcast_to(["a", "b"], lik.shape))
    inner = _Fixed(_scored([[[0.0, 0.0], [1.0, 1.0]]], [[0.9, 0.1]]))
    out = Calibrated(inner, cal, ["a", "b"], has_spread=False).score({})
    assert out.uncertainty is not None
    np.testing.assert_allclose(out.uncertainty, cal.expected_error(likelihood=np.array([[0.9, 0.1]]),
                                                                   landmarks=np.array([["a", "b"]])))
    assert out.uncertainty[0, 0] == pytest.approx(3.0, abs=1.0) and out.uncertainty[0, 1] == pytest.approx(19, abs=1)
    spread_cal = fit_calibration(20 * (1 - lik), spread=lik)
    with pytest.raises(ConfigError, match="maps the ensemble spread"):
        Calibrated(inner, spread_cal, ["a", "b"], has_spread=False)
