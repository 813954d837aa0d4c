"""Suggest vs random, again: frames to label next ranked by an ensemble's calibrated uncertainty (lips-via).

The loop of ``bench/loop_lips.py`` (docs/ACCURACY.md, "Suggest vs random"), with the same draws per seed:
60 images of the training split (207) are the first labels, the other 147 the candidates, and the same
60 drawn at random from them for the random arm. What changed is the model that ranks: an ensemble of
``--members`` models (seeds ``seed .. seed + M - 1``) trained on the 60 images, its uncertainty
calibrated on the ``extra`` split (108 images; they choose nothing else), and ``cnnkit.suggest``
ranking by that calibrated uncertainty (the mirror-image signal is off by default for a calibrated
model). The 60 suggested images, or the 60 random ones, are added with their true points (standing
for the human corrections) and ONE model is trained on each 120-image set with the recipe and seed
of ``loop_lips.py``; both are scored on the test split (392 images, speakers unseen in training).

    .venv/bin/python bench/accuracy/suggest_lips.py --seeds 0 1 --members 4 --epochs 30 --parallel 2
    .venv/bin/python bench/accuracy/suggest_lips.py --quick          # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.harness import ROOT, flags  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "lips-via"
HEAD = {"type": "heatmap", "width": 128, "stride": 4}


def _tables(quick: bool) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from ensembles import tables

    parts = tables(DATA)
    if quick:
        parts["test"] = parts["test"].subset(range(0, len(parts["test"]), 20))
        parts["extra"] = parts["extra"].subset(range(0, len(parts["extra"]), 4))
    return parts


def _fit(table: Any, out: Path, args: argparse.Namespace, seed: int, ensemble: int = 1) -> Path:
    """loop_lips.py's recipe (no validation split: the last epoch is kept)."""
    import cnnkit

    run = cnnkit.fit("resnet18", table, None, out_dir=out, head=HEAD, augment="auto", size=tuple(args.size),
                     epochs=args.epochs, batch_size=16, lr=1e-3, optimizer="adam", schedule="cosine", loss="l1",
                     seed=seed, device="cpu", quiet=True, plots=False, ensemble=ensemble, overwrite=True)
    return run.best if ensemble > 1 else run.last


def _calibrate(manifest_path: Path, extra: Any) -> dict[str, Any]:
    """Calibrate the ensemble's uncertainty on ``extra`` and record it in its manifest (as training with a
    validation split would have)."""
    import dataclasses

    from cnnkit.io.ensemble import read_manifest, write_manifest
    from cnnkit.train.ensemble import calibrate_ensemble

    manifest = read_manifest(manifest_path)
    found = calibrate_ensemble(manifest.files, extra, device="cpu", batch_size=32)
    assert found is not None
    write_manifest(dataclasses.replace(manifest, calibration=found[0], uncertainty=found[1]))
    return found[1]


