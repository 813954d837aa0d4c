"""Predictions and metrics of every inference path, written so two versions of cnnkit can be compared bit for bit.

Trains small models once (fixed seeds, CPU) on lips-via, the small-subject demo set and hymenoptera,
then records, as CSV text with every digit (``%.17g``):

- the validation metrics each training epoch logged (``metrics.csv``);
- ``predict`` on images (plain, test-time flip), on a video, ``evaluate`` per image and its metrics,
  for each inference strategy a model has (whole frame; crop models: two-pass, full-frame);
- the seed API's ``predict_model`` / ``test_model``.

Usage (from the repository root)::

    python tools/inference_parity.py --out /tmp/parity_before            # trains, records
    python tools/inference_parity.py --out /tmp/parity_after --models /tmp/parity_before
    python tools/inference_parity.py --compare /tmp/parity_before /tmp/parity_after

``--models`` reuses the first run's model files for the prediction paths (and still retrains into
the new folder to compare the training-time validation figures). ``--compare`` lists every file
that differs and exits 1 if any does.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import cnnkit
from cnnkit.data.table import AnnotationTable

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LIPS_PAIRS = [["leftLip", "rightLip"], ["topleftinner", "toprightinner"], ["bottomleftinner", "bottomrightinner"]]


def _write(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, float_format="%.17g", index=True)


def _lips() -> tuple[AnnotationTable, AnnotationTable, AnnotationTable]:
    table = cnnkit.read_annotations(SHARED / "lips-via" / "via_project.json", flip_pairs=LIPS_PAIRS)
    splits = pd.read_csv(SHARED / "lips-via" / "splits.csv")
    split_of = dict(zip(splits["filename"].str.replace("images/", "", regex=False), splits["split"], strict=True))
    names = [split_of.get(str(i).split("images/")[-1], "") for i in table.images]
    rows = {s: np.flatnonzero(np.asarray(names) == s) for s in ("train", "extra", "test")}
    return table.subset(rows["train"][:48]), table.subset(rows["extra"][:16]), table.subset(rows["test"][:24])


def _small_subject(folder: Path) -> tuple[AnnotationTable, AnnotationTable]:
    from cnnkit.demo.synth import SmallSubject, make_demo_dataset

    project = make_demo_dataset(folder, n_images=40, seed=3, small_subject=SmallSubject(frame=(480, 360), span=(30.0, 80.0)))
    table = cnnkit.read_annotations(project, flip_pairs=None)  # no pairs (cnnkit <= 0.2's default for VIA)
    return table.subset(np.arange(30)), table.subset(np.arange(30, 40))


def _train(name: str, out: Path, train: AnnotationTable, val: AnnotationTable, model: Any = "resnet18",
           **options: Any) -> Path:
    run = cnnkit.fit(model, train, val, out_dir=out / "runs" / name, quiet=True, plots=False, seed=0,
                     device="cpu", **options)
    return run.best


def _record_landmarks(name: str, model: Path, out: Path, test: AnnotationTable, views: list[str],
                      video: Path | None = None, flip: bool = True) -> None:
    for view in views:
        tag = f"{name}/{view}"
        _write(cnnkit.predict(model, test, views=view, device="cpu"), out / tag / "predict.csv")
        if flip:
            _write(cnnkit.predict(model, test, views=view, tta_flip=True, device="cpu"), out / tag / "predict_flip.csv")
        ev = cnnkit.evaluate(model, test, views=view, device="cpu")
        _write(ev.per_image, out / tag / "evaluate_per_image.csv")
        metrics = {k: float(v) for k, v in ev.metrics.items() if isinstance(v, (int, float))}
        (out / tag / "evaluate_metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True))
        if video is not None:
            frames = cnnkit.predict(model, video, views=view, device="cpu")
            _write(frames, out / tag / "video.csv")


def _record_seed_api(model: Path, test: AnnotationTable, size: tuple[int, int], out: Path) -> None:
    from cnnkit.compat.seed_api import predict_model, test_model

    df = test.df.copy()
    xs, ys = test.point_columns
    args = {"df": df, "x_label": "image", "xp_label": xs, "yp_label": ys, "batch_size": 8, "resize_wh": size}
    preds = np.concatenate(predict_model(args, model_dir=str(model), opt_mode="regression"))
    _write(pd.DataFrame(preds), out / "seed_api" / "predict_model.csv")
    losses = test_model(args, model_name=str(model), opt_mode="regression")
    _write(pd.DataFrame({"loss": losses}), out / "seed_api" / "test_model.csv")


def _copy_metrics(out: Path) -> None:
    for metrics in sorted((out / "runs").glob("*/metrics.csv")):
        frame = pd.read_csv(metrics).drop(columns=["time_s", "images_per_s"], errors="ignore")
        _write(frame, out / "training" / f"{metrics.parent.name}.csv")


def record(out: Path, models: Path | None) -> None:
    torch.set_num_threads(2)
    train, val, test = _lips()
    video = SHARED / "lips-video" / "002_cal.avi"
    common = {"epochs": 2, "batch_size": 8, "workers": 0}
    found = {
        "lips_heatmap": _train("lips_heatmap", out, train, val, size=(80, 60), **common),
        "lips_gap": _train("lips_gap", out, train, val, head="gap", size=(80, 60), **common),
        "lips_crop": _train("lips_crop", out, train, val, crop={"size": (96, 96), "scale": 0.5}, **common),
    }
    small_train, small_val = _small_subject(out / "small_subject")
    found["small_crop"] = _train("small_crop", out, small_train, small_val, crop={"size": (96, 96), "scale": 0.5},
                                 **common)
    if models is not None:  # the first run's model files: the prediction paths see the same weights
        found = {k: models / "runs" / k / "best.safetensors" for k in found}
    _record_landmarks("lips_heatmap", found["lips_heatmap"], out, test, ["auto"], video)
    _record_landmarks("lips_gap", found["lips_gap"], out, test, ["auto"], video)
    _record_landmarks("lips_crop", found["lips_crop"], out, test, ["two-pass", "full-frame"], video)
    _record_landmarks("small_crop", found["small_crop"], out, small_val, ["two-pass", "full-frame"], flip=False)
    _record_seed_api(found["lips_heatmap"], test, (80, 60), out)
    _record_classes(out, models)
    _copy_metrics(out)


def _record_classes(out: Path, models: Path | None) -> None:
    root = SHARED / "hymenoptera"
    table = cnnkit.read_annotations(root / "train")
    rows = np.r_[0:12, len(table) - 12:len(table)]
    train = table.subset(rows[::2])
    val = table.subset(rows[1::2])
    model = _train("classes", out, train, val, size=(64, 64), epochs=1, batch_size=6, workers=0)
    if models is not None:
        model = models / "runs" / "classes" / "best.safetensors"
    _write(cnnkit.predict(model, val, device="cpu"), out / "classes" / "predict.csv")
    _write(cnnkit.predict(model, val, tta_flip=True, device="cpu"), out / "classes" / "predict_flip.csv")
    ev = cnnkit.evaluate(model, val, device="cpu")
    _write(ev.per_image, out / "classes" / "evaluate_per_image.csv")


def _text(path: Path, root: Path) -> str:
    """The file's text with the data root and the output folder left out of paths (two checkouts may
    reach ../shared differently; the generated images live in each run's own folder)."""
    return re.sub(r"[^,\"]*/shared/data/", "DATA/", path.read_text()).replace(str(root), "OUT")


def compare(before: Path, after: Path) -> int:
    skip = ("runs/", "small_subject/")
    names = sorted({str(p.relative_to(root)) for root in (before, after) for p in root.rglob("*")
                    if p.is_file() and p.suffix in (".csv", ".json") and not str(p.relative_to(root)).startswith(skip)})
    bad = []
    for name in names:
        a, b = before / name, after / name
        if not (a.is_file() and b.is_file()) or _text(a, before) != _text(b, after):
            bad.append(name)
    for name in bad:
        print(f"differs: {name}")
    print(f"{len(names) - len(bad)} of {len(names)} files identical")
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--models", type=Path, help="reuse the model files of an earlier --out")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    if args.out is None:
        parser.error("--out or --compare is required")
    record(args.out, args.models)
    return 0


if __name__ == "__main__":
    sys.exit(main())
