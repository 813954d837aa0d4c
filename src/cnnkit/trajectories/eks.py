"""The ensemble Kalman smoother (EKS) of Lightning Pose, single camera, in numpy.

Several models predict the same video; where they disagree, the frame is uncertain. EKS
(Biderman et al. 2024; the ``ensemble-kalman-smoother`` package, ``eks.singlecam_smoother``)
takes, per frame, the ensemble's median as the observation and the ensemble's variance as
that observation's noise, and smooths each landmark with the random walk of
:mod:`cnnkit.trajectories.kalman`. This module follows the package's single-camera model:

- observation: the members' median (``average="median"``, or the mean), per axis;
- its variance: the members' variance (``ddof=0``), divided by their mean likelihood when
  likelihoods are given (the package's default ``confidence_weighted_var``);
- the first position: the mean of the median over the video, with its variance over the video;
- the strength ``s`` of each landmark maximises the likelihood of the observations with the
  observation variance held at its median over the video (floored at 1e-4 px²), as the package
  does; the final pass then uses each frame's own variance (floored at 1e-12 px²).

Where this goes beyond the package (it has no missing data; a NaN there makes a landmark's
whole output NaN):

- a frame where no member has the point is missing: bridged by the smoother, with a posterior
  variance that grows with the gap (tested);
- a frame where only one member has the point has no spread to measure: its variance is the
  landmark's largest ensemble variance in the video, so a lone member is trusted no more than
  the least certain frame.

Shapes:
    members' points (M, T, K, 2) px, NaN = missing; likelihoods (M, T, K) in [0, 1].
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cnnkit.errors import DataError
from cnnkit.trajectories.kalman import kalman_filter, rts_smoother, tune_strength

#: floors of the observation variance: for choosing s (px²) and in the final pass, as in the package
TUNING_VARIANCE_FLOOR = 1e-4
FINAL_VARIANCE_FLOOR = 1e-12
#: mean likelihood below which the division of confidence weighting stops (a frame with likelihood 0 is
#: not infinitely uncertain; 1e-6 makes it 1e6 times less trusted than a sure one)
LIKELIHOOD_FLOOR = 1e-6


@dataclass(frozen=True)
class EnsembleSmoothing:
    """The result of :func:`ensemble_kalman_smoother`.

    Attributes:
        mean: (T, K, 2) posterior mean, px.
        variance: (T, K, 2) posterior variance per axis, px².
        median: (T, K, 2) the ensemble's median (or mean), px: the raw consensus.
        ensemble_variance: (T, K, 2) the observation variance used per frame, px².
        spread: (T, K) the members' standard deviation, px (per axis, root mean square of x and y).
        likelihood: (T, K) the members' mean likelihood, or None.
        strength: (K,) the process variance s, px² per frame (smaller = smoother).
        tuned: True where ``strength`` was chosen by maximum likelihood, False where it was given.
    """

    mean: np.ndarray
    variance: np.ndarray
    median: np.ndarray
    ensemble_variance: np.ndarray
    spread: np.ndarray
    likelihood: np.ndarray | None
    strength: np.ndarray
    tuned: bool

    @property
    def sd(self) -> np.ndarray:
        """(T, K) posterior standard deviation per axis, px: sqrt of the mean of the x and y variances.

        For an isotropic Gaussian error of this sd the distance error is Rayleigh: mean sd*1.25, 95 % below sd*2.45.
        """
        return np.sqrt(self.variance.mean(axis=-1))


def ensemble_kalman_smoother(points: np.ndarray, likelihood: np.ndarray | None = None, *,
                             strength: float | Sequence[float] | None = None,
                             average: str = "median") -> EnsembleSmoothing:
    """Smooth one video's ensemble predictions; choose each landmark's strength unless given.

    Args:
        points: (M, T, K, 2) the M members' predictions, px; NaN = missing. M >= 2.
        likelihood: (M, T, K) the members' likelihoods, or None (plain ensemble variance).
        strength: s for every landmark, or one per landmark; None = maximum likelihood per landmark.
        average: ``"median"`` (the package's default) or ``"mean"`` of the members.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> truth = np.cumsum(rng.normal(0, 1, (200, 1, 2)), axis=0)
        >>> out = ensemble_kalman_smoother(truth + rng.normal(0, 2, (4, 200, 1, 2)))
        >>> out.mean.shape, out.sd.shape, out.strength.shape
        ((200, 1, 2), (200, 1), (1,))
    """
    points = np.asarray(points, dtype=np.float64)
    _check_shapes(points, likelihood)
    centre, variance, spread, mean_lik = ensemble_statistics(points, likelihood, average=average)
    return _smooth_observations(centre, variance, spread, mean_lik, strength)


def smooth_ensemble_output(centre: np.ndarray, spread: np.ndarray, likelihood: np.ndarray | None = None, *,
                           strength: float | Sequence[float] | None = None) -> EnsembleSmoothing:
    """EKS over an ensemble's prediction table: its median and spread instead of the members' points.

    What ``cnnkit predict`` writes for an ensemble (``<name>_x/_y`` = the members' median,
    ``<name>_spread`` = their sd per axis, ``<name>_likelihood`` = their mean) is what the smoother
    needs from the members, except that the spread is one sd for both axes (the root mean square of
    the x and y sd) where the members give one per axis: the observation variance is ``spread²`` on
    each axis, divided by the mean likelihood as in ``ensemble_statistics``. Where the spread is
    missing (one member had the point) the landmark's largest variance of the video is used.

    Args:
        centre: (T, K, 2) px; spread: (T, K) px; likelihood: (T, K) or None.
    """
    centre = np.asarray(centre, dtype=np.float64)
    spread = np.asarray(spread, dtype=np.float64)
    if centre.ndim != 3 or centre.shape[-1] != 2 or spread.shape != centre.shape[:2]:
        raise DataError(f"centre must be (T, K, 2) and spread (T, K); received {centre.shape} and {spread.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        per_axis = np.repeat((spread ** 2)[..., None], 2, axis=-1)
        lone = np.nanmax(per_axis, axis=0, keepdims=True)
        variance = np.where(np.isfinite(per_axis), per_axis, np.broadcast_to(lone, per_axis.shape))
        variance = np.where(np.isfinite(centre), variance, np.nan)
        lik = None
        if likelihood is not None:
            lik = np.where(np.isfinite(centre).all(axis=-1), np.asarray(likelihood, dtype=np.float64), np.nan)
            variance = variance / np.clip(np.nan_to_num(lik, nan=1.0), LIKELIHOOD_FLOOR, None)[..., None]
    return _smooth_observations(centre, variance, spread, lik, strength)


def _smooth_observations(centre: np.ndarray, variance: np.ndarray, spread: np.ndarray,
                         mean_lik: np.ndarray | None, strength: float | Sequence[float] | None) -> EnsembleSmoothing:
    """The Kalman filter and RTS smoother over (T, K, 2) observations with their per-frame variance."""
    with warnings.catch_warnings():  # a landmark no member ever saw stays NaN, its strength too
        warnings.simplefilter("ignore", RuntimeWarning)
        m0 = np.nanmean(centre, axis=0)
        p0 = np.clip(np.nanvar(centre, axis=0), FINAL_VARIANCE_FLOOR, None)
        typical = np.clip(np.nanmedian(variance, axis=0), TUNING_VARIANCE_FLOOR, None)  # (K, 2)
    if strength is None:
        s, _ = tune_strength(centre, typical[None], m0, p0)
        s = np.where(np.isfinite(m0).all(axis=-1), s, np.nan)
    else:
        s = np.broadcast_to(np.asarray(strength, dtype=np.float64), (centre.shape[1],)).copy()
    filtered = kalman_filter(centre, np.clip(variance, FINAL_VARIANCE_FLOOR, None), s[:, None], m0, p0)
    mean, post_var = rts_smoother(filtered, s[:, None])
    return EnsembleSmoothing(mean, post_var, centre, variance, spread, mean_lik, s, tuned=strength is None)


def ensemble_statistics(points: np.ndarray, likelihood: np.ndarray | None = None, *,
                        average: str = "median") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Consensus, observation variance, spread and mean likelihood of an ensemble.

    Returns:
        centre (T, K, 2) px; variance (T, K, 2) px² (confidence-weighted when likelihoods are given;
        NaN where no member has the point); spread (T, K) px; mean likelihood (T, K) or None.
    """
    if average not in ("median", "mean"):
        raise DataError(f"average must be 'median' or 'mean'. Received: {average!r}")
    with warnings.catch_warnings():  # all-NaN frames are expected: they stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        centre = (np.nanmedian if average == "median" else np.nanmean)(points, axis=0)
        raw = np.nanvar(points, axis=0)
        count = np.isfinite(points).sum(axis=0)
        spread = np.sqrt(np.nanmean(np.where(count >= 2, raw, np.nan), axis=-1))
        lone = np.nanmax(np.where(count >= 2, raw, np.nan), axis=0, keepdims=True)  # (1, K, 2)
        variance = np.where(count >= 2, raw, np.where(count == 1, np.broadcast_to(lone, raw.shape), np.nan))
        mean_lik = None
        if likelihood is not None:
            lik = np.where(np.isfinite(points).all(axis=-1), np.asarray(likelihood, dtype=np.float64), np.nan)
            mean_lik = np.nanmean(lik, axis=0)
            weight = np.clip(np.nan_to_num(mean_lik, nan=1.0), LIKELIHOOD_FLOOR, None)
            variance = variance / weight[..., None]
    return centre, variance, spread, mean_lik


def _check_shapes(points: np.ndarray, likelihood: np.ndarray | None) -> None:
    if points.ndim != 4 or points.shape[-1] != 2:
        raise DataError(f"points must be (members, frames, landmarks, 2). Received shape {points.shape}")
    if points.shape[0] < 2:
        raise DataError("the ensemble Kalman smoother needs the predictions of 2 or more models of the same video "
                        "(their disagreement is its noise); for one model use the median or savgol filter")
    if points.shape[1] < 2:
        raise DataError(f"a trajectory needs 2 or more frames. Received {points.shape[1]}")
    if likelihood is not None and np.shape(likelihood) != points.shape[:3]:
        raise DataError(f"likelihood must be (members, frames, landmarks) = {points.shape[:3]}. "
                        f"Received shape {np.shape(likelihood)}")
