"""Soak: many short epochs in one ``fit`` call; memory, file handles and worker processes must stay flat.

A watcher thread samples, after every epoch's checkpoint (``last.state.pt`` changes):
RSS of this process and of its child processes (DataLoader workers), open file
descriptors (``/proc/self/fd``) and the number of child processes. After ``fit`` returns
it checks that the workers are gone and the descriptors are back to the count before.

    .venv/bin/python bench/perf/soak.py --quick          # 20 epochs, well under a minute
    .venv/bin/python bench/perf/soak.py --epochs 300     # the recorded run (docs/RELIABILITY.md)

Verdict "flat": after a warm-up (the first quarter of the epochs), RSS grows by less than
max(5 %, 24 MiB) from the second to the last quarter (medians), the child count never
changes, and the descriptor count's floor does not rise. Samples taken while a checkpoint is
being written, or while batches from the workers are in flight (each arrives as a shared-memory
file descriptor until it is freed), see a few more: jitter, not a leak. Exit code 1 when something is not flat.
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.harness import flags  # noqa: E402
from bench.harness.machine import children, machine_line, rss_mb  # noqa: E402
from bench.harness.results import markdown_table  # noqa: E402

TINY_SPEC = [["conv", {"filter_size": 3, "layer_depth": 8}], ["bn"], ["relu"],
             ["max_pool", {"kernel": [1, 2, 2, 1], "strides": [1, 2, 2, 1]}], ["conv", {"layer_depth": 8}], ["relu"]]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def sample() -> dict[str, float]:
    kids = children(os.getpid())
    return {"rss_parent_mb": rss_mb(os.getpid()), "rss_children_mb": sum(rss_mb(k) for k in kids),
            "fds": open_fds(), "children": len(kids)}


def make_set(folder: Path, n: int, seed: int = 0) -> Path:
    """``n`` random 48x40 PNGs and a CSV with two landmarks."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
        rows.append((f"im{i}.png", *rng.uniform(2, 38, 4).tolist()))
    path = folder / "ann.csv"
    pd.DataFrame(rows, columns=["image", "a_x", "a_y", "b_x", "b_y"]).to_csv(path, index=False)
    return path


class Watcher(threading.Thread):
    """Samples once per new ``last.state.pt`` (once per epoch)."""

    def __init__(self, run: Path) -> None:
        super().__init__(daemon=True)
        self.path, self.rows, self.stop = run / "last.state.pt", [], threading.Event()

    def run(self) -> None:
        seen = -1
        while not self.stop.is_set():
            try:
                stamp = self.path.stat().st_mtime_ns
            except FileNotFoundError:
                stamp = -1
            if stamp not in (-1, seen):
                seen = stamp
                self.rows.append({"epoch": len(self.rows) + 1, "t_s": time.perf_counter(), **sample()})
            time.sleep(0.01)


def verdict(rows: list[dict[str, float]], before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    n = len(rows)
    q = max(1, n // 4)
    steady = rows[q:]
    first = statistics.median(r["rss_parent_mb"] + r["rss_children_mb"] for r in rows[q:2 * q])
    last = statistics.median(r["rss_parent_mb"] + r["rss_children_mb"] for r in rows[-q:])
    growth = last - first
    fds = sorted({int(r["fds"]) for r in steady})
    kids = sorted({int(r["children"]) for r in steady})
    # Checkpoint temp files and shared-memory batches from workers are open at some samples: that
    # is jitter on top of a floor. A leak raises the floor, so compare the floors of the quarters.
    fd_floor = (min(r["fds"] for r in rows[q:2 * q]), min(r["fds"] for r in rows[-q:]))
    checks = {
        "rss": growth < max(0.05 * first, 24.0),
        "fds": fd_floor[1] <= fd_floor[0],
        "children": len(kids) == 1,
        "workers_gone_after_fit": after["children"] == before["children"],
        "fds_back_after_fit": after["fds"] <= before["fds"],
    }
    return {"epochs": n, "fd_floor": fd_floor, "rss_first_mb": first, "rss_last_mb": last, "rss_growth_mb": growth,
            "fds_seen": fds,
            "children_seen": kids, "before": before, "after": after, "checks": checks, "flat": all(checks.values())}


def soak(epochs: int, n_images: int, workers: int) -> tuple[list[dict[str, float]], dict[str, float],
                                                             dict[str, float], float, tuple[int, int]]:
    """One ``fit`` of ``epochs`` epochs: (samples per epoch, sample before, sample after, seconds, (train, val))."""
    import cnnkit

    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        table = cnnkit.read_annotations(make_set(base, n_images))
        train, val = table.split((0.75, 0.25), seed=0)
        gc.collect()
        before = sample()
        watcher = Watcher(base / "run")
        watcher.start()
        start = time.perf_counter()
        cnnkit.fit(TINY_SPEC, train, val, out_dir=base / "run", size=(32, 24), epochs=epochs, batch_size=8,
                   workers=workers, device="cpu", quiet=True, plots=False, head="gap")
        elapsed = time.perf_counter() - start
        time.sleep(0.1)
        watcher.stop.set()
        watcher.join()
        gc.collect()
        time.sleep(0.5)  # let the worker processes exit
        after = sample()
    return watcher.rows, before, after, elapsed, (len(train), len(val))


def main(argv: list[str] | None = None) -> int:
    parser = flags.parser(__doc__, epochs={"default": 200, "help": "epochs of the one fit (default 200)"},
                          images={"default": 48, "help": "images, a quarter for validation (default 48)"},
                          workers={"default": 2, "help": "loader workers (default 2)"},
                          quick={"help": "20 epochs of 24 images"})
    args = parser.parse_args(argv)
    epochs, n_images = (20, 24) if args.quick else (args.epochs, args.images)
    rows, before, after, elapsed, (n_train, n_val) = soak(epochs, n_images, args.workers)
    result = verdict(rows, before, after)
    print(machine_line())
    print(f"soak: {epochs} epochs x {n_train} train + {n_val} val images, workers={args.workers}, {elapsed:.1f} s")
    step = max(1, len(rows) // 10)
    shown = rows[::step] + ([rows[-1]] if (len(rows) - 1) % step else [])
    print(markdown_table(["epoch", "RSS parent MiB", "RSS workers MiB", "open fds", "child processes"],
                         [(int(r["epoch"]), f"{r['rss_parent_mb']:.0f}", f"{r['rss_children_mb']:.0f}",
                           int(r["fds"]), int(r["children"])) for r in shown]))
    print(f"before fit: {before['fds']:.0f} fds, {before['children']:.0f} children; after fit: "
          f"{after['fds']:.0f} fds, {after['children']:.0f} children")
    print(f"RSS (parent + workers) median of epochs {len(rows) // 4 + 1}.. vs last quarter: "
          f"{result['rss_first_mb']:.0f} -> {result['rss_last_mb']:.0f} MiB ({result['rss_growth_mb']:+.1f} MiB)")
    print(f"open fds seen after warm-up: {result['fds_seen']} (floor {result['fd_floor'][0]:.0f} -> "
          f"{result['fd_floor'][1]:.0f}); child processes seen: {result['children_seen']}")
    print("checks: " + ", ".join(f"{k} {'ok' if v else 'FAIL'}" for k, v in result["checks"].items()))
    print("FLAT" if result["flat"] else "NOT FLAT")
    return 0 if result["flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
