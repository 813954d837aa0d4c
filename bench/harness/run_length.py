"""Two prototypes over a run's history (the rows of its metrics.csv), evaluated offline on recorded runs
(issue 27, items 4 and 5), and their tables.

* ``stop_epoch``: a length rule that ends a run when validation has converged, instead of a fixed
  count of steps: after at least ``min_steps`` steps, stop when the best validation error of the
  most recent ``window`` share of the epochs is not ``tolerance`` below the best before them. The
  window is a share of the run so far, so the test reads "the last quarter of the training brought
  under 2 %" at any length.
* ``epoch_estimates``: the duration a run announces from its first epochs (the length rule's epochs x
  the pace of the epochs seen), next to the one ``train_child --estimate`` measures before training
  (``train.time``'s speed probe).

Both read what the run already writes (``time_s`` and ``val_error_px_mean`` per epoch).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from bench.harness.results import markdown_table

MIN_STEPS = 500
WINDOW = 0.25
TOLERANCE = 0.02


def stop_epoch(val: Sequence[float], steps_per_epoch: int, *, min_steps: int = MIN_STEPS, window: float = WINDOW,
               tolerance: float = TOLERANCE) -> int | None:
    """The first epoch (1-based) after which the rule stops the run, or None (it runs to its end).

    Example:
        >>> stop_epoch([10, 5, 4, 3.9, 3.9, 3.9, 3.9, 3.9], steps_per_epoch=100, min_steps=300)
        6
    """
    for epoch in range(2, len(val) + 1):
        if epoch * steps_per_epoch < min_steps:
            continue
        recent = max(1, math.ceil(window * epoch))
        before, latest = val[: epoch - recent], val[epoch - recent: epoch]
        if before and min(latest) > min(before) * (1 - tolerance):
            return epoch
    return None


def epoch_estimates(times: Sequence[float], epochs: int) -> dict[str, float]:
    """What a run would announce after its first epochs: {'after 1 epoch': s, 'after 2': s, 'after 3': s}.

    After 1: all epochs at the first one's pace. After 2 and 3: the first as it was, the rest at the
    mean pace of the epochs after it (the first epoch pays for start-up: allocator, caches, kernels).
    """
    out = {"after 1 epoch": epochs * times[0]}
    for seen in (2, 3):
        if len(times) >= seen:
            out[f"after {seen} epochs"] = times[0] + (epochs - 1) * statistics.fmean(times[1:seen])
    return out


def time_to(curve: Sequence[Mapping[str, float]], target: float) -> float | None:
    """The cumulative seconds at the end of the first epoch whose validation error is <= ``target``."""
    for point in curve:
        if point["val_px"] <= target:
            return point["t_s"]
    return None


def _pct(estimate: float | None, actual: float) -> str:
    return "-" if estimate is None else f"{estimate:.0f} ({100 * (estimate - actual) / actual:+.0f}%)"


def estimate_table(runs: Mapping[str, Mapping[str, Any]]) -> str:
    """Per run: the epoch loop's real seconds, and each estimate with its error."""
    rows = []
    for _, r in sorted(runs.items()):
        times = [c["time_s"] for c in r["curve"]]
        actual = sum(times)
        est = epoch_estimates(times, len(times))
        probe = r.get("estimate", {}).get("estimate_s")
        rows.append([r["set"], r["candidate"], r["seed"], len(times), f"{actual:.0f}", _pct(probe, actual),
                     *(_pct(est.get(k), actual) for k in ("after 1 epoch", "after 2 epochs", "after 3 epochs")),
                     f"{r.get('load', float('nan')):.1f}"])
    return markdown_table(["set", "candidate", "seed", "epochs", "epochs' real s", "probe before training (error)",
                           "after epoch 1", "after epoch 2", "after epoch 3", "load at start"], rows)


def rule_table(runs: Mapping[str, Mapping[str, Any]], **rule: Any) -> str:
    """Per run: where ``stop_epoch`` stops it, the share of the time it saves, and the errors."""
    rows = []
    for _, r in sorted(runs.items()):
        val = [c["val_px"] for c in r["curve"]]
        stop = stop_epoch(val, r["steps_per_epoch"], **rule)
        total = r["curve"][-1]["t_s"]
        at = r["curve"][(stop or len(val)) - 1]
        rows.append([r["set"], r["candidate"], r["seed"], f"{len(val)} / {len(val) * r['steps_per_epoch']}",
                     "-" if stop is None else f"{stop} / {stop * r['steps_per_epoch']}",
                     f"{100 * (1 - at['t_s'] / total):.0f}%", f"{at['val_px']:.2f}", f"{val[-1]:.2f}",
                     f"{min(val):.2f}"])
    return markdown_table(["set", "candidate", "seed", "epochs / steps run", "rule stops at epoch / step",
                           "time saved", "val px at the stop", "val px at the end", "best val px"], rows)
