"""Compare landmark settings on lips-via's `extra` split (108 images in neither train nor test).

Each configuration is ``examples/accuracy/lips_heatmap_default.yaml`` plus ``--set`` overrides,
trained once per seed (several runs in parallel), then scored on the extra split with and
without test-time flip. The test split chooses nothing: each run's test files are deleted
unread. docs/ACCURACY.md records which sweep chose the default.

    .venv/bin/python bench/accuracy/lips_sweep.py --device cpu --parallel 2 --seeds 0 --configs default flip
    python bench/accuracy/lips_sweep.py --device cuda --parallel 5 --workers 3 --seeds 0 1   # a GPU machine

Each run's output goes to ``OUT/<configuration>_s<seed>.log``; its scores to ``OUT/sweep.jsonl`` as it ends.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.harness import ROOT, flags  # noqa: E402
from bench.harness.datasets import EXPERIMENTS, lips_table, split_part  # noqa: E402
from bench.harness.runs import Job, cnnkit_argv, launch  # noqa: E402

BASE = EXPERIMENTS / "lips_heatmap_default.yaml"
FLIP = ["augment.flip=true"]
EMA = ["train.ema=0.99"]
CONFIGS: dict[str, list[str]] = {
    "default": [],
    "flip": FLIP,
    "ema": EMA,
    "flip_ema": FLIP + EMA,
    "epochs120": ["train.epochs=120"],
    "flip_ema_epochs120": FLIP + EMA + ["train.epochs=120"],
    "lr2e-3": ["train.lr=2.0e-3"],
    "adamw_wd": ["train.optimizer=adamw", "train.weight_decay=0.05"],
    "strong_aug": ["augment.rotate=25", "augment.scale=[0.8,1.2]", "augment.shift=0.1"],
    "batch8": ["train.batch_size=8"],
    "flip_ema_strong": FLIP + EMA + ["augment.rotate=25", "augment.scale=[0.8,1.2]", "augment.shift=0.1"],
    "softwing": ["train.loss=soft_wing"],
}


def train_job(name: str, seed: int, args: argparse.Namespace) -> Job:
    """``cnnkit train`` of the base file with the configuration's overrides, into ``OUT/<name>_s<seed>``."""
    lips = args.data_root.resolve() / "lips-via"
    sets = [f"data.source={lips / 'via_project.json'}", f"data.split.file={lips / 'splits.csv'}",
            "data.flip_pairs=auto", f"data.workers={args.workers}", f"train.device={args.device}",
            f"train.seed={seed}", f"output={(args.out / f'{name}_s{seed}').resolve()}", *CONFIGS[name], *args.set]
    argv = cnnkit_argv("--quiet", "train", str(BASE)) + [word for s in sets for word in ("--set", s)]
    return Job(argv, args.out / f"{name}_s{seed}.log", {"OMP_NUM_THREADS": str(args.threads)})


def scores(run: Path, extra, device: str) -> dict[str, float]:  # noqa: ANN001 - an AnnotationTable
    """Mean error on ``extra`` without and with test-time flip, px."""
    from cnnkit.infer.evaluate import evaluate

    return {key: round(float(evaluate(run / "last.safetensors", extra, device=device, tta_flip=tta)
                             .metrics["error_px_mean"]), 3) for key, tta in (("plain", False), ("tta_flip", True))}


def main(argv: list[str] | None = None) -> int:
    p = flags.parser(__doc__, data_root=True, out={"default": ROOT / "runs" / "sweep", "help": "default runs/sweep"},
                     device=True, parallel=True, workers=True,
                     threads={"default": 1, "help": "OMP threads per run (default 1)"}, seeds=True,
                     configs={"choices": sorted(CONFIGS), "help": "a subset of the configurations"})
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="added to every configuration")
    args = p.parse_args(argv)
    names = args.configs or list(CONFIGS)
    extra = split_part(lips_table(BASE, args.data_root), "extra")
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "sweep.jsonl"
    jobs = {train_job(n, s, args): (n, s) for s in args.seeds for n in names}
    rows: list[dict] = []

    def done(job: Job, code: int, wall_s: float) -> None:
        """Score a run at once and append it to the log (so a sweep cut short keeps what it finished)."""
        name, seed = jobs[job]
        run = args.out / f"{name}_s{seed}"
        for leftover in ("test_metrics.json", "test_per_image.csv"):
            (run / leftover).unlink(missing_ok=True)  # the test split chooses nothing
        if code != 0:
            print(f"FAILED {name} seed {seed}: exit {code} (see {job.log})", file=sys.stderr, flush=True)
            return
        rows.append({"name": name, "seed": seed, "train_s": round(wall_s, 1), **scores(run, extra, args.device)})
        with log.open("a", encoding="utf-8") as f:
            f.write(json.dumps(rows[-1]) + "\n")
        print(json.dumps(rows[-1]), flush=True)

    launch(list(jobs), args.parallel, done)
    print(f"{'configuration':22s} {'extra px (seeds)':>24s} {'mean':>6s} {'+tta mean':>9s}")
    for name in names:
        mine = sorted((r for r in rows if r["name"] == name), key=lambda r: r["seed"])
        if mine:
            plain, tta = [r["plain"] for r in mine], [r["tta_flip"] for r in mine]
            print(f"{name:22s} {' / '.join(f'{v:.2f}' for v in plain):>24s} {statistics.fmean(plain):6.2f} "
                  f"{statistics.fmean(tta):9.2f}")
    print(f"wrote {log}")
    return 0 if len(rows) == len(jobs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
