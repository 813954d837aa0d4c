"""cnnkit's numpy EKS against the ensemble-kalman-smoother package on the same generated inputs.

Needs the package (``pip install -e '.[eks]'``; ``make install`` installs it). Two generated
videos of 400 frames and 2 landmarks (a random walk with 1.5 px steps, the smoother's own model;
and smooth motion, a turn every ~0.5 s at 30 fps), 4 members with 3 px Gaussian noise and 2 %
single-frame failures, likelihoods given (the package's default confidence-weighted variance).
Printed: the largest difference of the posterior means and variances when both use the same
strength; the strengths each chooses and the difference of the means then; the error against
the truth of the ensemble median and of both smoothers.

    .venv/bin/python bench/accuracy/eks_agreement.py
"""

from __future__ import annotations

import numpy as np
from eks.marker_array import MarkerArray
from eks.singlecam_smoother import ensemble_kalman_smoother_singlecam

from cnnkit.trajectories.eks import ensemble_kalman_smoother
from cnnkit.trajectories.synth import observe, random_walk, smooth_motion

NAMES = ["a", "b"]


def package(points: np.ndarray, likelihood: np.ndarray, smooth_param=None) -> tuple[dict, np.ndarray]:
    fields = np.concatenate([points, likelihood[..., None]], axis=-1)[:, None]  # (M, cameras=1, T, K, 3)
    df, s = ensemble_kalman_smoother_singlecam(MarkerArray(fields, data_fields=["x", "y", "likelihood"]), NAMES,
                                               smooth_param=smooth_param)

    def get(suffix: str) -> np.ndarray:
        cols = [df.xs((k, f"{axis}{suffix}"), level=(1, 2), axis=1).iloc[:, 0].to_numpy() for k in NAMES
                for axis in "xy"]
        return np.stack(cols, axis=-1).reshape(len(df), len(NAMES), 2)

    return {"mean": get(""), "var": get("_posterior_var")}, np.asarray(s, dtype=float)


def _rms(a: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(((a - truth) ** 2).sum(-1).mean()))


def main() -> None:
    motions = {"random walk": lambda r: random_walk(400, 2, r, step_px=1.5),
               "smooth motion": lambda r: smooth_motion(400, 2, r)}
    for name, make in motions.items():
        rng = np.random.default_rng(7)
        truth = make(rng)
        seen = observe(truth, rng, n_members=4, noise_px=3.0, failure_rate=0.02)
        ours = ensemble_kalman_smoother(seen.points, seen.likelihood)
        same, _ = package(seen.points, seen.likelihood, smooth_param=list(ours.strength))
        tuned, s = package(seen.points, seen.likelihood)
        print(f"{name}: same strength: max |mean diff| {np.abs(same['mean'] - ours.mean).max():.1e} px, "
              f"max relative variance diff {np.abs(same['var'] / ours.variance - 1).max():.1e}")
        print(f"  strength: cnnkit {np.round(ours.strength, 3).tolist()}, package {np.round(s, 3).tolist()}; "
              f"means differ by {np.abs(tuned['mean'] - ours.mean).mean():.3f} px on average, "
              f"{np.abs(tuned['mean'] - ours.mean).max():.2f} px at most")
        print(f"  rms error vs truth: ensemble median {_rms(ours.median, truth):.2f} px, "
              f"cnnkit {_rms(ours.mean, truth):.2f} px, package {_rms(tuned['mean'], truth):.2f} px")


if __name__ == "__main__":
    main()
