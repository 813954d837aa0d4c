"""Smoothing on real video: error on the lips videos' labelled frames and jitter between them (issue 28).

``lips-video`` holds the two recordings behind lips-via's ``002_cal`` and ``008_xaud_TESTSET``
folders, frame for frame (their 7 labelled frames each are in splits.csv's ``train`` and ``extra``): lips-via's ``imgNNN.png`` is video frame
NNN, so its labelled points are ground truth inside a real video. This script

1. trains ``--members`` models on lips-via's training split (the data-only default: ResNet-18, its
   input size, its augmentation; ``extra`` as validation; seeds 0, 1, ...), ``--steps`` optimizer
   steps each, or reuses ``--models``;
2. predicts both videos with each model (``cnnkit.predict``, defaults);
3. scores, on the labelled frames: one model raw, its median (5) and Savitzky-Golay (11) filters
   (``cnnkit smooth``'s single-model defaults), the ensemble median raw, and the ensemble Kalman
   smoother over the members; and on every frame, the jitter: the median distance a point moves
   from one frame to the next (the videos are ~120 frames/s: true motion between frames is small).

``008_xaud`` is the figure: its labelled frames were never trained on (they are in ``extra``, the
validation split, which chose each member's best epoch over 108 images); ``002_cal``'s were training
images, so its error flatters every method alike and is shown for the jitter.

    .venv/bin/python bench/accuracy/smoothing_lips.py --write     # docs/video.md, section smoothing_lips
    .venv/bin/python bench/accuracy/smoothing_lips.py --quick     # tiny models, 2 members (a test)
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.harness import OUT, ROOT, flags  # noqa: E402
from bench.harness.machine import load_average, machine_line  # noqa: E402
from bench.harness.results import markdown_table, write_section  # noqa: E402

VIDEOS = {"008_xaud": "008_xaud_TESTSET", "002_cal": "002_cal"}  # video stem -> lips-via image folder
HEADERS = ("video", "method", "mean error px", "median px", "max px", "points", "jitter px/frame (median)",
           "jitter p95")
FRAME = re.compile(r"img(\d+)\.png$")
METHODS = ("one model, raw", "one model, median 5", "one model, savgol 11", "ensemble median, raw", "ensemble, EKS")


def lips_tables(root: Path) -> dict[str, Any]:
    """lips-via's train, extra (validation) and labelled-video-frame rows."""
    import cnnkit

    table = cnnkit.read_annotations(root / "lips-via" / "via_project.json")
    splits = pd.read_csv(root / "lips-via" / "splits.csv")
    split = dict(zip(splits["filename"], splits["split"], strict=True))
    names = table.df["image"].map(lambda p: "images/" + "/".join(Path(str(p)).parts[-2:]))
    part = names.map(split)
    return {"train": table.with_df(table.df[part == "train"]), "val": table.with_df(table.df[part == "extra"]),
            "all": table, "names": names}


def train_members(tables: dict[str, Any], args: Any) -> list[Path]:
    import cnnkit

    paths = []
    for seed in range(args.members):
        out = args.out / f"member-{seed}"
        options: dict[str, Any] = {"seed": seed, "steps": args.steps, "quiet": True, "plots": False, "device": "cpu"}
        if args.quick:
            options |= {"size": (64, 48), "batch_size": 4, "workers": 0}
        if (out / "last.safetensors").is_file() and not args.retrain:  # written when a run ends: a finished member
            paths.append(out / "best.safetensors")
            continue
        start = time.monotonic()
        run = cnnkit.fit("resnet18", tables["train"], tables["val"], out_dir=out, overwrite=True, **options)
        print(f"member {seed}: {time.monotonic() - start:.0f} s, val {run.metrics.get('val_error_px_mean', float('nan')):.2f} px")
        paths.append(run.best)
    return paths


