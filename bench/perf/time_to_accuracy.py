"""Validation error against CPU wall time: v0.2's data-only default, today's, and candidates, side by side.

    python bench/perf/time_to_accuracy.py --seeds 0 1 --write          # lips, faces68, small; every default config
    python bench/perf/time_to_accuracy.py --sets lips --configs v02 default --seeds 0 1 --steps 1000
    python bench/perf/time_to_accuracy.py --analyse bench/out/time_to_accuracy/results.json   # tables again
    python bench/perf/time_to_accuracy.py --quick                       # tiny: tests the script

Each run is an experiment file with only the set's ``data`` section and the candidate's settings
(bench/harness/candidates.py: bf16 + channels-last, the decoded cache, a foreach Adam, ImageNet
Lite0 weights, ...), trained by ``cnnkit train`` in its own process through
``bench/harness/train_child.py``, which first measures the run's speed as ``train.time`` does and
writes the duration it predicts. ``--parallel`` runs at a time (1: the times are the point);
``--threads`` torch threads each (default 2, a laptop's; the issue's figure).

The curve of a run is its validation error after each epoch against the wall seconds from the end of
the speed probe: the start-up (tables, model, the decoded cache when there is one) plus the epochs'
``time_s`` (training and validation). The table gives, per set and candidate (seeds averaged), the
validation and test error at full length and the time to reach v0.2's default's final validation error
(``v02``: fp32 and the default layout, pinned; the mean over its seeds; the time is the mean over the
seeds that reach it, their count beside it); the speed-up is v02's full time over that.

Outputs in OUT: ``results.json`` (every run, rewritten as each ends), ``summary.md`` (the table, the
estimates of item 5, the length rule of item 4 evaluated on these curves), ``curves.csv``,
``curves.png``. With ``--write`` the summary also replaces the ``time_to_accuracy`` section of
docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.harness import OUT, ROOT, flags  # noqa: E402
from bench.harness.candidates import BASELINE, CANDIDATES, set_root  # noqa: E402
from bench.harness.compare import experiment_file, length, score  # noqa: E402
from bench.harness.machine import machine_line  # noqa: E402
from bench.harness.results import markdown_table, write_section  # noqa: E402
from bench.harness.run_length import estimate_table, rule_table, time_to  # noqa: E402
from bench.harness.runs import Job, launch  # noqa: E402

SETS = ("lips", "faces68", "small")
CONFIGS = [BASELINE, "default", "default_cache", "default_lite0in"]
CHILD = ROOT / "bench" / "harness" / "train_child.py"


def experiment(set_name: str, config: str, seed: int, args: argparse.Namespace) -> Path:
    """OUT/<set>_<config>_s<seed>/experiment.yaml: the set's data, the candidate's settings, the length."""
    folder = args.out / f"{set_name}_{config}_s{seed}"
    sections = CANDIDATES[config].sections(folder)
    train = {**sections["train"], **length(args), **({"steps": args.steps} if args.steps and not args.quick else {})}
    return experiment_file(folder, set_name, seed, args, model=sections["model"], data=sections["data"],
                           train=train, data_root=set_root(set_name, args))


def job(path: Path, config: str, threads: int) -> Job:
    """The child that probes the run's speed, then trains it (with the candidate's optimizer implementation)."""
    optimizer = CANDIDATES[config].optimizer
    argv = [sys.executable, str(CHILD), "--estimate", *(["--optimizer", optimizer] if optimizer else []), str(path)]
    return Job(argv, path.parent / "train.log", {"OMP_NUM_THREADS": str(threads)})


def record(path: Path, set_name: str, config: str, seed: int) -> dict[str, Any]:
    """One finished run: its scores (last epoch on val and test) and its curve against wall seconds."""
    scored = score(path, "cpu")
    folder = path.parent
    estimate = json.loads((folder / "estimate.json").read_text())
    start = estimate.get("probed", estimate["started"])
    setup_s = (folder / "run" / "settings.json").stat().st_mtime - start  # tables, model, cache: before epoch 1
    t, curve = setup_s, []
    for c in scored["curve"]:
        t += c["time_s"]
        curve.append({**c, "t_s": t})
    steps = curve[-1]["step"] // max(1, len(curve))
    return {"set": set_name, "candidate": config, "seed": seed, "val_px": scored["val"]["error_px_mean"],
            "test_px": scored["test"]["error_px_mean"], "setup_s": setup_s, "curve": curve, "steps_per_epoch": steps,
            "estimate": estimate, "wall_s": estimate.get("ended", start) - estimate["started"], "load": estimate["load"]}


def train_all(args: argparse.Namespace) -> int:
    """Launch every (seed, set, config) run, ``args.parallel`` at a time; record each as it ends."""
    results_path = args.out / "results.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.exists() else {}
    runs: dict[Path, tuple[str, str, int]] = {}
    for seed in args.seeds:  # seed by seed: a launch cut short still has whole seeds
        for set_name in args.sets:
            for config in args.configs:
                runs[experiment(set_name, config, seed, args)] = (set_name, config, seed)
    jobs = {job(p, key[1], args.threads): p for p, key in runs.items()}
    failed = []

    def done(j: Job, code: int, wall_s: float) -> None:
        path = jobs[j]
        try:
            results[path.parent.name] = record(path, *runs[path])
            results_path.write_text(json.dumps(results, indent=1))
            write_outputs(results, args)
        except Exception as exc:  # one failed run must not lose the others' figures
            failed.append(path.parent.name)
            print(f"FAILED {path.parent.name}: exit {code}, {exc} (see its train.log)", file=sys.stderr, flush=True)

    launch(list(jobs), args.parallel, done)
    return 1 if failed else 0


def targets(results: Mapping[str, Any]) -> dict[str, float]:
    """Per set: v0.2's default's final validation error, the mean over its seeds."""
    by_set: dict[str, list[float]] = {}
    for r in results.values():
        if r["candidate"] == BASELINE:
            by_set.setdefault(r["set"], []).append(r["curve"][-1]["val_px"])
    return {s: statistics.fmean(v) for s, v in by_set.items()}


def summary_table(results: Mapping[str, Any]) -> str:
    goal = targets(results)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results.values():
        groups.setdefault((r["set"], r["candidate"]), []).append(r)
    base_time = {s: statistics.fmean(r["curve"][-1]["t_s"] for r in rs) for (s, c), rs in groups.items()
                 if c == BASELINE}
    rows = []
    for (set_name, config), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], CONFIGS.index(kv[0][1])
                                                                         if kv[0][1] in CONFIGS else 99)):
        rs.sort(key=lambda r: r["seed"])
        reach = [time_to(r["curve"], goal[set_name]) if set_name in goal else None for r in rs]
        got = [x for x in reach if x is not None]  # the seeds that reached the target; the mean is over them
        mean_reach = statistics.fmean(got) if got else None
        speedup = "-" if mean_reach is None or set_name not in base_time else f"{base_time[set_name] / mean_reach:.2f}"
        rows.append([set_name, config, len(rs), rs[0]["curve"][-1]["step"],
                     " / ".join(f"{r['curve'][-1]['val_px']:.2f}" for r in rs),
                     f"{statistics.fmean(r['curve'][-1]['val_px'] for r in rs):.2f}",
                     f"{statistics.fmean(r['test_px'] for r in rs):.2f}",
                     f"{statistics.fmean(r['curve'][-1]['t_s'] for r in rs):.0f}",
                     f"{statistics.fmean(r['setup_s'] for r in rs):.0f}",
                     "not reached" if mean_reach is None else f"{mean_reach:.0f} ({len(got)}/{len(rs)})", speedup,
                     f"{statistics.fmean(r['load'] for r in rs):.1f}"])
    return markdown_table(["set", "candidate", "seeds", "steps", "val px at full length (seeds)", "val mean",
                           "test px mean", "wall s (start-up + epochs)", "start-up s",
                           "s to v02's final val px", "speed-up (v02 s / that)", "load"], rows)


def write_outputs(results: Mapping[str, Any], args: argparse.Namespace) -> str:
    """summary.md, curves.csv and curves.png in OUT; the summary's text."""
    goal = ", ".join(f"{s} {v:.2f} px" for s, v in targets(results).items())
    text = (f"Command: `{flags.command_line(__file__)}`. {args.threads} torch threads per run, {args.parallel} run(s) "
            f"at a time; load average (`uptime`) at each launch in the last column. Target (v02's final "
            f"validation error, mean of its seeds): {goal or 'no v02 run yet'}. {machine_line()}\n\n"
            f"{summary_table(results)}\n\n"
            "**Item 5, the duration a run announces** (seconds of the epochs; error against the real figure):\n\n"
            f"{estimate_table(results)}\n\n"
            "**Item 4, the length rule `stop_epoch` (at least 500 steps; stop when the last quarter of the epochs "
            "brought under 2 %) evaluated on these curves:**\n\n"
            f"{rule_table(results)}\n")
    (args.out / "summary.md").write_text(text)
    with (args.out / "curves.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["set", "candidate", "seed", "epoch", "step", "val_px", "time_s", "t_s"])
        for r in results.values():
            for c in r["curve"]:
                writer.writerow([r["set"], r["candidate"], r["seed"], c["epoch"], c["step"], f"{c['val_px']:.4f}",
                                 f"{c['time_s']:.3f}", f"{c['t_s']:.2f}"])
    draw(results, args.out / "curves.png")
    return text


def draw(results: Mapping[str, Any], path: Path) -> None:
    """Validation error against wall minutes, one panel per set, a colour per candidate, a style per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = sorted({r["set"] for r in results.values()})
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4.5), squeeze=False)
    colours = {c: f"C{i}" for i, c in enumerate(CANDIDATES)}
    goal = targets(results)
    for ax, set_name in zip(axes[0], sets, strict=True):
        for r in sorted(results.values(), key=lambda r: (r["candidate"], r["seed"])):
            if r["set"] == set_name:
                ax.plot([c["t_s"] / 60 for c in r["curve"]], [c["val_px"] for c in r["curve"]],
                        color=colours.get(r["candidate"], "k"), ls=("-", "--", ":")[r["seed"] % 3], lw=1,
                        label=f"{r['candidate']} s{r['seed']}")
        if set_name in goal:
            ax.axhline(goal[set_name], color="grey", lw=0.8)
        ax.set(title=f"{set_name}: validation error against wall time", xlabel="wall minutes (CPU)",
               ylabel="mean error (px)", yscale="log")
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = flags.parser(__doc__, quick={"help": "tiny, 2 epochs (tests the script)"}, write=True,
                     out={"default": OUT / "time_to_accuracy"}, data_root=True,
                     sets={"default": list(SETS), "choices": list(SETS)},
                     configs={"default": CONFIGS, "choices": list(CANDIDATES)}, seeds={"default": [0, 1]},
                     parallel=True, workers=True, threads={"default": 2, "help": "torch threads per run (default 2)"})
    p.add_argument("--steps", type=int, help="train.steps of every run (default: the library's length)")
    p.add_argument("--analyse", type=Path, help="a results.json: write the tables and curves again, train nothing")
    args = p.parse_args(argv)
    args.device, args.epochs = "cpu", None
    if args.analyse:
        args.out = args.analyse.parent
        print(write_outputs(json.loads(args.analyse.read_text()), args))
        return 0
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    code = train_all(args)
    results = json.loads((args.out / "results.json").read_text()) if (args.out / "results.json").exists() else {}
    text = write_outputs(results, args) if results else ""
    print(text, f"\n{math.ceil((time.time() - started) / 60)} min in all")
    if flags.should_write(args) and results:
        write_section("time_to_accuracy", "## Time to accuracy on the CPU (issue 27)\n\n" + text)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
