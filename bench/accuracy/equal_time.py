"""Equal CPU time: candidate library defaults against the earlier experiment files, each given the
wall time its set's earlier file takes on the 2-core CPU.

The earlier files are ``examples/accuracy/lips_heatmap_default.yaml`` (60 epochs) and
``faces68_heatmap_aug.yaml`` (40 epochs at 96x96). A candidate is the library defaults with a few
settings changed (``CANDIDATES``); it runs for the epochs that fit in the earlier file's time, from
the CPU's seconds per epoch of each (so on a GPU the runs are the CPU's equal-time runs, only
faster). One candidate, ``time_budget``, is the library defaults given only ``train.time`` = that
budget: it measures its own speed and picks its recipe and length, so it means something only on the
2-core CPU itself (``--device cpu``; elsewhere it is left out). Validation: lips' ``extra`` split,
faces68's person-split val part; the LAST epoch is scored on validation and test, and nothing is
chosen on test. ``--configs`` picks candidates. Two steps:

    python bench/accuracy/equal_time.py --time --out bench/out/equal_time_cpu       # on the 2-core CPU: s/epoch
    python bench/accuracy/equal_time.py --costs bench/out/equal_time_cpu/costs.json --device cuda \\
        --parallel 8 --workers 1 --seeds 0 1 --out bench/out/equal_time    # the runs (any device)
    python bench/accuracy/equal_time.py --costs ... --default-length ...            # the same candidates at full length
    python bench/accuracy/equal_time.py --costs bench/out/equal_time_cpu/costs.json --configs time_budget \\
        --seeds 0 1 --out bench/out/equal_time_budget                      # train.time, on the 2-core CPU
    python bench/accuracy/equal_time.py --plot OUT/results.json ... --costs ... --curves bench/out/backbones/curves.csv
                                   # docs/figures/equal_time.png: validation error against CPU time
    python bench/accuracy/equal_time.py --quick                                     # tiny, CPU: tests the script

Writes ``OUT/costs.json`` (--time) or ``OUT/summary.md`` and ``OUT/results.json`` (the runs).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.harness import flags  # noqa: E402
from bench.harness.compare import LITE0_IMAGENET, experiment_file, launch_runs, prepare, run_flags, score  # noqa: E402
from bench.harness.datasets import EXPERIMENTS  # noqa: E402
from bench.harness.results import markdown_table, write_summary  # noqa: E402
from cnnkit.data.sizing import AUTO_AREA, size_for_aspect  # noqa: E402

EARLIER = {"lips": "lips_heatmap_default.yaml", "faces68": "faces68_heatmap_aug.yaml"}
#: half the default pixel budget (cnnkit.data.sizing.AUTO_AREA / 2) at each set's aspect ratio: 112x88, 96x96
HALF_AREA = {name: "{}x{}".format(*size_for_aspect(aspect, AUTO_AREA // 2))
             for name, aspect in (("lips", 4 / 3), ("faces68", 1.0))}
#: name -> (model, data, train) settings over the library defaults; "earlier" is the set's earlier file
CANDIDATES: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "earlier": ({}, {}, {}),
    "defaults": ({}, {}, {}),
    "b8": ({}, {}, {"batch_size": 8}),
    "lite0in": (LITE0_IMAGENET, {}, {}),
    "lite0in_b8": (LITE0_IMAGENET, {}, {"batch_size": 8}),
    "half_area": ({}, {"size": "half"}, {}),
    "half_area_b8": ({}, {"size": "half"}, {"batch_size": 8}),
    "half_area_lite0in": (LITE0_IMAGENET, {"size": "half"}, {}),
    "half_area_lite0in_b8": (LITE0_IMAGENET, {"size": "half"}, {"batch_size": 8}),
    "time_budget": ({}, {}, {}),  # the defaults with train.time = the budget (no epochs)
}
TIME_BUDGET = "time_budget"
DRY_RUN_TIME = "20s"


def earlier_settings(set_name: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any], int]:
    """(model, data, train, augment, epochs) of the set's earlier experiment file, data source excluded."""
    exp = yaml.safe_load((EXPERIMENTS / EARLIER[set_name]).read_text())
    train = {k: v for k, v in exp["train"].items() if k not in ("device", "epochs", "seed")}
    data = {k: v for k, v in exp["data"].items() if k in ("size", "flip_pairs")}
    return exp["model"], data, train, exp.get("augment", {}), int(exp["train"]["epochs"])