def truth_of(tables: dict[str, Any], video: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(frame numbers, (F, K, 2) true points, landmark names) of the video's labelled frames."""
    table, names = tables["all"], tables["names"]
    rows = np.flatnonzero(names.str.startswith(f"images/{VIDEOS[video]}/").to_numpy())
    frames = np.array([int(FRAME.search(names.iloc[r]).group(1)) for r in rows])  # type: ignore[union-attr]
    return frames, table.points()[rows], list(table.landmarks)


def points_of(frame: pd.DataFrame, names: list[str], x: str = "{}_x", y: str = "{}_y") -> np.ndarray:
    """(T, K, 2) from a prediction or smoothed table, indexed by its ``frame`` column."""
    frame = frame.set_index("frame").sort_index()
    return np.stack([frame[[x.format(n) for n in names]].to_numpy(float),
                     frame[[y.format(n) for n in names]].to_numpy(float)], axis=-1)


def trajectories(models: list[Path], video: Path, args: Any) -> dict[str, pd.DataFrame]:
    """Each method's table for ``video`` (the members' raw predictions are written beside it)."""
    import cnnkit

    raw = []
    for i, model in enumerate(models):
        csv = args.out / f"{video.stem}_m{i}.csv"
        if not csv.is_file() or args.retrain:
            cnnkit.predict(model, video, device="cpu").to_csv(csv, index=False)
        raw.append(csv)
    out = {"one model, raw": pd.read_csv(raw[0]),
           "one model, median 5": cnnkit.smooth(raw[0], method="median").table,
           "one model, savgol 11": cnnkit.smooth(raw[0], method="savgol").table}
    if len(raw) > 1:
        eks = cnnkit.smooth(raw, method="eks", out=args.out / f"{video.stem}_eks.csv")
        out["ensemble median, raw"] = eks.table  # its <name>_x_median columns
        out["ensemble, EKS"] = eks.table
    return out


def score(tables: dict[str, Any], models: list[Path], args: Any) -> dict[str, dict[str, dict[str, float]]]:
    results: dict[str, dict[str, dict[str, float]]] = {}
    for video in VIDEOS:
        frames, truth, names = truth_of(tables, video)
        per: dict[str, dict[str, float]] = {}
        for method, table in trajectories(models, args.data_root / "lips-video" / f"{video}.avi", args).items():
            cols = ("{}_x_median", "{}_y_median") if method == "ensemble median, raw" else ("{}_x", "{}_y")
            pts = points_of(table, names, *cols)
            err = np.linalg.norm(pts[frames] - truth, axis=-1)
            step = np.linalg.norm(np.diff(pts, axis=0), axis=-1)
            per[method] = {"error_mean": float(np.nanmean(err)), "error_median": float(np.nanmedian(err)),
                           "error_max": float(np.nanmax(err)), "points": int(np.isfinite(err).sum()),
                           "jitter_median": float(np.nanmedian(step)), "jitter_p95": float(np.nanpercentile(step, 95)),
                           "frames": int(len(pts))}
        results[video] = per
    return results


def render(results: dict[str, dict[str, dict[str, float]]], args: Any, took_s: float, load: float) -> str:
    rows = []
    for video, per in results.items():
        for method in METHODS:
            if method in per:
                r = per[method]
                rows.append([video, method, f"{r['error_mean']:.2f}", f"{r['error_median']:.2f}",
                             f"{r['error_max']:.1f}", r["points"], f"{r['jitter_median']:.2f}",
                             f"{r['jitter_p95']:.2f}"])
    return (f"Command: `{flags.command_line(__file__)}`. {args.members} members trained on lips-via's training "
            f"split ({args.steps} optimizer steps each, the data-only default otherwise; seeds 0-{args.members - 1}; "
            f"`extra` as validation), each predicting both videos with `predict`'s defaults. Error on the "
            f"labelled frames (008_xaud: never trained on, in the validation split that chose the best epoch; "
            f"002_cal: training images, which flatter every method alike); jitter: distance a point moves from one frame to the next over every "
            f"frame (about 120 frames/s). {took_s / 60:.0f} min at load {load:.1f}. {machine_line()}\n\n"
            f"{markdown_table(HEADERS, rows)}\n")


def main(argv: list[str] | None = None) -> int:
    p = flags.parser(__doc__, quick={"help": "2 tiny members (64x48, 20 steps): a test"}, write=True,
                     out={"default": OUT / "smoothing_lips"}, data_root=True)
    p.add_argument("--members", type=int, default=4, help="ensemble members (default 4)")
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps per member (default 1000)")
    p.add_argument("--retrain", action="store_true", help="train and predict again over earlier outputs")
    args = p.parse_args(argv)
    if args.quick:
        args.members, args.steps = 2, 20
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    start, load = time.monotonic(), load_average()
    tables = lips_tables(args.data_root)
    models = train_members(tables, args)
    results = score(tables, models, args)
    (args.out / "smoothing_lips.json").write_text(json.dumps(results, indent=1))
    text = render(results, args, time.monotonic() - start, load)
    print(text)
    if flags.should_write(args):
        write_section("smoothing_lips", "### Measured on the lips videos\n\n" + text, doc=ROOT / "docs" / "video.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
