"""The random-walk Kalman filter and smoother against a dense Gaussian solve of the same model."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.trajectories.kalman import LOG_S_RANGE, kalman_filter, rts_smoother, tune_strength


def _dense_posterior(y: np.ndarray, r: np.ndarray, s: float, m0: float, p0: float):
    """The same model written as one Gaussian over all frames: z ~ N(m0, p0 + s * min(i, j)), y = z + noise.

    Returns the posterior mean and variance of z, and -log p(observed y).
    """
    t = np.arange(len(y))
    prior = p0 + s * np.minimum.outer(t, t)
    seen = np.isfinite(y)
    cov_yy = prior[np.ix_(seen, seen)] + np.diag(r[seen])
    gain = prior[:, seen] @ np.linalg.inv(cov_yy)
    mean = m0 + gain @ (y[seen] - m0)
    var = np.diag(prior - gain @ prior[seen, :])
    resid = y[seen] - m0
    _, logdet = np.linalg.slogdet(cov_yy)
    nll = 0.5 * (seen.sum() * np.log(2 * np.pi) + logdet + resid @ np.linalg.solve(cov_yy, resid))
    return mean, var, nll


@pytest.mark.parametrize("s", [0.01, 0.7, 25.0])
def test_filter_and_smoother_equal_the_dense_solve(s: float) -> None:
    rng = np.random.default_rng(3)
    y = np.cumsum(rng.normal(0, 1, 60)) + rng.normal(0, 2, 60)
    y[[0, 10, 11, 12, 40]] = np.nan  # missing frames, one at the start
    r = rng.uniform(0.5, 6.0, 60)
    mean, var, nll = _dense_posterior(y, r, s, 1.5, 9.0)
    f = kalman_filter(y, r, s, np.array(1.5), np.array(9.0))
    sm_mean, sm_var = rts_smoother(f, s)
    np.testing.assert_allclose(sm_mean, mean, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(sm_var, var, rtol=1e-9, atol=1e-9)
    assert f.nll == pytest.approx(nll, rel=1e-10)


def test_filter_broadcasts_over_candidate_strengths() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(0, 1, (30, 1))
    r = np.ones((30, 1))
    s = np.array([0.1, 1.0, 10.0])
    batch = kalman_filter(y, r, s, np.zeros(1), np.ones(1), keep=False).nll
    one_by_one = [kalman_filter(y[:, 0], r[:, 0], v, np.array(0.0), np.array(1.0)).nll for v in s]
    np.testing.assert_allclose(batch, one_by_one, rtol=1e-12)


def test_non_finite_noise_counts_as_missing() -> None:
    y = np.array([1.0, 5.0, 2.0])
    with_inf = kalman_filter(y, np.array([1.0, np.inf, 1.0]), 0.5, np.array(0.0), np.array(1.0))
    with_nan_y = kalman_filter(np.array([1.0, np.nan, 2.0]), np.ones(3), 0.5, np.array(0.0), np.array(1.0))
    np.testing.assert_allclose(with_inf.mean, with_nan_y.mean)
    assert np.isfinite(with_inf.nll)


def test_tuned_strength_is_the_likelihood_optimum() -> None:
    rng = np.random.default_rng(1)
    truth = np.cumsum(rng.normal(0, 1.3, (400, 2, 2)), axis=0)
    y = truth + rng.normal(0, 2.0, truth.shape)
    r = np.full((1, 2, 2), 4.0)
    m0, p0 = y.mean(axis=0), y.var(axis=0)
    s, nll = tune_strength(y, r, m0, p0)
    for k in range(2):  # the likelihood at 1 % either side is lower
        for factor in (0.99, 1.01):
            other = kalman_filter(y[:, k], np.full((400, 2), 4.0), s[k] * factor, m0[k], p0[k], keep=False)
            assert other.nll.sum() > nll[k]
    # the true step variance is 1.69; 400 frames pin it to within a factor of 1.5
    assert np.all((s > 1.69 / 1.5) & (s < 1.69 * 1.5))


def test_strength_stays_in_the_searched_range() -> None:
    y = np.zeros((50, 1, 2))  # no motion, no noise: the optimum is below the range
    s, _ = tune_strength(y, np.full((1, 1, 2), 1.0), np.zeros((1, 2)), np.ones((1, 2)))
    assert s[0] == pytest.approx(np.exp(LOG_S_RANGE[0]))
