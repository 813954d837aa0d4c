"""Ensembles and a calibrated uncertainty on lips-via and faces68 (docs/ACCURACY.md, "Ensembles and uncertainty").

(Smoothing on the lips videos: bench/accuracy/smoothing_lips.py.)

Three splits per set: ``train`` trains, ``extra`` is the validation split (best epoch, the calibration
and the choice of signal), ``test`` reports and chooses nothing.

- ``lips``: lips-via's splits.csv: ``train`` 207 images, ``extra`` 108, ``test`` 392 (speakers unseen in
  training); input 96x72 by default;
- ``faces68``: faces68-csv split by person 0.7 / 0.15 / 0.15 (seed 0), as its experiment files split it:
  ``train``, ``val`` (as ``extra``), ``test`` (people unseen in training); input 96x96 by default.

Two ways for the members to differ, M members each:

- ``seeds``: ``cnnkit.fit(..., ensemble=M)``, the product's path: seeds 0..M-1, the same training images;
- ``folds``: member k trains on the training images less the k-th of M folds (drawn by image, seed 0), seed k-1.

Recipe (short, for a shared CPU): ResNet-18 + heatmap head (width 128, stride 4), L1, augmentation
with the set's flip pairs, Adam 1e-3 cosine, batch 16, ``--epochs`` epochs, the library's arithmetic
(bf16 autocast where native).

    .venv/bin/python bench/accuracy/ensembles.py train --arm seeds --members 4 --epochs 40   # ~45 min, 1 thread
    .venv/bin/python bench/accuracy/ensembles.py train --arm folds --members 4 --epochs 40
    .venv/bin/python bench/accuracy/ensembles.py measure            # the figures of both arms (test split)
    .venv/bin/python bench/accuracy/ensembles.py --set faces68 train --arm seeds --members 4 --epochs 20
    .venv/bin/python bench/accuracy/ensembles.py measure --members-of bench/out/smoothing_lips  # members made there
    .venv/bin/python bench/accuracy/ensembles.py train --quick ...  # a smoke run (tiny, 1 epoch)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.harness import ROOT, flags  # noqa: E402

DATA_ROOT = ROOT.parent / "shared" / "data"
DATA = DATA_ROOT / "lips-via"
FACES68 = DATA_ROOT / "faces68-csv" / "CSVs" / "faces68.csv"
FACES68_FILE = ROOT / "examples" / "accuracy" / "faces68_library_defaults.yaml"  # its split, in one place
SIZES = {"lips": (96, 72), "faces68": (96, 96)}
HEAD = {"type": "heatmap", "width": 128, "stride": 4}
SIGNALS = ("likelihood", "spread", "both")


def tables(data: Path = DATA, quick: bool = False) -> dict[str, Any]:
    """lips-via split by splits.csv: {'train', 'extra', 'test'} AnnotationTables."""
    import cnnkit

    table = cnnkit.read_annotations(data / "via_project.json", flip_pairs="auto")
    splits = pd.read_csv(data / "splits.csv")
    by_name = dict(zip((str((data / f).resolve()) for f in splits["filename"]), splits["split"], strict=True))
    split = [by_name[str(Path(p).resolve())] for p in table.images]
    rows = {s: [i for i, v in enumerate(split) if v == s] for s in ("train", "extra", "test")}
    if quick:
        rows = {k: v[:: 10] for k, v in rows.items()}
    return {k: table.subset(v) for k, v in rows.items()}


def faces68_tables(experiment: Path = FACES68_FILE, quick: bool = False) -> dict[str, Any]:
    """faces68 as its data-only experiment file splits it (by person): {'train', 'extra' (= val), 'test'}."""
    from cnnkit.experiment import load_experiment

    parts = load_experiment(experiment).tables()
    named = {"train": parts["train"], "extra": parts["val"], "test": parts["test"]}
    return {k: v.subset(range(0, len(v), 10)) if quick else v for k, v in named.items()}


def set_tables(set_name: str, quick: bool = False) -> dict[str, Any]:
    return tables(quick=quick) if set_name == "lips" else faces68_tables(quick=quick)


def _fit_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"head": HEAD, "augment": "auto", "size": tuple(args.size), "epochs": args.epochs, "batch_size": 16,
            "lr": 1e-3, "optimizer": "adam", "schedule": "cosine", "loss": "l1", "device": "cpu", "quiet": True,
            "plots": False}


def train(args: argparse.Namespace) -> None:
    import cnnkit

    parts = set_tables(args.set, quick=args.quick)
    out = args.out / args.arm
    start = time.perf_counter()
    if args.arm == "seeds":  # the product's path
        cnnkit.fit("resnet18", parts["train"], parts["extra"], out_dir=out, ensemble=args.members, seed=0,
                   resume=args.resume, overwrite=not args.resume, **_fit_options(args))
    else:
        _train_folds(parts, out, args)
    print(f"{args.arm}: {args.members} members in {time.perf_counter() - start:.0f} s -> {out}")


def _train_folds(parts: dict[str, Any], out: Path, args: argparse.Namespace) -> None:
    """Member k on the training images less fold k; a manifest like train.ensemble's, calibrated the same way."""
    import cnnkit
    from cnnkit.io.ensemble import MANIFEST, EnsembleManifest, member_folder, members_entry, write_manifest
    from cnnkit.train.ensemble import calibrate_ensemble

    train = parts["train"]
    folds = np.array_split(np.random.default_rng(0).permutation(len(train)), args.members)
    members = []
    for k in range(1, args.members + 1):
        keep = np.sort(np.setdiff1d(np.arange(len(train)), folds[k - 1]))
        folder = out / member_folder(k)
        if not (folder / "best.safetensors").is_file() or not args.resume:
            cnnkit.fit("resnet18", train.subset(keep), parts["extra"], out_dir=folder, seed=k - 1, overwrite=True,
                       **_fit_options(args))
        members.append(members_entry(member_folder(k), f"{member_folder(k)}/best.safetensors", seed=k - 1, done=True,
                                     fold=k, rows=len(keep)))
    files = [out / m["model"] for m in members]
    found = calibrate_ensemble(files, parts["extra"], device="cpu", batch_size=32)
    calibration, record = found if found is not None else (None, None)
    write_manifest(EnsembleManifest(out / MANIFEST, tuple(members), varies="folds", calibration=calibration,
                                    uncertainty=record))


