"""Error calibration: fitted on generated validation points, checked on held-out ones."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cnnkit.errors import DataError
from cnnkit.trajectories.calibrate import ErrorCalibration, fit_calibration, pool_adjacent_violators
from cnnkit.trajectories.eks import ensemble_kalman_smoother
from cnnkit.trajectories.reliability import calibration_error, error_auc, reliability_table
from cnnkit.trajectories.synth import observe, random_walk

RAYLEIGH_MEAN = math.sqrt(math.pi / 2)


def _rayleigh(sd: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return sd * np.sqrt(-2.0 * np.log(rng.uniform(size=sd.shape)))


def _points(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Spread underestimates the error, and the error has a floor (members share some mistakes)."""
    spread = rng.lognormal(0.5, 0.6, n)
    likelihood = np.clip(1.0 - spread / 10 + rng.normal(0, 0.1, n), 0, 1)
    return {"spread": spread, "likelihood": likelihood,
            "error": _rayleigh(np.sqrt(1.5 ** 2 + (1.3 * spread) ** 2), rng)}


def _ece(predicted: np.ndarray, observed: np.ndarray) -> float:
    return calibration_error(reliability_table(predicted, observed))


@pytest.mark.parametrize("signals", [("spread",), ("likelihood",), ("spread", "likelihood")])
def test_isotonic_calibration_predicts_the_held_out_error(signals: tuple[str, ...]) -> None:
    rng = np.random.default_rng(0)
    fit_on, held_out = _points(2000, rng), _points(20000, rng)
    cal = fit_calibration(fit_on["error"], **{s: fit_on[s] for s in signals})
    predicted = cal.expected_error(**{s: held_out[s] for s in signals})
    assert _ece(predicted, held_out["error"]) < 0.2  # px; measured 0.07-0.11
    if "spread" in signals:  # the raw spread, read as a Gaussian sd, is off by more than 1 px
        assert _ece(held_out["spread"] * RAYLEIGH_MEAN, held_out["error"]) > 1.0


def test_both_signals_weigh_spread_up_and_likelihood_down() -> None:
    rng = np.random.default_rng(1)
    pts = _points(3000, rng)
    cal = fit_calibration(pts["error"], spread=pts["spread"], likelihood=pts["likelihood"])
    assert cal.signal == "both" and cal.weights[1] > 0 and cal.weights[2] < 0


def test_rayleigh_recovers_each_landmarks_scale() -> None:
    rng = np.random.default_rng(2)
    names = rng.choice(["nose", "ear", "tail"], 6000)
    true_scale = {"nose": 1.0, "ear": 2.0, "tail": 3.0}
    spread = rng.lognormal(0.5, 0.5, 6000)
    error = _rayleigh(np.vectorize(true_scale.get)(names) * spread, rng)
    cal = fit_calibration(error, spread=spread, method="rayleigh", landmarks=names)
    for name, c in true_scale.items():
        assert cal.scales[name] == pytest.approx(c, rel=0.05)
    assert cal.expected_error(spread=np.array([2.0]), landmarks=["ear"])[0] == pytest.approx(
        2.0 * cal.scales["ear"] * RAYLEIGH_MEAN)
    assert cal.expected_error(spread=np.array([2.0]), landmarks=["paw"])[0] == pytest.approx(  # unknown: pooled
        2.0 * cal.scales["*"] * RAYLEIGH_MEAN)


def test_isotonic_with_landmarks_ranks_across_landmarks() -> None:
    rng = np.random.default_rng(3)
    names = rng.choice(["a", "b"], 8000)
    spread = rng.lognormal(0.5, 0.5, 8000)
    error = _rayleigh(np.where(names == "a", 1.0, 3.0) * spread, rng)
    pooled = fit_calibration(error[:4000], spread=spread[:4000])
    per = fit_calibration(error[:4000], spread=spread[:4000], landmarks=names[:4000])
    held = slice(4000, None)
    auc_pooled = error_auc(pooled.expected_error(spread=spread[held]), error[held])
    auc_per = error_auc(per.expected_error(spread=spread[held], landmarks=names[held]), error[held])
    assert auc_per > auc_pooled + 0.02
    assert _ece(per.expected_error(spread=spread[held], landmarks=names[held]), error[held]) < 0.3