def experiment(set_name: str, name: str, epochs: int | None, seed: int, args: argparse.Namespace,
               time_s: float | None = None) -> Path:
    """Write ``OUT/<set>_<name>_s<seed>/experiment.yaml`` for ``epochs`` epochs (None: the library's length),
    or for ``time_s`` seconds of ``train.time`` (the ``time_budget`` candidate)."""
    augment = None
    if name == "earlier":
        model, data, train, augment, _ = earlier_settings(set_name)
    else:
        model, data, train = CANDIDATES[name]
        data = {k: HALF_AREA[set_name] if v == "half" else v for k, v in data.items()}
    train = dict(train)
    if time_s is not None:
        train["time"] = DRY_RUN_TIME if args.quick else f"{time_s:.0f}s"
    elif epochs is not None:
        train["epochs"] = epochs
    return experiment_file(args.out / f"{set_name}_{name}_s{seed}", set_name, seed, args, model=model, data=data,
                           train=train, augment=augment)


def measure_costs(args: argparse.Namespace) -> int:
    """s/epoch of every run on this machine (epoch 2 of 2-epoch runs, one at a time): OUT/costs.json."""
    path = args.out / "costs.json"  # kept: --configs adds to it (the earlier file's budget stays)
    costs: dict[str, dict[str, float]] = json.loads(path.read_text()) if path.exists() else {}
    runs = {experiment(s, c, 2, 0, args): (s, c) for s in args.sets for c in args.configs
            if not (c == "earlier" and c in costs.get(s, {})) and c != TIME_BUDGET}  # it measures itself

    def done(path: Path, code: int, wall_s: float) -> None:
        set_name, name = runs[path]
        metrics = path.parent / "run" / "metrics.csv"
        if code != 0 or not metrics.exists():
            print(f"FAILED {path.parent.name}: exit {code} (see its train.log)", file=sys.stderr, flush=True)
            return
        costs.setdefault(set_name, {})[name] = float(list(csv.DictReader(metrics.open()))[-1]["time_s"])
        (args.out / "costs.json").write_text(json.dumps(costs, indent=1))

    launch_runs(runs, 1, done)
    print(json.dumps(costs, indent=1))
    return 0 if all(c in costs.get(s, {}) for s in args.sets for c in args.configs if c != TIME_BUDGET) else 1


def budgets(costs: dict[str, dict[str, float]], set_name: str) -> tuple[float, dict[str, int]]:
    """(the earlier file's CPU seconds, {candidate: epochs within them})."""
    budget = costs[set_name]["earlier"] * earlier_settings(set_name)[4]
    return budget, {name: max(1, math.floor(budget / s)) for name, s in costs[set_name].items() if name != TIME_BUDGET}


def run_equal_time(args: argparse.Namespace) -> int:
    costs = json.loads(args.costs.read_text())
    runs: dict[Path, tuple[str, str, int]] = {}
    for seed in args.seeds:  # seed by seed: a run cut short by a time limit still has whole seeds
        for set_name in args.sets:
            budget, epochs = budgets(costs, set_name)
            for name in args.configs:
                if name == TIME_BUDGET:
                    if args.device == "cpu" and not args.default_length:
                        runs[experiment(set_name, name, None, seed, args, time_s=budget)] = (set_name, name, seed)
                    continue
                length = 2 if args.quick else None if args.default_length else epochs[name]
                runs[experiment(set_name, name, length, seed, args)] = (set_name, name, seed)
    results: dict[str, Any] = {}

    def done(path: Path, code: int, wall_s: float) -> None:
        set_name, name, seed = runs[path]
        try:
            r = score(path, args.device)
        except Exception as exc:  # one failed run must not lose the others' figures
            print(f"FAILED {path.parent.name}: exit {code}, {exc} (see its train.log)", file=sys.stderr, flush=True)
            return
        results[path.parent.name] = {"set": set_name, "candidate": name, "seed": seed, "wall_s": wall_s,
                                     "epochs": len(r["curve"]), "steps": r["curve"][-1]["step"],
                                     "val_px": r["val"]["error_px_mean"], "test_px": r["test"]["error_px_mean"],
                                     "test_median_px": r["test"]["error_px_median"]}
        (args.out / "results.json").write_text(json.dumps(results, indent=1))
        write_summary(args.out, summary_table(results, costs, args))

    launch_runs(runs, args.parallel, done)
    return 0 if len(results) == len(runs) else 1


