"""Backbones side by side with the library defaults: ResNet-18 from scratch, EfficientNet-Lite0
from scratch and Lite0 from its ImageNet weights, on lips-via and faces68 (split by person).

Each run is an experiment file holding only the data, the backbone and the device: size, head,
loss, augmentation, schedule and training length are the library's defaults. Runs are launched
as `cnnkit train` processes (``--parallel`` at a time, which suits one big GPU), then scored:

* validation curve: ``val_error_px_mean`` of every epoch (lips: its ``extra`` split as
  validation; faces68: the person-split val part), against optimizer steps;
* the LAST epoch's checkpoint on validation and on test (nothing is chosen on test).

    python bench/backbones.py --device cuda --out bench/out/backbones            # all sets, all backbones
    python bench/backbones.py --sets lips --configs resnet18 --device cpu          # one run here
    python bench/backbones.py --epochs 3 --out bench/out/backbones_cpu                  # s/epoch on this CPU
    python bench/backbones.py --dry-run                                            # 2 epochs, tiny, CPU (a test)

Writes ``OUT/summary.md`` (the table), ``OUT/curves.csv`` (set, backbone, epoch, step, val error,
seconds) and ``OUT/curves.png``; docs/ACCURACY.md quotes them with the card's name.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, markdown_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LITE0_IMAGENET = {"spec": "efficientnet_lite0", "pretrained": "efficientnet_lite0"}
#: name -> (model section, train settings beyond the defaults)
CONFIGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "resnet18": ({"spec": "resnet18"}, {}),
    "lite0": ({"spec": "efficientnet_lite0"}, {}),
    "lite0_pretrained": (LITE0_IMAGENET, {}),
    "lite0_pretrained_blr": (LITE0_IMAGENET, {"backbone_lr": 1.0e-4}),  # lr/10, as classes get by default
}


def data_section(name: str, root: Path, out: Path) -> dict[str, Any]:
    """The ``data`` section of one set, with absolute paths (and lips' extra split as val)."""
    if name in ("lips", "lips50"):
        split_file = out / f"{name}_splits.csv"
        rows = list(csv.DictReader((root / "lips-via" / "splits.csv").open()))
        keep = _small_parts(rows) if name == "lips50" else None
        with split_file.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            for i, row in enumerate(rows):  # extra: in neither train nor test, used to compare settings
                part = "val" if row["split"] == "extra" else row["split"]
                writer.writerow({**row, "split": part if keep is None or i in keep or part == "test" else "unused"})
        return {"source": str(root / "lips-via" / "via_project.json"), "flip_pairs": "auto",
                "split": {"file": str(split_file), "on": "filename", "column": "split"}}
    if name == "small":  # cnnkit demo --small-subject: 1280x960 frames, a face of 60-200 px
        return {"source": str(root / "small" / "demo_via.json"), "flip_pairs": "auto",
                "split": {"fractions": [0.7, 0.15, 0.15], "seed": 0}}
    if name == "faces68":
        return {"source": str(root / "faces68-csv" / "CSVs" / "faces68.csv"),
                "split": {"fractions": [0.7, 0.15, 0.15], "seed": 0, "group": "person"}}
    raise SystemExit(f"unknown set {name!r}: lips, lips50, faces68 or small")


def _small_parts(rows: list[dict[str, str]], train: int = 50, val: int = 40) -> set[int]:
    """lips50: 50 training images and 40 of ``extra`` as validation, drawn with seed 0 (a small set)."""
    import random

    rng = random.Random(0)
    parts = {p: [i for i, r in enumerate(rows) if r["split"] == p] for p in ("train", "extra")}
    return set(rng.sample(parts["train"], train)) | set(rng.sample(parts["extra"], val))


def experiment(set_name: str, config: str, args: argparse.Namespace, *, model: dict[str, Any] | None = None,
               data: dict[str, Any] | None = None) -> Path:
    """Write ``OUT/<set>_<config>/experiment.yaml``: the set's data (+ ``data``), the backbone (``model``,
    else ``CONFIGS[config]``), the device and seed; everything else is the library's default."""
    folder = args.out / f"{set_name}_{config}"
    folder.mkdir(parents=True, exist_ok=True)
    train: dict[str, Any] = {"device": args.device, "seed": args.seed, "checkpoint_every": "5min",
                             **(CONFIGS[config][1] if model is None else {})}
    if args.dry_run:
        train.update(epochs=2, batch_size=4)
    elif args.epochs:
        train["epochs"] = args.epochs
    settings: dict[str, Any] = {
        "model": dict(CONFIGS[config][0] if model is None else model),
        "data": {**data_section(set_name, args.data_root, args.out), "workers": args.workers, **(data or {})},
        "train": train,
        "output": str(folder / "run"),
    }
    if args.dry_run and "crop" not in settings["data"]:
        settings["data"]["size"] = "64x48"
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def launch(paths: list[Path], parallel: int, on_done: Callable[[Path, float], None]) -> None:
    """Run ``cnnkit train`` on each file, ``parallel`` at a time; ``on_done(path, wall_s)`` as each ends
    (so a run killed by an outer time limit loses only the runs still going)."""
    pending, running = list(paths), {}
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    while pending or running:
        while pending and len(running) < parallel:
            path = pending.pop(0)
            log = (path.parent / "train.log").open("w")
            proc = subprocess.Popen([sys.executable, "-m", "cnnkit", "train", str(path)], stdout=log,
                                    stderr=subprocess.STDOUT, env=env)
            running[path] = (proc, time.perf_counter())
        for path, (proc, t0) in list(running.items()):
            if proc.poll() is not None:
                del running[path]
                took = time.perf_counter() - t0
                print(f"{path.parent.name}: exit {proc.returncode} after {took:.0f} s", flush=True)
                on_done(path, took)
        time.sleep(1.0)


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


def write_outputs(results: dict[tuple[str, str], dict[str, Any]], took: dict[str, float], args: argparse.Namespace) -> None:
    rows = []
    for (set_name, config), r in results.items():
        curve = r["curve"]
        rows.append([set_name, config, r["train_images"], len(curve), curve[-1]["step"],
                     f"{r['val']['error_px_mean']:.2f}", f"{r['test']['error_px_mean']:.2f}",
                     f"{r['test']['error_px_median']:.2f}", f"{r['test']['baseline_px_mean']:.2f}",
                     f"{sum(c['time_s'] for c in curve) / len(curve):.2f}", f"{took[f'{set_name}_{config}']:.0f}"])
    table = markdown_table(["set", "run", "train images", "epochs", "steps", "val px (last)", "test px (last)",
                            "test median px", "test baseline px", "s/epoch", "wall s"], rows)
    text = f"{table}\n\n{machine_line()}\n\n`{' '.join([Path(sys.executable).name, *sys.argv])}`\n"
    (args.out / "summary.md").write_text(text)
    with (args.out / "curves.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["set", "run", "epoch", "step", "val_px", "time_s"])
        for (set_name, config), r in results.items():
            for c in r["curve"]:
                writer.writerow([set_name, config, c["epoch"], c["step"], f"{c['val_px']:.4f}", f"{c['time_s']:.3f}"])
    draw(results, args.out / "curves.png")


def draw(results: dict[tuple[str, str], dict[str, Any]], path: Path) -> None:
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


def run_arguments(p: argparse.ArgumentParser, name: str) -> None:
    """The options every side-by-side script takes (this one and bench/resolution.py)."""
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data",
                   help="holds lips-via/ and faces68-csv/")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / name)
    p.add_argument("--workers", type=int, default=0, help="loader workers per run")
    p.add_argument("--parallel", type=int, default=1, help="runs at a time")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="override the default length (to time epochs)")
    p.add_argument("--dry-run", action="store_true", help="2 epochs, tiny, on the CPU (tests the script)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", nargs="+", default=["lips", "faces68"])
    p.add_argument("--configs", nargs="+", default=["resnet18", "lite0", "lite0_pretrained"], choices=list(CONFIGS))
    run_arguments(p, "backbones")
    args = p.parse_args(argv)
    if args.dry_run:
        args.device = "cpu"
    args.out, args.data_root = args.out.resolve(), args.data_root.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    runs = {experiment(s, c, args): (s, c) for s in args.sets for c in args.configs}
    return run_all(runs, args)


def run_all(runs: dict[Path, tuple[str, str]], args: argparse.Namespace) -> int:
    """Train every experiment file, scoring each as it ends; the outputs are rewritten after each."""
    results: dict[tuple[str, str], dict[str, Any]] = {}
    took: dict[str, float] = {}
    failed: list[str] = []

    def done(path: Path, wall_s: float) -> None:
        set_name, config = runs[path]
        try:
            results[(set_name, config)] = score(path, args.device)
            took[f"{set_name}_{config}"] = wall_s
            write_outputs(results, took, args)
        except Exception as exc:  # one failed run must not lose the others' figures
            failed.append(f"{set_name}_{config}: {exc}")
            print(f"FAILED {failed[-1]} (see its train.log)", file=sys.stderr, flush=True)

    launch(list(runs), args.parallel, done)
    if results:
        print((args.out / "summary.md").read_text())
    return 1 if failed else 0

if __name__ == "__main__":
    raise SystemExit(main())
