"""Compare landmark settings on lips-via's `extra` split (108 images in neither train nor test).

Each configuration is ``examples/accuracy/lips_heatmap_default.yaml`` plus ``--set`` overrides,
trained once per seed (several runs in parallel), then scored on the extra split with and
without test-time flip. The test split chooses nothing: each run's test files are deleted
unread. docs/ACCURACY.md records which sweep chose the default.

    .venv/bin/python bench/lips_sweep.py --device cpu --parallel 2 --seeds 0 --only default flip
    python bench/lips_sweep.py --device cuda --parallel 5 --workers 3 --seeds 0 1   # a GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "examples" / "accuracy" / "lips_heatmap_default.yaml"
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


def train(name: str, seed: int, args: argparse.Namespace) -> tuple[Path, float]:
    out = args.out / f"{name}_s{seed}"
    data = args.data.resolve()
    sets = [f"data.source={data / 'via_project.json'}", f"data.split.file={data / 'splits.csv'}",
            "data.flip_pairs=auto", f"data.workers={args.workers}", f"train.device={args.device}",
            f"train.seed={seed}", f"output={out.resolve()}", *CONFIGS[name], *args.set]  # fmt: skip
    cmd = [sys.executable, "-m", "cnnkit", "--quiet", "train", str(BASE)]
    for s in sets:
        cmd += ["--set", s]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONPATH=str(ROOT / "src"))
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{name} seed {seed} failed:\n{done.stderr[-3000:]}")
    for leftover in ("test_metrics.json", "test_per_image.csv"):
        (out / leftover).unlink(missing_ok=True)  # the test split chooses nothing
    return out, time.perf_counter() - start


def extra_split(args: argparse.Namespace):
    from cnnkit.experiment import join_split_file, load_experiment

    exp = load_experiment(BASE, [f"data.source={args.data.resolve() / 'via_project.json'}",
                                 f"data.split.file={args.data.resolve() / 'splits.csv'}"])  # fmt: skip
    table = join_split_file(exp.read_source(exp.settings["data"]["source"]), exp.settings["data"]["split"], exp)
    return table.with_df(table.df[table.df["split"] == "extra"])


def train_and_score(name: str, seed: int, args: argparse.Namespace, extra, log: Path) -> dict:
    """One run, scored at once and appended to ``log`` (so a sweep cut short keeps what it finished)."""
    from cnnkit.infer.evaluate import evaluate

    out, seconds = train(name, seed, args)
    row = {"name": name, "seed": seed, "train_s": round(seconds, 1)}
    for key, tta in (("plain", False), ("tta_flip", True)):
        metrics = evaluate(out / "last.safetensors", extra, device=args.device, tta_flip=tta).metrics
        row[key] = round(float(metrics["error_px_mean"]), 3)
    with log.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "lips-via")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "sweep")
    p.add_argument("--device", default="cpu")
    p.add_argument("--parallel", type=int, default=1, help="runs at a time")
    p.add_argument("--workers", type=int, default=0, help="loader workers per run")
    p.add_argument("--threads", type=int, default=1, help="OMP threads per run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--only", nargs="+", choices=sorted(CONFIGS), help="a subset of the configurations")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="added to every configuration")
    args = p.parse_args(argv)
    names = args.only or list(CONFIGS)
    jobs = [(n, s) for s in args.seeds for n in names]
    sys.path.insert(0, str(ROOT / "src"))
    extra = extra_split(args)
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "sweep.jsonl"
    with ThreadPoolExecutor(args.parallel) as pool:
        rows = list(pool.map(lambda job: train_and_score(*job, args, extra, log), jobs))
    print(f"{'configuration':22s} {'extra px (seeds)':>24s} {'mean':>6s} {'+tta mean':>9s}")
    for name in names:
        mine = [r for r in rows if r["name"] == name]
        plain, tta = [r["plain"] for r in mine], [r["tta_flip"] for r in mine]
        print(f"{name:22s} {' / '.join(f'{v:.2f}' for v in plain):>24s} {statistics.fmean(plain):6.2f} "
              f"{statistics.fmean(tta):9.2f}")
    print(f"wrote {log}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