def summary_table(results: dict[str, Any], costs: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    rows = []
    for set_name in args.sets:
        budget, _ = budgets(costs, set_name)
        for name in args.configs:
            mine = [r for r in results.values() if r["set"] == set_name and r["candidate"] == name]
            if not mine:
                continue
            mine.sort(key=lambda r: r["seed"])
            val = [r["val_px"] for r in mine]
            per_epoch = costs[set_name].get(name)
            rows.append([set_name, name, f"{budget:.0f}", "measured by the run" if per_epoch is None else f"{per_epoch:.2f}",
                         mine[0]["epochs"],
                         mine[0]["steps"], " / ".join(f"{v:.2f}" for v in val), f"{sum(val) / len(val):.2f}",
                         " / ".join(f"{r['test_px']:.2f}" for r in mine), " / ".join(f"{r['wall_s']:.0f}" for r in mine)])
    return markdown_table(["set", "candidate", "CPU budget s", "CPU s/epoch", "epochs", "steps",
                           "val px (seeds)", "val mean", "test px (seeds)", "wall s (seeds)"], rows)


def curve_rows(curves: Path, set_name: str, run: str) -> list[dict[str, str]]:
    """One run's rows of a curves.csv (its ``run`` column; ``backbone`` in files written before 0.3)."""
    return [r for r in csv.DictReader(curves.open()) if r["set"] == set_name and r.get("run", r.get("backbone")) == run]


def plot(result_files: list[Path], costs: dict[str, dict[str, float]], curves: Path | None, path: Path) -> None:
    """Validation error against CPU minutes, one panel per set: the 2,000-step runs of
    bench/accuracy/backbones.py epoch by epoch (``curves``), each candidate's runs (mean of seeds) and
    the earlier file's time budget. CPU time = epochs x the candidate's CPU s/epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs: dict[tuple[str, str, int], list[float]] = {}
    for file in result_files:
        for r in json.loads(file.read_text()).values():
            runs.setdefault((r["set"], r["candidate"], r["epochs"]), []).append(r["val_px"])
    budget_min = {s: budgets(costs, s)[0] / 60 for s in EARLIER if s in costs}
    sets = [s for s in EARLIER if any(k[0] == s for k in runs)]
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4.5), squeeze=False)
    for ax, set_name in zip(axes[0], sets, strict=True):
        if curves is not None:
            for backbone, cost in (("resnet18", "defaults"), ("lite0_pretrained", "lite0in")):
                rows = curve_rows(curves, set_name, backbone)
                ax.plot([int(r["epoch"]) * costs[set_name][cost] / 60 for r in rows], [float(r["val_px"]) for r in rows],
                        lw=0.8, alpha=0.6, label=f"{cost}: inside its 2,000-step run")
        for name in CANDIDATES:
            pts = sorted((budget_min[set_name] if name == TIME_BUDGET else e * costs[set_name][name] / 60, sum(v) / len(v))
                         for (s, c, e), v in runs.items() if s == set_name and c == name)
            if pts:
                earlier = name == "earlier"
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, marker="*" if earlier else "o", ms=14 if earlier else 5, ls="--", zorder=5 if earlier else 3,
                        color="black" if earlier else None, label=f"earlier file ({EARLIER[set_name]})" if earlier else name)
        ax.axvline(budgets(costs, set_name)[0] / 60, color="grey", lw=0.8)
        finals = [sum(v) / len(v) for (s, _, _), v in runs.items() if s == set_name]
        ax.set_ylim(min(finals) * 0.85, max(finals) * 1.6)  # the runs' range, not the curves' first epochs
        ax.set(title=f"{set_name}: validation error (last epoch, mean of seeds)", xlabel="CPU minutes (2 cores)",
               ylabel="mean error (px)", yscale="log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = flags.parser(__doc__, sets={"default": list(EARLIER), "choices": list(EARLIER)},
                     configs={"default": list(CANDIDATES), "choices": list(CANDIDATES), "help": "only these candidates"},
                     **{**run_flags("equal_time"), "epochs": False,
                        "quick": {"help": "tiny, on the CPU: --time then the runs (tests the script)"}})
    p.add_argument("--time", action="store_true", help="measure s/epoch of each run here (on the 2-core CPU)")
    p.add_argument("--costs", type=Path, help="costs.json of a --time run: the runs get the earlier file's time")
    p.add_argument("--default-length", action="store_true",
                   help="the runs get the library's default length instead of the earlier file's time")
    p.add_argument("--plot", nargs="+", type=Path, help="results.json files of runs: draw OUT/equal_time.png")
    p.add_argument("--curves", type=Path, help="with --plot: curves.csv of bench/accuracy/backbones.py")
    args = p.parse_args(argv)
    if args.plot:
        if args.costs is None:
            p.error("--plot needs --costs")
        plot(args.plot, json.loads(args.costs.read_text()), args.curves, args.out / "equal_time.png")
        return 0
    args = prepare(args)
    if args.default_length:
        args.configs = [c for c in args.configs if c != "earlier"]  # its length is its own
    elif "earlier" not in args.configs and args.configs != [TIME_BUDGET]:
        args.configs.insert(0, "earlier")  # it sets the budget (time_budget alone reads it from --costs)
    if args.quick:
        if measure_costs(args):
            return 1
        args.costs = args.out / "costs.json"
        return run_equal_time(args)
    if args.time:
        return measure_costs(args)
    if args.costs is None:
        p.error("give --time (measure here) or --costs FILE (from a --time run)")
    return run_equal_time(args)


if __name__ == "__main__":
    raise SystemExit(main())