# -- measuring ------------------------------------------------------------------------------------


def _outputs(model: Path, table: Any) -> Any:
    import torch

    from cnnkit.infer.predict import Predictor

    predictor = Predictor.from_checkpoint(model, device="cpu")
    with torch.inference_mode():
        return predictor.run(table)


def _scored(outputs: Any) -> Any:
    from cnnkit.engine.scored import Scored

    return Scored(index=outputs.index, pred=outputs.pred, true=outputs.true, scale=outputs.scale,
                  offset=outputs.offset, likelihood=outputs.likelihood, uncertainty=outputs.uncertainty)


def measure_arm(folder: Path, parts: dict[str, Any]) -> dict[str, Any]:
    """Test-split figures of one ensemble folder: members, median, and each signal's AUC and calibration."""
    from cnnkit.engine.ensemble import combine
    from cnnkit.engine.metrics import point_errors
    from cnnkit.io.ensemble import read_manifest
    from cnnkit.trajectories import calibration_error, error_auc, fit_calibration, reliability_table

    manifest = read_manifest(folder / "ensemble.json")
    per = {s: [_outputs(f, parts[s]) for f in manifest.files] for s in ("extra", "test")}
    result: dict[str, Any] = {"members": len(manifest.files), "varies": manifest.varies,
                              "chosen_signal": (manifest.uncertainty or {}).get("signal"),
                              "val_record": manifest.uncertainty}
    test_err = [point_errors(o.pred, o.true) for o in per["test"]]
    result["member_test_px"] = [float(np.nanmean(e)) for e in test_err]
    result["member_test_auc_likelihood"] = [error_auc(1 - o.likelihood, e) for o, e in zip(per["test"], test_err,
                                                                                           strict=True)]
    result["member_test_auc_uncertainty"] = [error_auc(o.uncertainty, e) if o.uncertainty is not None else None
                                             for o, e in zip(per["test"], test_err, strict=True)]
    result["member_test_ece_px"] = [calibration_error(reliability_table(o.uncertainty, e))
                                    if o.uncertainty is not None else None
                                    for o, e in zip(per["test"], test_err, strict=True)]
    ens = {s: combine([_scored(o) for o in per[s]]) for s in per}
    val_err, err = point_errors(ens["extra"].pred, ens["extra"].true), point_errors(ens["test"].pred, ens["test"].true)
    result["ensemble_test_px"] = float(np.nanmean(err))
    result["ensemble_test_median_px"] = float(np.nanmedian(err))
    result["points_over_10px"] = int((err > 10).sum())
    result["points"] = int(np.isfinite(err).sum())
    names = {s: np.broadcast_to(np.asarray(parts[s].landmarks, dtype=object), e.shape)
             for s, e in (("extra", val_err), ("test", err))}
    raw = {"likelihood": 1 - ens["test"].likelihood, "spread": ens["test"].spread}
    result["test_auc_raw"] = {k: error_auc(v, err) for k, v in raw.items()}
    result["test_auc_calibrated"], result["test_ece_px"], result["reliability"] = {}, {}, {}
    for signal in SIGNALS:
        inputs = {p: getattr(ens["extra"], p) for p in (("spread", "likelihood") if signal == "both" else (signal,))}
        cal = fit_calibration(val_err, landmarks=names["extra"], **inputs)
        expected = cal.expected_error(landmarks=names["test"],
                                      **{p: getattr(ens["test"], p) for p in inputs})
        result["test_auc_calibrated"][signal] = error_auc(expected, err)
        table = reliability_table(expected, err)
        result["test_ece_px"][signal] = calibration_error(table)
        result["reliability"][signal] = table.to_dict(orient="list")
    return result


