"""The label -> train -> refine loop, measured on lips-via (docs/ACCURACY.md, "Suggest vs random").

Per seed: 60 images of the training split (207) are the first labels; a model trained on them
(the landmark default: ResNet-18 160x120, heatmap head, flips with pairs, augmentation) ranks
the other 147 with ``cnnkit.suggest``; 60 suggested images vs 60 drawn at random from the same
147 are added (their true points stand for the human corrections), and a model is trained from
scratch on each 120-image set with the same recipe and seed. All three are scored on the test
split (392 images of speakers unseen in training), which chooses nothing. Also reported: the
first model's error on the suggested vs the random images (does suggest find its mistakes?).

    .venv/bin/python bench/accuracy/loop_lips.py --seeds 0 1 --epochs 40          # ~1 h on 2 shared cores
    .venv/bin/python bench/accuracy/loop_lips.py --seeds 0 1 --parallel 2         # the seeds at once, a thread each
    .venv/bin/python bench/accuracy/loop_lips.py --quick                          # a smoke run, about a minute
    .venv/bin/python bench/accuracy/loop_lips.py --signals --seeds 0 1            # after a run: which signal ranks errors
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.harness import ROOT, flags  # noqa: E402
from bench.harness.datasets import EXPERIMENTS, lips_table, split_part  # noqa: E402
from bench.harness.runs import Job, last_json, launch  # noqa: E402

#: the landmark default's data options (flip pairs: auto); the recipe itself is written out in _train
EXPERIMENT = EXPERIMENTS / "lips_heatmap_default.yaml"
HEAD = {"type": "heatmap", "width": 128, "stride": 4}


def _tables(data_root: Path, quick: bool):  # noqa: ANN202 - (train, test) AnnotationTables
    table = lips_table(EXPERIMENT, data_root)
    train, test = split_part(table, "train"), split_part(table, "test")
    return train, test.subset(range(0, len(test), 20)) if quick else test


def _train(table, out: Path, args: argparse.Namespace, seed: int) -> tuple[Path, float]:  # noqa: ANN001
    import cnnkit

    start = time.perf_counter()
    run = cnnkit.fit("resnet18", table, None, out_dir=out, head=HEAD, augment="auto", size=args.size,
                     epochs=args.epochs, batch_size=16, lr=1e-3, optimizer="adam", schedule="cosine", loss="l1",
                     seed=seed, device="cpu", quiet=True, overwrite=True)  # each round trains its folder afresh
    return run.last, time.perf_counter() - start


def one_seed(seed: int, args: argparse.Namespace) -> dict:
    import numpy as np

    import cnnkit

    train, test = _tables(args.data_root, args.quick)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train))
    start, pool = order[:args.start], order[args.start:]
    randomly = rng.choice(pool, size=args.add, replace=False)
    out = args.out / f"seed{seed}"
    first, t0 = _train(train.subset(start), out / "start", args, seed)
    pool_table = train.subset(pool)
    top = cnnkit.suggest(first, pool_table, n=args.add, device="cpu")
    index = {str(Path(p).resolve()): int(i) for p, i in zip(pool_table.images, pool, strict=True)}
    suggested = np.array([index[str(Path(p).resolve())] for p in top["image"]])
    pool_errors = cnnkit.evaluate(first, pool_table, device="cpu").per_image
    err_of = dict(zip(pool_errors["image"], pool_errors["error_px_mean"], strict=True))
    result = {"seed": seed, "epochs": args.epochs, "start": len(start), "added": args.add,
              "signals": [c for c in top.columns if c.startswith("doubt_")],
              "overlap": len(set(suggested) & set(randomly)),
              "first_model_error_on_suggested": float(np.mean([err_of[train.images[i]] for i in suggested])),
              "first_model_error_on_random": float(np.mean([err_of[train.images[i]] for i in randomly])),
              "test_start": cnnkit.evaluate(first, test, device="cpu").metrics["error_px_mean"], "wall_s": [t0]}
    for name, extra in (("suggest", suggested), ("random", randomly)):
        model, t = _train(train.subset(np.concatenate([start, extra])), out / name, args, seed)
        result[f"test_{name}"] = cnnkit.evaluate(model, test, device="cpu").metrics["error_px_mean"]
        result["wall_s"].append(t)
    return result


def signal_check(seed: int, args: argparse.Namespace) -> dict:
    """Spearman correlation of each doubt signal with the first model's error on the candidates
    (per image), and of each landmark's likelihood doubt with that landmark's error (per point).
    Reads the run folder of an earlier run; trains nothing."""
    import numpy as np
    import pandas as pd

    import cnnkit
    from cnnkit.infer.suggest import rank

    train, _ = _tables(args.data_root, args.quick)
    pool = np.random.default_rng(seed).permutation(len(train))[args.start:]
    first = args.out / f"seed{seed}" / "start" / "last.safetensors"
    pool_table = train.subset(pool)
    ranked = rank(cnnkit.suggest(first, pool_table, n=len(pool), device="cpu").drop(columns="score"),
                  list(train.landmarks))
    per_image = cnnkit.evaluate(first, pool_table, device="cpu").per_image.set_index("image")
    err = per_image.loc[ranked["image"]]

    def rho(a: pd.Series, b: pd.Series) -> float:
        return round(float(pd.Series(a.to_numpy()).rank().corr(pd.Series(b.to_numpy()).rank())), 3)

    out = {c: rho(ranked[c], err["error_px_mean"]) for c in ("doubt_likelihood", "doubt_flip", "score")}
    out["per_landmark"] = {n: rho(1 - ranked[f"{n}_likelihood"], err[f"error_px/{n}"]) for n in train.landmarks}
    return {"seed": seed, **out}


def _table(results: list[dict]) -> str:
    start, add = results[0]["start"], results[0]["added"]
    lines = [f"| seed | signals | first {start}: test px | + {add} suggested: test px | + {add} random: test px | "
             "first model's error on the suggested / random images px | overlap |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['seed']} | {', '.join(s[6:] for s in r['signals'])} | {r['test_start']:.2f} | "
                     f"**{r['test_suggest']:.2f}** | {r['test_random']:.2f} | "
                     f"{r['first_model_error_on_suggested']:.2f} / {r['first_model_error_on_random']:.2f} | "
                     f"{r['overlap']} |")
    if len(results) > 1:
        mean = {k: sum(r[k] for r in results) / len(results) for k in ("test_start", "test_suggest", "test_random")}
        lines.append(f"| mean | | {mean['test_start']:.2f} | **{mean['test_suggest']:.2f}** | "
                     f"{mean['test_random']:.2f} | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = flags.parser(__doc__, seeds={"default": [0, 1], "help": "seeds (default 0 1)"},
                     epochs={"default": 40, "help": "epochs of every model (default 40)"},
                     size={"default": (160, 120), "help": "input size WIDTHxHEIGHT (default 160x120)"},
                     data_root=True, out={"default": ROOT / "runs" / "loop_lips", "help": "default runs/loop_lips"},
                     parallel={"help": "seeds at a time, each in its own process with one thread (default 1: "
                                       "in this process)"},
                     quick={"help": "tiny sizes and 1 epoch: checks the script runs"})
    p.add_argument("--start", type=int, default=60, help="first labels (default 60)")
    p.add_argument("--add", type=int, default=60, help="images added, suggested or at random (default 60)")
    p.add_argument("--signals", action="store_true",
                   help="after a run: correlate each doubt signal with the first model's errors (trains nothing)")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one seed, print its JSON
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.size, args.start, args.add, args.seeds = 1, (64, 48), 12, 6, args.seeds[:1]
    if not (args.data_root / "lips-via").exists():
        sys.exit(f"lips-via not found under {args.data_root}; pass --data-root")
    if args.signals:
        for seed in args.seeds:
            print(json.dumps(signal_check(seed, args)))
        return
    if args.one is not None:
        print(json.dumps(one_seed(args.one, args)))
        return
    results = _run_seeds(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(_table(results))


def _run_seeds(args: argparse.Namespace) -> list[dict]:
    """Each seed in this process, or (``--parallel`` > 1) in its own with one thread, N at a time."""
    if args.parallel <= 1:
        return [one_seed(s, args) for s in args.seeds]
    same = ["--epochs", str(args.epochs), "--size", "{}x{}".format(*args.size), "--start", str(args.start),
            "--add", str(args.add), "--data-root", str(args.data_root), "--out", str(args.out)]
    jobs = {Job([sys.executable, __file__, *same, *(["--quick"] if args.quick else []), "--one", str(s)],
                args.out / f"seed{s}.log", {"OMP_NUM_THREADS": "1"}): s for s in args.seeds}
    results: dict[int, dict] = {}

    def done(job: Job, code: int, wall_s: float) -> None:
        if code != 0:
            sys.exit(f"seed {jobs[job]} failed (exit {code}):\n{job.log.read_text()[-2000:]}")
        results[jobs[job]] = last_json(job.log.read_text())

    launch(list(jobs), args.parallel, done)
    return [results[s] for s in args.seeds]


if __name__ == "__main__":
    main()