def one_seed(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd

    import cnnkit

    parts = _tables(args.quick)
    train, test = parts["train"], parts["test"]
    rng = np.random.default_rng(seed)  # the draws of loop_lips.py
    order = rng.permutation(len(train))
    start, pool = order[:args.start], order[args.start:]
    randomly = rng.choice(pool, size=args.add, replace=False)
    out = args.out / f"seed{seed}"
    t0 = time.perf_counter()
    first = _fit(train.subset(start), out / "start", args, seed, ensemble=args.members)
    record = _calibrate(first, parts["extra"])
    pool_table = train.subset(pool)
    ranked = cnnkit.suggest(first, pool_table, n=len(pool), device="cpu")  # every candidate, most doubtful first
    top = ranked.head(args.add)
    index = {str(Path(p).resolve()): int(i) for p, i in zip(pool_table.images, pool, strict=True)}
    suggested = np.array([index[str(Path(p).resolve())] for p in top["image"]])
    pool_eval = cnnkit.evaluate(first, pool_table, device="cpu")
    err_of = dict(zip(pool_eval.per_image["image"], pool_eval.per_image["error_px_mean"], strict=True))
    ranked = ranked.set_index("image")
    errs = pool_eval.per_image.set_index("image").loc[ranked.index, "error_px_mean"]
    result = {"seed": seed, "epochs": args.epochs, "members": args.members, "start": len(start), "added": args.add,
              "signal": record["signal"], "val_auc": record["val_auc"],
              "signals": [c for c in top.columns if c.startswith("doubt_")],
              "overlap": len(set(suggested) & set(randomly)),
              "first_model_error_on_suggested": float(np.mean([err_of[train.images[i]] for i in suggested])),
              "first_model_error_on_random": float(np.mean([err_of[train.images[i]] for i in randomly])),
              "spearman_uncertainty_vs_image_error": float(pd.Series(ranked["doubt_uncertainty"].to_numpy()).rank()
                                                           .corr(pd.Series(errs.to_numpy()).rank())),
              "pool_uncertainty_auc_10px": pool_eval.metrics.get("uncertainty_auc_10px"),
              "test_start": cnnkit.evaluate(first, test, device="cpu").metrics["error_px_mean"],
              "wall_s": [time.perf_counter() - t0]}
    for name, extra in (("suggest", suggested), ("random", randomly)):
        t1 = time.perf_counter()
        model = _fit(train.subset(np.concatenate([start, extra])), out / name, args, seed)
        result[f"test_{name}"] = cnnkit.evaluate(model, test, device="cpu").metrics["error_px_mean"]
        result["wall_s"].append(time.perf_counter() - t1)
    return result


def table(results: list[dict[str, Any]]) -> str:
    r0 = results[0]
    lines = [f"| seed | first {r0['start']}: ensemble of {r0['members']}, test px | + {r0['added']} suggested: test px | "
             f"+ {r0['added']} random: test px | first ensemble's error on the suggested / random images, px | "
             "Spearman (uncertainty, image error) on the candidates | suggested also drawn at random |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['seed']} | {r['test_start']:.2f} | **{r['test_suggest']:.2f}** | {r['test_random']:.2f} | "
                     f"{r['first_model_error_on_suggested']:.2f} / {r['first_model_error_on_random']:.2f} | "
                     f"{r['spearman_uncertainty_vs_image_error']:.2f} | {r['overlap']} of {r['added']} |")
    if len(results) > 1:
        mean = {k: float(np.mean([r[k] for r in results])) for k in ("test_start", "test_suggest", "test_random")}
        lines.append(f"| mean | {mean['test_start']:.2f} | **{mean['test_suggest']:.2f}** | {mean['test_random']:.2f} "
                     "| | | |")
    return "\n".join(lines)


def main() -> None:
    p = flags.parser(__doc__, quick={"help": "tiny sizes and 1 epoch: checks the script runs"},
                     seeds={"default": [0, 1], "help": "seeds (default 0 1)"}, epochs={"default": 30},
                     size={"default": (96, 72)}, out={"default": ROOT / "runs" / "suggest_lips"},
                     parallel={"help": "above 1: one process per seed, one thread each (default 1: one process)"})
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--start", type=int, default=60)
    p.add_argument("--add", type=int, default=60)
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one seed, print its JSON
    args = p.parse_args()
    if args.quick:
        args.epochs, args.size, args.start, args.add, args.members = 1, [48, 36], 12, 6, 2
        args.seeds, args.out = args.seeds[:1], args.out.with_name(args.out.name + "_quick")
    if args.one is not None:
        print("RESULT " + json.dumps(one_seed(args.one, args)))
        return
    if args.parallel > 1:
        env = dict(os.environ, OMP_NUM_THREADS="1")
        argv = [*sys.argv[1:], "--parallel", "1"]  # the last one given wins
        procs = [subprocess.Popen([sys.executable, __file__, *argv, "--one", str(s)], stdout=subprocess.PIPE,
                                  text=True, env=env) for s in args.seeds]
        results = []
        for proc in procs:
            text, _ = proc.communicate()
            line = next((x for x in text.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                sys.exit(f"a seed failed (exit {proc.returncode}):\n{text[-2000:]}")
            results.append(json.loads(line[7:]))
    else:
        results = [one_seed(s, args) for s in args.seeds]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(table(results))


if __name__ == "__main__":
    main()
