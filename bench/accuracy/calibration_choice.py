"""Which error calibration is better calibrated on held-out points: isotonic or Rayleigh (a few seconds).

Generated validation sets (cnnkit.trajectories.synth is for trajectories; here the points are
drawn directly): per point an uncertainty signal and an error whose distribution depends on it.

- ``proportional``: error ~ Rayleigh(1.6 x spread) (an ensemble that underestimates its error);
- ``floor``: error ~ Rayleigh(sqrt(1.5² + (1.3 x spread)²)) (shared mistakes: a floor under the error);
- ``per-landmark``: error ~ Rayleigh(c_k x spread), c_k from 1 to 3 over 6 landmarks;
- ``likelihood``: error ~ Rayleigh(1 + 8 (1 - likelihood)²), likelihood uniform in [0, 1].

Each map is fitted on n validation points and scored on 20000 others (mean of 5 draws): the expected calibration
error (mean |observed - predicted| over 10 equal-count bins, px) and the ROC AUC for error > 10 px.

    .venv/bin/python bench/accuracy/calibration_choice.py
"""

from __future__ import annotations

import numpy as np

from cnnkit.trajectories.calibrate import fit_calibration
from cnnkit.trajectories.reliability import calibration_error, error_auc, reliability_table

SCENARIOS = ("proportional", "floor", "per-landmark", "likelihood")


def draw(scenario: str, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    spread = rng.lognormal(0.5, 0.6, n)
    names = rng.integers(0, 6, n)
    lik = rng.uniform(0, 1, n)
    sd = {"proportional": 1.6 * spread, "floor": np.sqrt(1.5 ** 2 + (1.3 * spread) ** 2),
          "per-landmark": (1.0 + 0.4 * names) * spread, "likelihood": 1.0 + 8.0 * (1.0 - lik) ** 2}[scenario]
    error = sd * np.sqrt(-2.0 * np.log(rng.uniform(size=n)))  # Rayleigh(sd)
    return {"spread": spread, "likelihood": lik, "error": error, "names": names.astype(str)}


def score(scenario: str, method: str, n: int, per_landmark: bool) -> tuple[float, float]:
    """Mean over 5 draws (the ECE of one draw varies by about 0.1 px)."""
    return tuple(np.mean([_score_once(scenario, method, n, per_landmark, seed) for seed in range(5)], axis=0))


def _score_once(scenario: str, method: str, n: int, per_landmark: bool, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    fit_on, test = draw(scenario, n, rng), draw(scenario, 20000, rng)
    signal = {"likelihood": test["likelihood"]} if scenario == "likelihood" else {"spread": test["spread"]}
    fit_signal = {k: fit_on[k] for k in signal}
    names = (fit_on["names"], test["names"]) if per_landmark else (None, None)
    cal = fit_calibration(fit_on["error"], method=method, landmarks=names[0], **fit_signal)
    predicted = cal.expected_error(landmarks=names[1], **signal)
    return calibration_error(reliability_table(predicted, test["error"])), error_auc(predicted, test["error"])


def main() -> None:
    print(f"{'scenario':13s} {'n':>5s} | " + " | ".join(f"{m:>18s}" for m in
                                                       ("isotonic", "isotonic/landmark", "rayleigh",
                                                        "rayleigh/landmark")))
    for scenario in SCENARIOS:
        for n in (200, 1000, 5000):
            cells = []
            for method, per in (("isotonic", False), ("isotonic", True), ("rayleigh", False), ("rayleigh", True)):
                if method == "rayleigh" and scenario == "likelihood":
                    cells.append(f"{'-':>18s}")
                    continue
                ece, auc = score(scenario, method, n, per)
                cells.append(f"ECE {ece:4.2f} AUC {auc:5.3f}")
            print(f"{scenario:13s} {n:5d} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
