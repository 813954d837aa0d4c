"""Generated trajectories with known truth and known noise, for tests, the docs' figures and bench/.

No real video predictions with several models exist yet to choose defaults on, so the defaults
of this package were chosen on these (stated in docs/video.md): a smooth random motion at
30 frames/s, seen by models with Gaussian noise, single-frame failures and missing frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Observed:
    """Predictions of a generated trajectory. points (M, T, K, 2) px; likelihood (M, T, K); failed (M, T, K)."""

    points: np.ndarray
    likelihood: np.ndarray
    failed: np.ndarray


def smooth_motion(n_frames: int, n_landmarks: int, rng: np.random.Generator, *, time_scale: float = 6.0,
                  amplitude_px: float = 30.0, centre_px: float = 200.0) -> np.ndarray:
    """(T, K, 2) px: white noise blurred by a Gaussian of sd ``time_scale`` frames, scaled to sd ``amplitude_px``.

    ``time_scale`` sets how fast the points move: the motion turns about every 2-3 time scales
    (6 frames at 30 frames/s: a movement of about half a second).
    """
    half = int(np.ceil(4 * time_scale))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / time_scale) ** 2)
    noise = rng.normal(size=(n_frames + 2 * half, n_landmarks * 2))
    blurred = np.stack([np.convolve(noise[:, c], kernel, mode="valid") for c in range(noise.shape[1])], axis=1)
    blurred *= amplitude_px / blurred.std()
    return centre_px + blurred.reshape(n_frames, n_landmarks, 2)


def random_walk(n_frames: int, n_landmarks: int, rng: np.random.Generator, *, step_px: float = 1.0,
                centre_px: float = 200.0) -> np.ndarray:
    """(T, K, 2) px: the smoother's own model, a Gaussian random walk with steps of sd ``step_px`` per axis."""
    return centre_px + np.cumsum(rng.normal(0.0, step_px, size=(n_frames, n_landmarks, 2)), axis=0)


def observe(truth: np.ndarray, rng: np.random.Generator, *, n_members: int = 1, noise_px: float = 2.0,
            varying_noise: bool = False, failure_rate: float = 0.0, failure_px: float = 40.0,
            missing_rate: float = 0.0) -> Observed:
    """What ``n_members`` independent models would predict for ``truth`` (T, K, 2).

    Args:
        noise_px: sd of each model's Gaussian error per axis, px.
        varying_noise: the sd differs per frame and landmark (x1 to x4, shared by the members): hard frames.
        failure_rate: share of points where a model fails: off by a uniform offset of up to ``failure_px``.
        missing_rate: share of points a model gives as NaN.

    Likelihoods are uniform in [0.5, 1] for good points and [0, 0.7] for failures: informative, not perfect.
    """
    m = n_members
    sd = noise_px * (rng.uniform(1.0, 4.0, size=truth.shape[:2] + (1,)) if varying_noise else 1.0)
    points = truth[None] + rng.normal(size=(m, *truth.shape)) * sd
    failed = rng.random(size=(m, *truth.shape[:2])) < failure_rate
    offsets = rng.uniform(-failure_px, failure_px, size=(m, *truth.shape))
    points = np.where(failed[..., None], truth[None] + offsets, points)
    likelihood = np.where(failed, rng.uniform(0.0, 0.7, size=failed.shape), rng.uniform(0.5, 1.0, size=failed.shape))
    missing = rng.random(size=failed.shape) < missing_rate
    points = np.where(missing[..., None], np.nan, points)
    return Observed(points, np.where(missing, np.nan, likelihood), failed)
