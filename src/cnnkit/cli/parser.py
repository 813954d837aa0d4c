"""The arguments of every ``cnnkit`` command (``build_parser``), with an example for each."""

from __future__ import annotations

import argparse
from typing import Any

from cnnkit import __version__
from cnnkit.engine.inference import INFERENCE_BATCH, VIEWS
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
    p.add_argument("--smooth", nargs="?", const="auto", choices=("auto", "median", "savgol", "eks"),
                   help="videos: also write <out>_smoothed.csv (the raw CSV is kept): an ensemble's predictions "
                   "through the ensemble Kalman smoother, one model's through a median filter of 5 frames (auto, "
                   "the default); or name the method (cnnkit smooth has the options; docs/video.md#smoothing)")
    p.add_argument("--via", help="also write a VIA 2 project to review and correct the predictions")
    p.add_argument("--labeled-video", metavar="PATH", help="videos: also write each video with the points "
                   "drawn (H.264 .mp4; with --smooth the smoothed points); a folder when several videos are given")
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