def measure(args: argparse.Namespace) -> None:
    parts = set_tables(args.set, quick=args.quick)
    if args.members_of is not None:  # members trained elsewhere on the same splits, e.g. by smoothing_lips.py
        results = {f"seeds ({args.members_of.name})": measure_arm(adopt(args.members_of), parts)}
        (args.members_of / "uncertainty_results.json").write_text(json.dumps(results, indent=2, default=float))
        print(report(results))
        return
    results = {arm: measure_arm(args.out / arm, parts) for arm in ("seeds", "folds")
               if (args.out / arm / "ensemble.json").is_file()}
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    print(report(results))


def adopt(folder: Path) -> Path:
    """``folder``'s ``member-K/best.safetensors`` as one ensemble (its ``ensemble.json``, written when absent)."""
    from cnnkit.io.ensemble import EnsembleManifest, members_entry, write_manifest

    manifest = folder / "ensemble.json"
    if not manifest.is_file():
        members = sorted(folder.glob("member-*/best.safetensors"), key=lambda f: int(f.parent.name.split("-")[1]))
        if len(members) < 2:
            sys.exit(f"{folder}: fewer than 2 member-K/best.safetensors to measure as an ensemble")
        entries = tuple(members_entry(m.parent.name, f"{m.parent.name}/{m.name}", seed=int(m.parent.name.split("-")[1]),
                                      done=True) for m in members)
        write_manifest(EnsembleManifest(manifest, entries))
    return folder


def report(results: dict[str, Any]) -> str:
    """Markdown tables of the figures (docs/ACCURACY.md quotes them)."""
    lines = ["| members differ by | member test px (mean of M) | ensemble median test px | single model: likelihood "
             "AUC / calibrated AUC | ensemble: likelihood / spread / both (calibrated AUC) | chosen on val | "
             "calibration error of the chosen, px |", "|---|---|---|---|---|---|---|"]
    for arm, r in results.items():
        cal = r["test_auc_calibrated"]
        chosen = r["chosen_signal"]
        single = f"{np.mean(r['member_test_auc_likelihood']):.3f} / " + (
            f"{np.mean([a for a in r['member_test_auc_uncertainty'] if a is not None]):.3f}"
            if any(a is not None for a in r["member_test_auc_uncertainty"]) else "-")
        lines.append(f"| {arm} | {np.mean(r['member_test_px']):.2f} (" + ", ".join(f"{v:.2f}" for v in r["member_test_px"])
                     + f") | **{r['ensemble_test_px']:.2f}** | {single} | {cal['likelihood']:.3f} / "
                     f"{cal['spread']:.3f} / {cal['both']:.3f} | {chosen} | "
                     f"{r['test_ece_px'].get(chosen, float('nan')):.2f} |")
    return "\n".join(lines)


# -- videos ---------------------------------------------------------------------------------------


def main() -> None:
    p = flags.parser(__doc__, quick={"help": "a tenth of each split, 1 epoch, 2 members, 48x36"},
                     out={"help": "the arms' folder (default runs/ensembles_<set>)"}, epochs={"default": 40},
                     size={"help": "input width x height (default 96x72 on lips, 96x96 on faces68)"})
    p.add_argument("--set", choices=tuple(SIZES), default="lips")
    p.add_argument("command", choices=("train", "measure"))
    p.add_argument("--arm", choices=("seeds", "folds"), default="seeds")
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--resume", action="store_true", help="skip finished members (else they are trained again)")
    p.add_argument("--members-of", type=Path, help="measure: the member-K/ folders here (trained on the same splits, "
                   "e.g. by smoothing_lips.py) as one ensemble")
    args = p.parse_args()
    args.out = args.out or ROOT / "runs" / f"ensembles_{args.set}"
    args.size = args.size or SIZES[args.set]
    if args.quick:
        args.epochs, args.members, args.size, args.out = 1, 2, [48, 36], args.out.with_name(args.out.name + "_quick")
    data = DATA if args.set == "lips" else FACES68
    if not data.exists():
        sys.exit(f"{args.set} not found at {data}")
    {"train": train, "measure": measure}[args.command](args)


if __name__ == "__main__":
    main()
