"""The ``cnnkit`` command: parse arguments, build configs, call library functions.

User errors (``cnnkit.CnnkitError``) print one line and exit with code 2, and so do the
``OSError``s about the user's paths (a full disk, a read-only folder, a file where a folder
should be: ``cnnkit.atomic.PATH_ERRNOS``, with the path named); Ctrl-C exits with 130;
anything else is a bug and keeps its traceback. A command that read a video ending before its
declared length (its frames kept and reported) exits with 3 unless ``--accept-partial``.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnkit import __version__
from cnnkit.data.video import partial_videos
from cnnkit.engine.inference import INFERENCE_BATCH, VIEWS
from cnnkit.errors import CnnkitError
from cnnkit.viz.video import DEFAULT_THRESHOLD as LIKELIHOOD_THRESHOLD

EXAMPLES = {
    "train": "cnnkit train exp.yaml --set train.epochs=5 --set data.size=96x96",
    "predict": "cnnkit predict runs/exp/best.safetensors photos/ --out preds.csv --via review.json\n"
               "  cnnkit predict runs/exp/best.safetensors clip.mp4 --out clip.csv --labeled-video clip_labeled.mp4\n"
               "  cnnkit predict runs/exp/best.safetensors videos/ --out preds/ --format csv,dlc   # an archive",
    "evaluate": "cnnkit evaluate runs/exp/best.safetensors test.csv --images images/ --out per_image.csv",
    "summary": "cnnkit summary resnet50 --size 224x224 --outputs 1000",
    "spec": "cnnkit spec resnet18 > my_model.yaml",
    "check-data": "cnnkit check-data via_project.json --images images/",
    "convert": "cnnkit convert via_project.json landmarks.csv",
    "cache": "cnnkit cache via_project.json --size 160x120 --folder cache/",
    "export": "cnnkit export runs/exp/best.safetensors --format onnx",
    "demo": "cnnkit demo --out runs/demo",
    "report": "cnnkit report runs/exp --data test.csv --out runs/exp/report.html",
    "merge": "cnnkit merge review/via_project.json --into labels.csv --prefer corrected",
    "extract-frames": "cnnkit extract-frames mouse1.mp4 mouse2.mp4 --n 50 --landmarks nose,tail --out to_label/",
    "suggest": "cnnkit suggest runs/exp/best.safetensors mouse3.mp4 --n 50 --via review/review.json",
    "smooth": "cnnkit smooth clip_m1.csv clip_m2.csv clip_m3.csv clip_m4.csv --out clip_eks.csv\n"
              "  cnnkit smooth clip.csv --method savgol --window 11 --out clip_smoothed.csv",
}


def _quiet_option() -> argparse.ArgumentParser:
    """--quiet before or after the command (`cnnkit -q train x.yaml` and `cnnkit train x.yaml -q`).

    SUPPRESS: a command that does not see it leaves the value from before the command alone.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bars or info lines")
    return common


def _add(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help_text, description=help_text, epilog=f"example:\n  {EXAMPLES[name]}",
                          formatter_class=argparse.RawDescriptionHelpFormatter, parents=[_quiet_option()])


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="annotation file (CSV, VIA, COCO, DeepLabCut) or a folder of class folders")
    p.add_argument("--images", help="folder that image paths are relative to")
    p.add_argument("--zip", help="zip archive holding the images")
    p.add_argument("--landmark-attribute", help="VIA region attribute that names each landmark "
                   "(@order: unnamed points by click order)")


def _device_args(p: argparse.ArgumentParser) -> None:
    """How a model runs: images per forward pass and the device."""
    p.add_argument("--batch-size", type=int, default=INFERENCE_BATCH,
                   help=f"images per forward pass (default {INFERENCE_BATCH})")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps or auto (default)")