def test_calibrating_the_eks_sd_of_a_two_member_ensemble() -> None:
    # Two members make an overconfident sd (test_eks); calibrated on half the video it predicts the other half.
    rng = np.random.default_rng(4)
    truth = random_walk(4000, 2, rng)
    out = ensemble_kalman_smoother(observe(truth, rng, n_members=2, noise_px=1.0, varying_noise=True).points)
    error = np.linalg.norm(out.mean - truth, axis=-1)
    first, second = slice(0, 2000), slice(2000, None)
    cal = fit_calibration(error[first], spread=out.sd[first])
    raw = _ece(out.sd[second] * RAYLEIGH_MEAN, error[second])
    calibrated = _ece(cal.expected_error(spread=out.sd[second]), error[second])
    assert calibrated < 0.5 * raw and calibrated < 0.15  # measured 0.54 -> 0.04 px


def test_calibration_round_trips_through_json_and_stays_small() -> None:
    rng = np.random.default_rng(5)
    pts = _points(5000, rng)
    for method in ("isotonic", "rayleigh"):
        cal = fit_calibration(pts["error"], spread=pts["spread"], likelihood=pts["likelihood"], method=method,
                              landmarks=rng.choice(["a", "b"], 5000))
        text = json.dumps(cal.to_dict())
        back = ErrorCalibration.from_dict(json.loads(text))
        assert len(text) < 4000
        np.testing.assert_allclose(back.expected_error(spread=pts["spread"], likelihood=pts["likelihood"]),
                                   cal.expected_error(spread=pts["spread"], likelihood=pts["likelihood"]))


def test_isotonic_map_is_non_decreasing_in_its_score() -> None:
    rng = np.random.default_rng(6)
    pts = _points(3000, rng)
    cal = fit_calibration(pts["error"], likelihood=pts["likelihood"])
    values = cal.expected_error(likelihood=np.linspace(1, 0, 50))  # less likely -> larger error
    assert np.all(np.diff(values) >= 0) and values[-1] > values[0]


def test_pool_adjacent_violators() -> None:
    rng = np.random.default_rng(7)
    values, weights = rng.normal(size=40), rng.uniform(0.5, 2, 40)
    fitted = pool_adjacent_violators(values, weights)
    assert np.all(np.diff(fitted) >= -1e-12)
    assert (fitted * weights).sum() == pytest.approx((values * weights).sum())  # blocks keep their weighted mean
    np.testing.assert_array_equal(pool_adjacent_violators(np.arange(5.0), np.ones(5)), np.arange(5.0))
    assert pool_adjacent_violators(np.array([3.0, 1.0]), np.array([1.0, 3.0])).tolist() == [1.5, 1.5]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "needs an uncertainty signal"),
    ({"likelihood": np.ones(3), "method": "rayleigh"}, "needs a px-valued signal"),
    ({"spread": np.ones(3), "method": "platt"}, "method must be one of isotonic, rayleigh"),
    ({"spread": np.full(3, np.nan)}, "needs 2 or more points"),
])
def test_bad_calibration_requests_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        fit_calibration(np.ones(3), **kwargs)


def test_applying_without_the_fitted_signal_or_reading_a_foreign_dict_is_refused() -> None:
    cal = fit_calibration(np.arange(10.0), spread=np.arange(10.0))
    with pytest.raises(DataError, match="fitted on the signal 'spread'; pass spread="):
        cal.expected_error(likelihood=np.ones(3))
    with pytest.raises(DataError, match="not an error calibration of format 1"):
        ErrorCalibration.from_dict({"format": 2, "method": "isotonic", "signal": "spread"})
