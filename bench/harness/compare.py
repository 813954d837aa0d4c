"""Training runs side by side: experiment files, the launch, the score, and the outputs.

A run is ``OUT/<name>/experiment.yaml`` (a set's data section plus the settings under comparison,
everything else the library's default) trained by ``cnnkit train`` into ``OUT/<name>/run``. As
each ends it is scored: the LAST epoch's checkpoint on validation and test (nothing is chosen on
test) and its validation curve. The outputs, rewritten after every run: ``OUT/summary.md`` (the
table), ``OUT/curves.csv`` (set, run, epoch, step, val error, seconds) and ``OUT/curves.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from bench.harness import OUT
from bench.harness.datasets import data_section
from bench.harness.results import markdown_table, write_summary
from bench.harness.runs import launch, train_job

QUICK_SIZE = "64x48"
#: the model section of EfficientNet-Lite0 from its ImageNet weights (backbones, equal_time)
LITE0_IMAGENET = {"spec": "efficientnet_lite0", "pretrained": "efficientnet_lite0"}


def run_flags(name: str) -> dict[str, Any]:
    """The shared flags of a side-by-side script, for ``flags.parser(__doc__, **run_flags(name))``."""
    return {"device": True, "data_root": True, "out": {"default": OUT / name, "help": f"default bench/out/{name}"},
            "workers": True, "parallel": True, "seeds": True,
            "epochs": {"help": "override the default length (to time epochs)"},
            "quick": {"help": "tiny, 2 epochs, on the CPU (tests the script)"}}


def prepare(args: argparse.Namespace) -> argparse.Namespace:
    """Absolute ``out`` (made) and ``data_root``; ``--quick`` runs on the CPU."""
    if args.quick:
        args.device = "cpu"
    args.out, args.data_root = args.out.resolve(), args.data_root.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def length(args: argparse.Namespace) -> dict[str, Any]:
    """The ``train`` settings for the run's length: 2 epochs with ``--quick``, ``--epochs`` if given, else
    none (the library's default length)."""
    epochs = 2 if args.quick else args.epochs
    return {"epochs": epochs} if epochs else {}


def experiment_file(folder: Path, set_name: str, seed: int, args: argparse.Namespace, *,
                    model: Mapping[str, Any] | None = None, data: Mapping[str, Any] | None = None,
                    train: Mapping[str, Any] | None = None, augment: Mapping[str, Any] | None = None,
                    data_root: Path | None = None) -> Path:
    """Write ``folder/experiment.yaml``: the set's data section under ``data_root`` (default ``args.data_root``)
    + ``data`` and ``args.workers`` loader workers, ``model`` and ``augment`` when given, ``train`` +
    ``args.device`` and ``seed``; output ``folder/run``. ``args.quick``: batch 4, and 64x48 inputs
    where the run does not crop."""
    folder.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {}
    if model:
        settings["model"] = dict(model)
    settings["data"] = {**data_section(set_name, data_root or args.data_root, args.out), "workers": args.workers,
                        **(data or {})}
    if augment is not None:
        settings["augment"] = dict(augment)
    settings["train"] = {**(train or {}), "device": args.device, "seed": seed, "checkpoint_every": "5min"}
    if args.quick:
        settings["train"]["batch_size"] = 4
        if not settings["data"].get("crop"):
            settings["data"]["size"] = QUICK_SIZE
    settings["output"] = str(folder / "run")
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def score(path: Path, device: str) -> dict[str, Any]:
    """Last-epoch figures on val and test, and the validation curve, of one finished run."""
    from cnnkit.experiment import load_experiment
    from cnnkit.infer.evaluate import evaluate

    exp = load_experiment(path)
    tables = exp.tables()
    run = exp.output
    result: dict[str, Any] = {"train_images": len(tables["train"])}
    for part in ("val", "test"):
        metrics = evaluate(run / "last.safetensors", tables[part], device=device).metrics
        result[part] = {k: metrics[k] for k in ("error_px_mean", "error_px_median", "baseline_px_mean")}
    batch = json.loads((run / "settings.json").read_text())["train"]["batch_size"]
    steps_per_epoch = math.ceil(len(tables["train"]) / batch)
    result["curve"] = [
        {"epoch": int(r["epoch"]), "step": int(r["epoch"]) * steps_per_epoch,
         "val_px": float(r["val_error_px_mean"]), "time_s": float(r["time_s"])}
        for r in csv.DictReader((run / "metrics.csv").open())
    ]
    return result


def launch_runs(paths: Iterable[Path], parallel: int, on_done: Callable[[Path, int, float], None]) -> None:
    """``cnnkit train`` on each experiment file, ``parallel`` at a time (output in ``train.log`` beside it);
    ``on_done(file, exit code, wall s)`` as each ends."""
    jobs = {train_job(path): path for path in paths}
    launch(list(jobs), parallel, lambda job, code, wall_s: on_done(jobs[job], code, wall_s))


def train_and_score(runs: Mapping[Path, tuple[str, str]], args: argparse.Namespace) -> int:
    """Train every experiment file (``args.parallel`` at a time), scoring each as it ends; the
    outputs are rewritten after each. ``runs``: experiment file -> (set, run name)."""
    results: dict[tuple[str, str], dict[str, Any]] = {}
    took: dict[tuple[str, str], float] = {}
    failed: list[str] = []

    def done(path: Path, code: int, wall_s: float) -> None:
        key = runs[path]
        try:
            results[key] = score(path, args.device)
            took[key] = wall_s
            write_outputs(results, took, args.out)
        except Exception as exc:  # one failed run must not lose the others' figures
            failed.append(f"{'_'.join(key)}: exit {code}, {exc}")
            print(f"FAILED {failed[-1]} (see {path.parent / 'train.log'})", file=sys.stderr, flush=True)

    launch_runs(runs, args.parallel, done)
    if results:
        print((args.out / "summary.md").read_text())
    return 1 if failed else 0


def write_outputs(results: Mapping[tuple[str, str], dict[str, Any]], took: Mapping[tuple[str, str], float],
                  out: Path) -> None:
    """``out/summary.md``, ``out/curves.csv`` and ``out/curves.png`` of the runs scored so far."""
    rows = []
    for (set_name, config), r in results.items():
        curve = r["curve"]
        rows.append([set_name, config, r["train_images"], len(curve), curve[-1]["step"],
                     f"{r['val']['error_px_mean']:.2f}", f"{r['test']['error_px_mean']:.2f}",
                     f"{r['test']['error_px_median']:.2f}", f"{r['test']['baseline_px_mean']:.2f}",
                     f"{sum(c['time_s'] for c in curve) / len(curve):.2f}", f"{took[(set_name, config)]:.0f}"])
    write_summary(out, markdown_table(["set", "run", "train images", "epochs", "steps", "val px (last)",
                                       "test px (last)", "test median px", "test baseline px", "s/epoch", "wall s"],
                                      rows))
    with (out / "curves.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["set", "run", "epoch", "step", "val_px", "time_s"])
        for (set_name, config), r in results.items():
            for c in r["curve"]:
                writer.writerow([set_name, config, c["epoch"], c["step"], f"{c['val_px']:.4f}", f"{c['time_s']:.3f}"])
    draw(results, out / "curves.png")


def draw(results: Mapping[tuple[str, str], dict[str, Any]], path: Path) -> None:
    """Validation error against optimizer steps, one panel per set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = sorted({s for s, _ in results})
    fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 4), squeeze=False)
    for ax, set_name in zip(axes[0], sets, strict=True):
        for (s, config), r in results.items():
            if s == set_name:
                ax.plot([c["step"] for c in r["curve"]], [c["val_px"] for c in r["curve"]], label=config)
        ax.set(title=f"{set_name}: validation error", xlabel="optimizer steps", ylabel="mean error (px)", yscale="log")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run_name(config: str, seed: int, seeds: list[int]) -> str:
    """A run's name in the outputs: the configuration, with ``_s<seed>`` when a call trains several seeds."""
    return config if len(seeds) == 1 else f"{config}_s{seed}"
