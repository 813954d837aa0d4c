"""Timing on a shared machine: modes take turns so load from other jobs hits them alike; medians.

Every performance script compares modes side by side (two models, in memory vs streamed, video vs
frames, Keras vs cnnkit). Run one mode after the other and a change in the machine's speed lands on
one of them; run them in turns, the order flipping (A B, B A) or rotating every round, and it lands
on all. The figures are then medians over rounds, and the ratios are the figures to read.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
#: warm-up rounds are numbered from here, so their seeds never repeat a timed round's
WARMUP_ROUND = 1000

THREADS_NOTE = (
    "Why 1 torch thread by default: with other jobs holding the 2 CPUs, two OpenMP threads spin-wait at "
    "every barrier for a partner that is descheduled. In the same minute (load average about 7) a ResNet-50 "
    "bf16 train step at batch 32 ran at 2-8 img/s with 2 threads, 5-16 img/s with 2 threads and "
    "OMP_WAIT_POLICY=PASSIVE, and 21-28 img/s with 1 thread. One thread keeps the side-by-side ratios "
    "meaningful; pass `--threads 2` on an idle machine."
)


def round_order(names: Sequence[T], r: int, rotate: bool = False) -> list[T]:
    """The order of round ``r``: flipped every other round (A B, B A, ...) or rotated by one (A B C, B C A, ...)."""
    names = list(names)
    if rotate:
        return names[r % len(names):] + names[: r % len(names)]
    return names if r % 2 == 0 else names[::-1]


def alternate(calls: Mapping[str, Callable[[int], T]], rounds: int, warmup: int = 0,
              rotate: bool = False) -> dict[str, list[T]]:
    """Each call's results over ``rounds`` rounds in turn (``round_order``), after ``warmup`` untimed
    rounds in the given order. A call gets the round's number (warm-up: from ``WARMUP_ROUND``)."""
    for w in range(warmup):
        for fn in calls.values():
            fn(WARMUP_ROUND + w)
    out: dict[str, list[T]] = {name: [] for name in calls}
    for r in range(rounds):
        for name in round_order(list(calls), r, rotate):
            out[name].append(calls[name](r))
    return out


def seconds(fn: Callable[[], Any]) -> Callable[[int], float]:
    """A call for ``alternate`` that times ``fn`` (seconds, wall clock)."""

    def timed(_round: int) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return timed


def median_time(fn: Callable[[], Any], budget_s: float, sync: Callable[[], None] = lambda: None) -> float:
    """Median seconds per call (robust to other processes sharing the CPU): two warm-up calls, then
    repeat until ``budget_s`` seconds have passed, at least 5 times. ``sync`` waits for a GPU."""
    for _ in range(2):
        fn()
    sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 5 or time.perf_counter() - start < budget_s:
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
