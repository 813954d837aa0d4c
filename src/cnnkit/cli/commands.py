"""One function per ``cnnkit`` command (``cnnkit predict``: ``cli/predict.py``): read the arguments, call the library."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from cnnkit.errors import CnnkitError


def _read(args: argparse.Namespace) -> Any:
    from cnnkit.data.sources import read_annotations

    opts = {"images": args.images, "zip": args.zip, "landmark_attribute": args.landmark_attribute}
    return read_annotations(args.data, **{k: v for k, v in opts.items() if v is not None})


def cmd_train(args: argparse.Namespace) -> int:
    from cnnkit.experiment import load_experiment, run_experiment

    overrides = [*args.set, *([f"train.ensemble={args.ensemble}"] if args.ensemble is not None else [])]
    exp = load_experiment(args.experiment, overrides)
    result = run_experiment(exp, quiet=args.quiet, resume=args.resume, overwrite=args.overwrite)
    run = result["run"]
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return 130 if run.interrupted else 0
    print(f"run folder: {run.out_dir}  " + (f"ensemble: {run.best.name}" if run.best == run.last else
                                            f"best: {run.best.name}  last: {run.last.name}"))
    if "test" in result:
        print("test metrics:\n" + str(result["test"]))
    if not run.interrupted:
        from cnnkit.reporting import report_after_training

        page = report_after_training(run.out_dir, exp, result.get("test"))
        print(f"report: {page}" if page else "report: not written (no test or validation split, or see above)")
    return 130 if run.interrupted else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from cnnkit.infer.evaluate import evaluate

    result = evaluate(args.model, _read(args), batch_size=args.batch_size, device=args.device,
                      tta_flip=args.tta_flip, views=args.views)
    print(result)
    if args.out:
        write_frame(result.per_image, Path(args.out))
    if args.json:
        from cnnkit.atomic import atomic_write_text

        plain = {k: float(v) for k, v in result.metrics.items() if isinstance(v, (int, float))}
        atomic_write_text(args.json, json.dumps(plain, indent=2))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from cnnkit.config import _parse_size
    from cnnkit.model.summary import summary

    print(summary(args.spec, size=_parse_size(args.size, "--size"), channels=args.channels,
                  outputs=args.outputs, **({"head": args.head} if args.head else {})))
    return 0


def cmd_spec(args: argparse.Namespace) -> int:
    from cnnkit.spec.parse import dump_spec_yaml, load_spec

    print(dump_spec_yaml(load_spec(args.preset)), end="")
    return 0


def cmd_check_data(args: argparse.Namespace) -> int:
    from cnnkit.data.check import check_data

    report = check_data(_read(args), on_error="skip", decode=not args.no_decode)
    print(report)
    return 0 if report.ok else 1


def cmd_convert(args: argparse.Namespace) -> int:
    from cnnkit.data.guard import refuse_to_overwrite_labels
    from cnnkit.data.sources.writers import write_csv, write_via

    refuse_to_overwrite_labels(args.output, what="the output")
    table = _read(args)
    out = Path(args.output)
    (write_via if out.suffix.lower() == ".json" else write_csv)(table, out)
    print(f"{len(table)} rows -> {out}")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from cnnkit.config import _parse_size
    from cnnkit.data.cache import build_cache

    path = build_cache(_read(args), size=_parse_size(args.size, "--size"), grayscale=args.grayscale,
                       letterbox=args.letterbox, folder=args.folder, progress=not args.quiet)
    print(f"cache: {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from cnnkit.io.export import export_model

    print(export_model(args.model, args.out, format=args.format))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from cnnkit.demo import run_demo

    if args.small_subject:  # a development set for crop training; the demo's model is not meant for it
        from cnnkit.config import _parse_size
        from cnnkit.demo.synth import SmallSubject, make_demo_dataset

        small = SmallSubject(frame=_parse_size(args.frame, "--frame"))
        print(make_demo_dataset(args.out, n_images=args.images, seed=args.seed, small_subject=small))
        return 0
    run_demo(args.out, seed=args.seed, quick=args.quick, quiet=args.quiet)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from cnnkit.reporting import report

    page = report(args.run, args.data, out=args.out, images=args.images, batch_size=args.batch_size,
                  device=args.device, tta_flip=args.tta_flip or None, views=args.views)
    print(f"report: {page}")
    return 0


def cmd_extract_frames(args: argparse.Namespace) -> int:
    from cnnkit.data.frames import extract_frames

    if args.model:
        from cnnkit.io.checkpoint import read_meta

        names = list(read_meta(args.model).get("landmarks") or [])
        if not names:
            raise CnnkitError(f"{args.model}: not a landmark model; pass --landmarks a,b,c")
    elif args.landmarks:
        names = [n.strip() for n in args.landmarks.split(",") if n.strip()]
    else:
        raise CnnkitError("name the landmarks to label: --landmarks a,b,c or --model <checkpoint>")
    result = extract_frames(args.videos, args.out, n=args.n, method=args.method, landmarks=names, seed=args.seed)
    print(f"{len(result.frames)} frames -> {Path(args.out)}; label them in VIA: open {result.project}")
    return 0


def cmd_suggest(args: argparse.Namespace) -> int:
    from cnnkit.infer.suggest import suggest

    if args.out:
        from cnnkit.data.guard import refuse_to_overwrite_labels

        refuse_to_overwrite_labels(args.out, what="--out")
    top = suggest(args.model, args.inputs, n=args.n, via=args.via, exclude=args.exclude, flip=not args.no_flip,
                  min_gap=args.min_gap, batch_size=args.batch_size, device=args.device)
    if args.out:
        write_frame(top, Path(args.out))
    where = [c for c in ("image", "video", "frame") if c in top.columns]
    print(top[[*where, "score"]].head(10).to_string(index=False))
    print(f"{len(top)} suggestions" + (f" -> {args.via} (correct them in VIA, then `cnnkit merge`)" if args.via else ""))
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from cnnkit.data.merge import merge_annotations

    print(merge_annotations(args.corrected, args.into, prefer=args.prefer, out=args.out, images=args.images,
                            landmark_attribute=args.landmark_attribute))
    return 0


def cmd_smooth(args: argparse.Namespace) -> int:
    from cnnkit.data.guard import refuse_to_overwrite_labels
    from cnnkit.trajectories.smoothing import check_target, is_smoothing_output, sidecar_path, smooth

    first = Path(args.predictions[0])
    out = Path(args.out) if args.out else first.with_name(f"{first.stem}_smoothed.csv")
    check_target(out, args.predictions)
    if not is_smoothing_output(out):  # a file smooth wrote before may be replaced; anything else is checked
        refuse_to_overwrite_labels(out, what="--out")
    result = smooth(args.predictions, out=out, method=args.method, window=args.window, strength=args.strength,
                    max_gap=args.max_gap)
    print("\n".join(result.lines()))
    print(f"smoothed -> {out} (settings -> {sidecar_path(out)}); the raw predictions are unchanged")
    return 0


def write_frame(frame: Any, path: Path) -> None:
    """CSV written atomically: an interrupted write never leaves half a file."""
    from cnnkit.atomic import atomic_write_text

    atomic_write_text(path, frame.to_csv(index=False))
