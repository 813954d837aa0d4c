"""A random walk seen through noise: the Kalman filter, the RTS smoother and the choice of its strength.

The model, per landmark and per axis (x and y are independent and share one strength ``s``)::

    z[t+1] = z[t] + w[t],   w[t] ~ N(0, s)          the true position (px): a random walk
    y[t]   = z[t] + v[t],   v[t] ~ N(0, r[t])       what the models saw (px)
    z[0] ~ N(m0, p0)

``s`` (px² per frame) is the smoothing strength: the smaller, the smoother. ``r[t]`` is the
observation variance of frame ``t`` (the ensemble's variance in EKS). A frame whose ``y`` or
``r`` is not finite is missing: the filter skips its update, so the smoother bridges it and its
posterior variance grows with the distance to the nearest observed frame.

Every function is vectorised over any trailing shape (landmarks, axes, candidate strengths):
the loop runs over time only, so choosing ``s`` on a grid of candidates costs one pass per grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOG_2PI = float(np.log(2.0 * np.pi))
#: the search range of log(s), as the EKS package clamps it (s from 3e-4 to 3e3 px² per frame)
LOG_S_RANGE = (-8.0, 8.0)
#: grid steps of log(s): a coarse pass over the whole range, then two finer passes around the best
_SEARCH_STEPS = (0.5, 0.05, 0.005)


@dataclass(frozen=True)
class Filtered:
    """What the forward pass keeps for the smoother. Arrays (T, ...)."""

    mean: np.ndarray
    var: np.ndarray
    nll: np.ndarray  # (...) negative log-likelihood of the observed frames


def kalman_filter(y: np.ndarray, r: np.ndarray, s: np.ndarray | float, m0: np.ndarray, p0: np.ndarray,
                  *, keep: bool = True) -> Filtered:
    """Forward pass of the random-walk model; ``nll`` is -log p(observed y | s).

    Args:
        y: (T, ...) observations in px; NaN = missing.
        r: (T, ...) observation variances in px² (broadcast against ``y``); not finite = missing.
        s: process variance per frame (broadcast against one frame's shape).
        m0, p0: mean and variance of the first position.
        keep: False to skip storing the filtered path (tuning needs the likelihood only).

    Example:
        >>> f = kalman_filter(np.array([1.0, np.nan]), np.array([1.0, 1.0]), 0.5, np.array(0.0), np.array(1.0))
        >>> f.mean.tolist(), f.var.tolist()
        ([0.5, 0.5], [0.5, 1.0])
    """
    shape = np.broadcast_shapes(y.shape[1:], r.shape[1:], np.shape(s), np.shape(m0), np.shape(p0))
    m = np.broadcast_to(m0, shape).astype(np.float64)
    p = np.broadcast_to(p0, shape).astype(np.float64)
    nll = np.zeros(shape)
    means = np.empty((len(y), *shape)) if keep else np.empty(0)
    variances = np.empty((len(y), *shape)) if keep else np.empty(0)
    for t in range(len(y)):
        seen = np.isfinite(y[t]) & np.isfinite(r[t])
        total = p + np.where(seen, r[t], 0.0)
        err = np.where(seen, y[t] - m, 0.0)
        nll += np.where(seen, 0.5 * (LOG_2PI + np.log(total) + err * err / total), 0.0)
        gain = np.where(seen, p / total, 0.0)
        m = m + gain * err
        p = p * (1.0 - gain)
        if keep:
            means[t], variances[t] = m, p
        p = p + s
    return Filtered(means, variances, nll)


def rts_smoother(filtered: Filtered, s: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Backward (Rauch-Tung-Striebel) pass: posterior mean and variance of every frame, (T, ...)."""
    mean, var = filtered.mean.copy(), filtered.var.copy()
    for t in range(len(mean) - 2, -1, -1):
        ahead = filtered.var[t] + s  # variance of frame t+1 predicted from frame t
        gain = filtered.var[t] / ahead
        mean[t] = filtered.mean[t] + gain * (mean[t + 1] - filtered.mean[t])
        var[t] = filtered.var[t] + gain * gain * (var[t + 1] - ahead)
    return mean, var


def tune_strength(y: np.ndarray, r: np.ndarray, m0: np.ndarray, p0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``s`` of each landmark that maximises the likelihood of its observations.

    Grid search in log(s) over :data:`LOG_S_RANGE` (steps 0.5, then 0.05 and 0.005 around the
    best), so the answer is the global optimum on the grid to within 0.5 % of ``s``; the EKS
    package climbs the same likelihood with Adam from a heuristic start.

    Args:
        y: (T, K, 2) observations (px), NaN = missing; x and y of a landmark share its ``s``.
        r: (T, K, 2) or (1, K, 2) observation variances (px²).
        m0, p0: (K, 2) first-position mean and variance.

    Returns:
        s (K,) and the negative log-likelihood at it (K,).
    """
    centre = np.zeros(y.shape[1])
    for step in _SEARCH_STEPS:
        span = (LOG_S_RANGE[1] - LOG_S_RANGE[0]) / 2 if step == _SEARCH_STEPS[0] else 10 * step
        offsets = np.arange(-span, span + step / 2, step)
        log_s = np.clip(centre[:, None] + offsets[None, :], *LOG_S_RANGE)  # (K, G)
        nll = _grid_nll(y, r, np.exp(log_s), m0, p0)  # (K, G)
        best = np.argmin(nll, axis=1)
        centre = log_s[np.arange(len(centre)), best]
    final = nll[np.arange(len(centre)), best]
    return np.exp(centre), final


def _grid_nll(y: np.ndarray, r: np.ndarray, s: np.ndarray, m0: np.ndarray, p0: np.ndarray) -> np.ndarray:
    """-log-likelihood of each landmark (K) for each of its candidate strengths s (K, G) -> (K, G)."""
    r_full = np.broadcast_to(r, y.shape)
    f = kalman_filter(y[..., None], r_full[..., None], s[:, None, :], m0[..., None], p0[..., None], keep=False)
    return f.nll.sum(axis=1)  # x and y of a landmark share s: their likelihoods multiply