def _inference_args(p: argparse.ArgumentParser) -> None:
    """What predict, evaluate and report share: batch size, device, test-time flip and views."""
    _device_args(p)
    p.add_argument("--tta-flip", action="store_true",
                   help="average the outputs on the image and its mirror image (landmarks need flip pairs)")
    p.add_argument("--views", choices=VIEWS, default="auto",
                   help="crop-trained models (data.crop): auto (default: what the run measured best on its "
                        "validation split, recorded in the model), full-frame (the network over the whole frame "
                        "finds the subject, a training view around it gives the points) or two-pass (the whole "
                        "frame shrunk into one view first, then a view around the points found)")


def _accept_partial_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--accept-partial", action="store_true",
                   help="a video that ends before its declared length (truncated, damaged): use its decoded frames "
                   "and exit 0 (default: the same, but exit status 3)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnkit", description="Build CNNs from a layer list; train them on "
                                     "images streamed from disk (landmarks or classes).")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars or info lines")
    parser.add_argument("--version", action="version", version=f"cnnkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = _add(sub, "train", "train from an experiment file (YAML)")
    p.add_argument("experiment")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in the output folder (from epoch 1 when nothing was committed yet)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in the output folder (without it, a folder holding a run is refused)")
    p.add_argument("--ensemble", type=int, metavar="N", help="train N models (seeds seed .. seed+N-1) into one "
                   "folder: an ensemble, used as one model with an uncertainty per point (= --set train.ensemble=N)")
    p = _add(sub, "predict", "predict landmarks or classes for images or videos")
    p.add_argument("model")
    p.add_argument("inputs", nargs="+", help="images, folders, a .zip, an annotation file, or videos "
                   "(.mp4 .avi .mov .mkv ...: one row per decoded frame); folders or quoted globs of videos: an "
                   "archive, one output set per video under --out (a folder), resumable")
    p.add_argument("--out", default="predictions.csv", help="the CSV (default predictions.csv); an archive: "
                   "the folder the outputs mirror the videos' paths in")
    p.add_argument("--format", default="csv", metavar="FORMATS", help="comma-separated: csv (the default, at "
                   "--out), dlc (DeepLabCut CSV + .h5, for movement and napari), nwb (videos: NWB with ndx-pose); "
                   "dlc and nwb files are written beside --out (docs/video.md)")
    p.add_argument("--via", help="also write a VIA 2 project to review and correct the predictions")
    p.add_argument("--labeled-video", metavar="PATH", help="videos: also write each video with the points "
                   "drawn (H.264 .mp4); a folder when several videos are given")
    p.add_argument("--likelihood-threshold", type=float, default=LIKELIHOOD_THRESHOLD, metavar="P",
                   help=f"labelled video: points with a lower likelihood are drawn faded (default {LIKELIHOOD_THRESHOLD}, "
                   "chosen on lips-via; see docs/video.md)")
    p.add_argument("--hide-unsure", action="store_true", help="labelled video: hide those points instead")
    _accept_partial_option(p)
    p.add_argument("--images", help="folder that paths in an annotation file are relative to")
    _inference_args(p)
    p = _add(sub, "evaluate", "score a model on annotated images (errors in original pixels)")
    p.add_argument("model")
    _data_args(p)
    p.add_argument("--out", help="write the per-image table (worst first) to this CSV")
    p.add_argument("--json", help="write the metrics to this JSON file")
    _inference_args(p)
    p = _add(sub, "summary", "print a layer table with output shapes, parameters and MACs")
    p.add_argument("spec", help="preset name or a YAML/JSON spec file")
    p.add_argument("--size", required=True, help="input WIDTHxHEIGHT")
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--outputs", type=int, default=1000)
    p.add_argument("--head")
    p = _add(sub, "spec", "print a preset as an editable YAML layer list")
    p.add_argument("preset")
    p = _add(sub, "check-data", "check annotations and images; report problems")
    _data_args(p)
    p.add_argument("--no-decode", action="store_true", help="only check files exist (faster)")
    p = _add(sub, "convert", "convert annotations between formats (.csv or VIA .json by extension)")
    _data_args(p)
    p.add_argument("output")
    p = _add(sub, "cache", "decode and resize every image once into a cache file")
    _data_args(p)
    p.add_argument("--size", required=True)
    p.add_argument("--folder", required=True)
    p.add_argument("--grayscale", action="store_true")
    p.add_argument("--letterbox", action="store_true")
    p = _add(sub, "export", "export a checkpoint to ONNX or TorchScript (with a parity check)")
    p.add_argument("model")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("--out")
    p = _add(sub, "demo", "generate a demo data set, train on it, evaluate, plot")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a tiny run (seconds), for smoke tests")
    p.add_argument("--small-subject", action="store_true",
                   help="only write the small-subject data set (large frames, faces of 60-200 px) to --out")
    p.add_argument("--images", type=int, default=300, help="images of the --small-subject set")
    p.add_argument("--frame", default="1280x960", help="frame size WxH of the --small-subject set")
    p = _add(sub, "report", "write one self-contained HTML page about a run (curves, errors, worst images)")
    p.add_argument("run", help="the run folder (output of cnnkit train)")
    p.add_argument("--data", help="annotations to score (default: the run's test split, else its validation split)")
    p.add_argument("--images", help="folder that image paths in --data are relative to")
    p.add_argument("--out", help="the HTML file (default: RUN/report.html)")
    _inference_args(p)
    _loop_parsers(sub)
    _smooth_parser(sub)
    return parser


def _loop_parsers(sub: Any) -> None:
    """The label -> train -> refine commands."""
    p = _add(sub, "extract-frames", "pick frames of videos to label; write them and a VIA project to label in")
    p.add_argument("videos", nargs="+")
    p.add_argument("--out", required=True, help="folder for the frames, frames.csv and via_project.json")
    p.add_argument("--n", type=int, default=50, help="frames per video (default 50)")
    p.add_argument("--method", choices=("kmeans", "uniform"), default="kmeans",
                   help="kmeans: frames that look different (default); uniform: evenly spaced")
    p.add_argument("--landmarks", help="landmark names to label, comma-separated")
    p.add_argument("--model", help="take the landmark names from this model (.safetensors)")
    p.add_argument("--seed", type=int, default=0)
    _accept_partial_option(p)
    p = _add(sub, "suggest", "rank unlabelled images or video frames by the model's doubt; write the top ones "
             "with their predictions as a VIA project to correct")
    p.add_argument("model")
    p.add_argument("inputs", nargs="+", help="videos, images, folders or an annotation file")
    p.add_argument("--n", type=int, default=50, help="how many to suggest (default 50)")
    p.add_argument("--via", help="write the suggestions, predictions pre-filled, as a VIA project here")
    p.add_argument("--out", help="write the ranked suggestions (scores, predictions) to this CSV")
    p.add_argument("--exclude", help="a labels file: its images are not suggested")
    p.add_argument("--min-gap", type=int, default=10, help="frames between two suggestions in a video (10)")
    p.add_argument("--no-flip", action="store_true", help="skip the mirror-image disagreement (one pass less)")
    _device_args(p)
    _accept_partial_option(p)
    p = _add(sub, "merge", "add corrected/new annotations to a labels file (conflicts listed; a backup is kept)")
    p.add_argument("corrected", help="the corrected annotations, e.g. a VIA project saved after review")
    p.add_argument("--into", required=True, help="the training labels file (.csv table or VIA .json project)")
    p.add_argument("--prefer", choices=("corrected", "existing"),
                   help="which side wins where an image is labelled differently in both (default: stop)")
    p.add_argument("--out", help="write the merged labels here and leave --into untouched")
    p.add_argument("--images", help="folder that paths in the corrected file are relative to")
    p.add_argument("--landmark-attribute", help="VIA region attribute that names each landmark, in both files "
                   "(default: the one named landmark/bodypart, or the only one)")


def _smooth_parser(sub: Any) -> None:
    p = _add(sub, "smooth", "smooth video predictions: one CSV -> a median (or savgol) filter; several CSVs of the "
             "same video (an ensemble) -> the ensemble Kalman smoother with a posterior sd per point")
    p.add_argument("predictions", nargs="+", help="prediction CSVs of `cnnkit predict MODEL VIDEO` (same frames)")
    p.add_argument("--out", help="the smoothed CSV (default: <first>_smoothed.csv beside it); never an input")
    p.add_argument("--method", choices=("auto", "eks", "median", "savgol"), default="auto",
                   help="auto (default): eks for 2+ CSVs, median for one; savgol: Savitzky-Golay, order 2")
    p.add_argument("--window", type=int, help="filter window in frames (default: median 5, savgol 11; at 30 fps)")
    p.add_argument("--max-gap", type=int, help="filters: fill runs of missing frames up to this long "
                   "(default: half the window); longer ones stay empty")
    p.add_argument("--strength", type=float, help="eks: fix the process variance s (px² per frame) of every "
                   "landmark instead of choosing it per landmark (smaller = smoother)")


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


def cmd_predict(args: argparse.Namespace) -> int:
    from cnnkit.data.guard import refuse_to_overwrite_labels
    from cnnkit.infer.archive import archive_videos
    from cnnkit.infer.inputs import video_paths
    from cnnkit.infer.predict import predict, predictions_table

    archive = archive_videos(args.inputs, args.out)
    if archive is not None:
        return _predict_archive(args, archive)
    refuse_to_overwrite_labels(args.out, what="--out")
    if args.via:
        refuse_to_overwrite_labels(args.via, what="--via")

    source: Any = args.inputs[0] if len(args.inputs) == 1 else args.inputs
    videos = video_paths(source)
    if (args.labeled_video and not videos) or (args.via and videos):
        raise CnnkitError("--labeled-video takes videos and --via takes images; predict them in separate calls")
    from cnnkit.infer.formats import PredictionMeta, check_outputs, write_predictions

    meta = PredictionMeta.from_checkpoint(args.model, videos, views=args.views, tta_flip=args.tta_flip)
    formats = check_outputs(args.out, args.format, meta)  # before any work: formats apply, no user file in the way
    if videos:
        preds = _predict_videos(args, videos)
    else:
        preds = predict(args.model, source, batch_size=args.batch_size, device=args.device, images=args.images,
                        tta_flip=args.tta_flip, views=args.views)
    from cnnkit.data.sources.writers import write_via

    for path in write_predictions(preds, args.out, formats, meta):
        print(f"{len(preds)} predictions -> {path}")
    if args.via:
        landmarks = [c[:-2] for c in preds.columns if c.endswith("_x")]
        if not landmarks:
            raise CnnkitError("--via needs a landmark model; this model predicts classes")
        write_via(predictions_table(preds, landmarks), args.via)
        print(f"VIA project for review -> {args.via}")
    return 0


def _predict_archive(args: argparse.Namespace, videos: list[Any]) -> int:
    """A folder or glob of videos: one output set per video under --out, resumable (docs/video.md#archive).

    Exit status (rank 0; the other ranks exit 0): 1 when a video failed, 3 when videos only ended early.
    """
    from cnnkit.infer.archive import predict_archive

    if args.via or args.labeled_video:
        raise CnnkitError("--via and --labeled-video do not apply to an archive of videos (a folder or glob); "
                          "predict single videos for labelled videos")
    summary = predict_archive(args.model, videos, args.out, formats=args.format, batch_size=args.batch_size,
                              device=args.device, tta_flip=args.tta_flip, views=args.views, progress=not args.quiet)
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return 0
    print("\n".join(summary.lines()))
    print(f"summary -> {Path(args.out) / 'archive_summary.csv'}")
    return summary.exit_status(accept_partial=getattr(args, "accept_partial", False))


def _predict_videos(args: argparse.Namespace, videos: list[Path]) -> Any:
    """Each video in turn; with --labeled-video its frames are drawn as they are predicted (one decode)."""
    from cnnkit.infer.predict import Predictor
    from cnnkit.infer.video_predict import predict_videos

    predictor = Predictor.from_checkpoint(args.model, device=args.device, tta_flip=args.tta_flip, views=args.views)
    if args.labeled_video and not predictor.landmarks:
        raise CnnkitError("--labeled-video needs a landmark model; this model predicts classes")
    sink = _labeled_video_sink(args, predictor.landmarks, several=len(videos) > 1) if args.labeled_video else None
    preds = predict_videos(predictor, videos, batch_size=args.batch_size, progress=not args.quiet, sink=sink)
    return preds if len(videos) > 1 else preds.drop(columns="video")


def _labeled_video_sink(args: argparse.Namespace, names: list[str], *, several: bool) -> Any:
    """``video path -> LabeledVideoWriter`` for --labeled-video (a folder of ``<stem>_labeled.mp4`` for several)."""
    from cnnkit.data.video import video_info
    from cnnkit.viz.video import LabeledVideoWriter

    def sink(video: Path) -> LabeledVideoWriter:
        out = Path(args.labeled_video)
        out = out / f"{video.stem}_labeled.mp4" if several else out
        print(f"labelled video -> {out}")
        return LabeledVideoWriter(out, fps=video_info(video).fps, names=names, threshold=args.likelihood_threshold,
                                  below="hide" if args.hide_unsure else "fade")

    return sink


def _write_frame(frame: Any, path: Path) -> None:
    """CSV written atomically: an interrupted write never leaves half a file."""
    from cnnkit.atomic import atomic_write_text

    atomic_write_text(path, frame.to_csv(index=False))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from cnnkit.infer.evaluate import evaluate

    result = evaluate(args.model, _read(args), batch_size=args.batch_size, device=args.device,
                      tta_flip=args.tta_flip, views=args.views)
    print(result)
    if args.out:
        _write_frame(result.per_image, Path(args.out))
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
        _write_frame(top, Path(args.out))
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


def _partial_video_status(args: argparse.Namespace, ended: list[Any]) -> int:
    """0, or 3 when a video ended early (each already said so in one line) and it was not accepted.

    Under torchrun only rank 0 answers for the run (an archive's summary holds every rank's partial
    videos): another rank's 3 would read as a failed process and restart the job.
    """
    if not ended or getattr(args, "accept_partial", False) or os.environ.get("RANK", "0") != "0":
        return 0
    print(f"cnnkit {args.command}: {len(ended)} video(s) ended before their declared length (lines above); "
          f"their decoded frames were used. Exit status 3: pass --accept-partial to accept partial videos.",
          file=sys.stderr)
    return 3


COMMANDS = {"train": cmd_train, "predict": cmd_predict, "evaluate": cmd_evaluate, "summary": cmd_summary,
            "spec": cmd_spec, "check-data": cmd_check_data, "convert": cmd_convert, "cache": cmd_cache,
            "export": cmd_export, "demo": cmd_demo, "report": cmd_report,
            "merge": cmd_merge, "extract-frames": cmd_extract_frames, "suggest": cmd_suggest,
            "smooth": cmd_smooth}


def _path_error_line(exc: OSError, command: str) -> str | None:
    """One line for an error about the user's path (full disk, read-only, ...); None for anything else."""
    from cnnkit.atomic import PATH_ERRNOS

    if exc.errno not in PATH_ERRNOS or not exc.filename:
        return None
    after = (" What the run committed before is intact: fix that (free space, permissions), then run the same "
             "command with --resume.") if command == "train" else ""
    return f"cnnkit {command}: error: {exc.filename}: {exc.strerror} [{errno.errorcode.get(exc.errno or 0, '')}].{after}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s",
                        stream=sys.stderr)
    try:
        with partial_videos() as ended:
            code = COMMANDS[args.command](args)
        return _partial_video_status(args, ended) if code == 0 else code
    except CnnkitError as exc:
        print(f"cnnkit {args.command}: error: {str(exc).strip()}", file=sys.stderr)
        return 2
    except OSError as exc:
        line = _path_error_line(exc, args.command)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
