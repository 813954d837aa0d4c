"""Choose the single-model filter defaults (method, window) on generated trajectories (a few seconds).

The choice was made before any lips video had been predicted (smoothing_lips.py measures them), on
generated motion at 30 frames/s (cnnkit.trajectories.synth): points moving smoothly (a turn every ~0.5 s: time scale 6 frames;
also 3 and 12), seen by one model with 2 px Gaussian noise per axis, 3 % single-frame failures
(off by up to 40 px; also none) and 2 % missing points. Score: the root-mean-square distance to the truth
and its 95th percentile, over 5 videos of 3000 frames and 4 landmarks each.

    .venv/bin/python bench/accuracy/smoothing_defaults.py
"""

from __future__ import annotations

import numpy as np

from cnnkit.trajectories.filters import median_filter, savgol_filter
from cnnkit.trajectories.synth import observe, smooth_motion

#: (time scale in frames, failure rate): the motion and how often the model fails on a single frame
SCENARIOS = ((3.0, 0.03), (6.0, 0.03), (12.0, 0.03), (6.0, 0.0))
CANDIDATES = [("raw", 1, 0)] + [("median", w, 0) for w in (3, 5, 7, 9, 11)] + \
    [("savgol", w, p) for p in (2, 3) for w in (5, 7, 9, 11, 15, 21)]  # 2 and 3: equal (odd windows)


def _errors(method: str, window: int, order: int, time_scale: float, failures: float) -> tuple[float, float]:
    dist = []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        truth = smooth_motion(3000, 4, rng, time_scale=time_scale)
        seen = observe(truth, rng, noise_px=2.0, failure_rate=failures, missing_rate=0.02).points[0]
        if method == "median":
            seen = median_filter(seen, window)
        elif method == "savgol":
            seen = savgol_filter(seen, window, order)
        d = np.linalg.norm(seen - truth, axis=-1)
        dist.append(d[np.isfinite(d)])
    d = np.concatenate(dist)
    return float(np.sqrt(np.mean(d ** 2))), float(np.percentile(d, 95))


def main() -> None:
    print("rms and 95th percentile of the distance to the truth (px), per (time scale, failure rate)")
    print("method  window order | " + " | ".join(f"{s:2.0f} fr {f:4.0%}: rms  p95" for s, f in SCENARIOS))
    for method, window, order in CANDIDATES:
        cells = [_errors(method, window, order, s, f) for s, f in SCENARIOS]
        print(f"{method:7s} {window:6d} {order:5d} | " + " | ".join(f"         {r:5.2f} {p:5.2f}" for r, p in cells))


if __name__ == "__main__":
    main()
