"""CPU inference: frames per second of ``predict`` by input size, ResNet-18 and EfficientNet-Lite0 (the
landmark defaults: heatmap head), on each path (fp32, bf16 autocast, channels-last, both, ONNX Runtime),
beside DeepLabCut-Live's published CPU figures at the same image sizes.

    .venv/bin/python bench/perf/inference_cpu.py --write      # docs/PERFORMANCE.md, section inference_cpu
    .venv/bin/python bench/perf/inference_cpu.py --quick      # tiny: 64x48, 8 frames, 1 round

Speed: the frames of lips-video's ``008_xaud.avi`` (320x240) decoded once into memory, then what
``predict`` does with a video's frames (``cnnkit.infer.video_predict.predict_frames``: resize to the
input, batch, network, points and likelihoods); ONNX Runtime: the same resized batches through the
graph ``cnnkit export`` writes (points only: the likelihood is cnnkit's readout, not in the graph).
The networks are untrained at each size (the speed does not depend on the weights); the paths take
turns in an order rotated every round, frames/s are medians over rounds.

Correctness: each path's predictions on lips-via's 108 ``extra`` frames against the fp32 path's, in
original pixels, from a model trained on lips-via's training split (``--checkpoint``, else a short
run made here with ``--train-epochs`` epochs): the issue's bar is 0.1 px.

DeepLabCut-Live's figures: the benchmark data of Kane et al. 2020 (eLife 9:e61909, "Real-time,
low-latency closed-loop feedback using markerless posture tracking"), published with the paper as
github.com/DeepLabCut/DLC-inferencespeed-benchmark (``_data/mouse.yml``): mean frames/s of one frame
at a time (DLC-Live's real-time use) on the mouse video's image sizes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.harness import OUT, flags  # noqa: E402
from bench.harness.machine import load_average, machine_line  # noqa: E402
from bench.harness.models import landmark_checkpoint  # noqa: E402
from bench.harness.results import markdown_table, write_section  # noqa: E402
from bench.harness.timing import round_order  # noqa: E402

LIPS_VIDEO = Path("lips-video") / "008_xaud.avi"
#: DeepLabCut-Live's mouse-video image sizes (width x height) and mean frames/s (DLC-inferencespeed-benchmark)
DLC_SIZES = ((115, 87), (229, 174), (459, 349), (649, 493), (917, 698))
DLC_LIVE = {
    "Linux, Intel Xeon 3.1 GHz": {"MobileNetV2-0.35": (61, 32, 15, 8, 4), "ResNet-50": (28, 11, 4, 2, 1)},
    "Windows, Intel Xeon Silver 2.1 GHz": {"MobileNetV2-0.35": (28, 14, 6, 3, 1), "ResNet-50": (23, 9, 3, 2, 1)},
    "macOS, Intel Core i7 3.5 GHz": {"MobileNetV2-0.35": (127, 48, 16, 9, 4), "ResNet-50": (30, 10, 3, 2, 1)},
}
MODELS = {"resnet18": {"spec": "resnet18"}, "lite0": {"spec": "efficientnet_lite0"}}
PATHS = ("fp32", "bf16", "channels_last", "bf16_cl", "onnxruntime")
BAR_PX = 0.1


def make_checkpoint(spec: str, size: tuple[int, int], folder: Path) -> Path:
    """An untrained landmark model (8 points, the default heatmap head) at ``size``, as a checkpoint."""
    return landmark_checkpoint(folder / f"{spec}_{size[0]}x{size[1]}.safetensors", spec, size)


def predictor(checkpoint: Path, path: str) -> Any:
    """The ``Predictor`` of a torch path: fp32, bf16 autocast, channels-last (network and input) or both."""
    from cnnkit.infer.predict import Predictor

    # the layout named, not predict's default (channels-last on the CPU since this benchmark chose it)
    return Predictor.from_checkpoint(checkpoint, device="cpu", precision="bf16" if path.startswith("bf16") else "fp32",
                                     channels_last=path in ("channels_last", "bf16_cl"))


class OnnxPath:
    """The graph ``cnnkit export`` writes, run by ONNX Runtime on the resized uint8 batches."""

    def __init__(self, checkpoint: Path, threads: int) -> None:
        import onnxruntime as ort

        from cnnkit.io.checkpoint import load_model
        from cnnkit.io.export import export_model

        self.meta = load_model(checkpoint)[1]
        exported = export_model(checkpoint, checkpoint.with_suffix(".onnx"))
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(str(exported.path), options, providers=["CPUExecutionProvider"])

    def points(self, batch: dict[str, Any]) -> np.ndarray:
        """Original-pixel points ``[B, K, 2]`` of one resized batch (``image``, ``scale``, ``offset``)."""
        from cnnkit.engine.scored import points_to_original
        from cnnkit.geometry import flat_to_points

        images = batch["image"].numpy().astype(np.float32) / 255.0
        flat = self.session.run(None, {self.session.get_inputs()[0].name: images})[0]
        points = torch.from_numpy(flat_to_points(flat.astype(np.float32)))
        return points_to_original(points, tuple(self.meta["size"]), batch["scale"], batch["offset"])[0].numpy()

    def predict_frames(self, frames: list[Any], batch_size: int) -> int:
        from cnnkit.infer.video_predict import frame_batches

        done = 0
        for b in frame_batches(frames, size=tuple(self.meta["size"]), grayscale=False, letterbox=False,
                               batch_size=batch_size):
            done += len(self.points(b.inputs))
        return done


def runner(checkpoint: Path, path: str, threads: int) -> Callable[[list[Any], int], int]:
    """frames, batch -> frames predicted, for one path."""
    if path == "onnxruntime":
        return OnnxPath(checkpoint, threads).predict_frames
    from cnnkit.infer.video_predict import predict_frames

    p = predictor(checkpoint, path)
    return lambda frames, batch: len(predict_frames(p, frames, batch_size=batch))


def speeds(spec: str, size: tuple[int, int], frames: list[Any], args: argparse.Namespace) -> dict[str, float]:
    """Median frames/s of every path on ``frames`` at ``size``, paths in turn (rotated), after a warm-up each."""
    checkpoint = make_checkpoint(spec, size, args.out / "models")
    runs = {path: runner(checkpoint, path, args.threads) for path in args.paths}
    for run in runs.values():
        run(frames[: args.batch], args.batch)
    fps: dict[str, list[float]] = {path: [] for path in runs}
    for r in range(args.rounds):
        for path in round_order(list(runs), r, rotate=True):
            start = time.perf_counter()
            n = runs[path](frames, args.batch)
            fps[path].append(n / (time.perf_counter() - start))
    return {path: statistics.median(v) for path, v in fps.items()}


def lips_tables(args: argparse.Namespace) -> dict[str, Any]:
    """lips-via's train and ``extra`` (here ``val``) tables, as the accuracy scripts read them."""
    from bench.harness.compare import experiment_file
    from cnnkit.experiment import load_experiment

    ns = argparse.Namespace(out=args.out, data_root=args.data_root, workers=0, device="cpu", quick=False)
    return load_experiment(experiment_file(args.out / "lips_tables", "lips", 0, ns)).tables()


def trained(name: str, tables: dict[str, Any], args: argparse.Namespace) -> Path:
    """A ``name`` model trained on lips-via's training split: ``--checkpoint``, or made here once."""
    given = dict(c.split("=", 1) for c in args.checkpoint or [])
    if name in given:
        return Path(given[name])
    out = args.out / f"check_{name}"
    if not (out / "last.safetensors").exists():
        from cnnkit import fit

        pretrained = "efficientnet_lite0" if name == "lite0" else None
        train = tables["train"].subset(np.arange(16)) if args.quick else tables["train"]
        fit(MODELS[name]["spec"], train, None, out_dir=out, epochs=args.train_epochs,
            pretrained=pretrained, quiet=True, plots=False, batch_size=4 if args.quick else 16,
            **({"size": (64, 48)} if args.quick else {}))
    return out / "last.safetensors"


def points_of(p: Any, table: Any) -> np.ndarray:
    """``[N, K, 2]`` original-pixel predictions of a torch path, in table order."""
    frame = p.frame(table, p.run(table))
    return np.stack([frame[[f"{n}_x" for n in p.landmarks]].to_numpy(),
                     frame[[f"{n}_y" for n in p.landmarks]].to_numpy()], axis=-1)


def deviations(checkpoint: Path, table: Any, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    """Per path: (mean, max) distance in original pixels of its predictions from the fp32 path's."""
    reference = predictor(checkpoint, "fp32")
    base = points_of(reference, table)
    out = {}
    for path in args.paths:
        if path == "onnxruntime":
            onnx = OnnxPath(checkpoint, args.threads)
            got = np.zeros_like(base)
            for batch in reference.loader(table):
                got[batch["index"].numpy()] = onnx.points(batch)
        else:
            got = points_of(predictor(checkpoint, path), table)
        dist = np.linalg.norm(got - base, axis=-1)
        out[path] = (float(np.nanmean(dist)), float(np.nanmax(dist)))
    return out


def speed_table(fps: dict[str, dict[str, dict[str, float]]], paths: list[str]) -> str:
    rows = []
    for model, by_size in fps.items():
        for size, f in by_size.items():
            best = max(f, key=f.__getitem__)
            rows.append([model, size, *(f"{f[p]:.1f}" for p in paths), f"{best} ({f[best] / f['fp32']:.2f}x)"])
    return markdown_table(["model", "input", *(f"{p} frames/s" for p in paths), "fastest (vs fp32)"], rows)


def dlc_table(fps: dict[str, dict[str, dict[str, float]]]) -> str:
    """Per DLC-Live image size measured here: cnnkit's fastest path per model, then DLC-Live's CPUs."""
    rows = []
    for i, (w, h) in enumerate(DLC_SIZES):
        size = f"{w}x{h}"
        mine = [f"{max(fps[m][size].values()):.1f}" if size in fps.get(m, {}) else "-" for m in MODELS]
        if any(v != "-" for v in mine):
            rows.append([size, *mine, *(f"{cpu['MobileNetV2-0.35'][i]} / {cpu['ResNet-50'][i]}"
                                        for cpu in DLC_LIVE.values())])
    return markdown_table(["image size", *(f"cnnkit {m}, fastest path" for m in MODELS),
                           *(f"DLC-Live {cpu} (MobileNetV2-0.35 / ResNet-50)" for cpu in DLC_LIVE)], rows)


def deviation_table(devs: dict[str, dict[str, tuple[float, float]]]) -> str:
    rows = [[model, path, f"{mean:.4f}", f"{worst:.4f}", "yes" if worst <= BAR_PX else "NO"]
            for model, d in devs.items() for path, (mean, worst) in d.items()]
    return markdown_table(["model", "path", "mean px from fp32", "max px from fp32", f"within {BAR_PX} px"], rows)


def main(argv: list[str] | None = None) -> int:
    p = flags.parser(__doc__, quick={"help": "64x48, 8 frames, 1 round, check models of 1 epoch on 16 images"}, write=True,
                     out={"default": OUT / "inference_cpu"}, data_root=True,
                     threads={"default": 2, "help": "torch and ONNX Runtime threads (default 2)"},
                     rounds={"default": 3, "help": "rounds of every path (default 3)"},
                     batch={"default": 32, "help": "frames per forward pass (default 32, predict's)"},
                     size={"nargs": "+", "default": list(DLC_SIZES[:4]), "help": "input sizes (default: "
                           "DeepLabCut-Live's mouse-video sizes up to 649x493)"},
                     arch={"default": list(MODELS), "choices": list(MODELS)})
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    p.add_argument("--frames", type=int, default=64, help="frames per timing (default 64)")
    p.add_argument("--checkpoint", nargs="+", metavar="MODEL=PATH", help="trained lips-via models for the check")
    p.add_argument("--train-epochs", type=int, default=8, help="epochs of the check models made here (default 8)")
    args = p.parse_args(argv)
    args.paths = ["fp32", *(x for x in args.paths if x != "fp32")]
    if args.quick:
        args.size, args.frames, args.rounds, args.batch, args.train_epochs = [(64, 48)], 8, 1, 4, 1
    args.out = args.out.resolve()
    (args.out / "models").mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    load_start = load_average()
    from cnnkit.data.video import iter_frames

    frames = list(iter_frames(args.data_root / LIPS_VIDEO, indices=range(args.frames)))
    fps = {m: {f"{w}x{h}": speeds(MODELS[m]["spec"], (w, h), frames, args) for w, h in args.size} for m in args.arch}
    tables = lips_tables(args)
    check = tables["val"].subset(np.arange(8)) if args.quick else tables["val"]
    devs = {m: deviations(trained(m, tables, args), check, args) for m in args.arch}
    (args.out / "inference_cpu.json").write_text(json.dumps({"fps": fps, "deviations": devs}, indent=1))
    text = (f"Command: `{flags.command_line(__file__)}`. {args.threads} threads (torch and ONNX Runtime), batch "
            f"{args.batch}, {len(frames)} frames of `{LIPS_VIDEO.name}` (320x240) in memory per timing, "
            f"{args.rounds} rounds with the paths in rotated order; medians. Load average (`uptime`) "
            f"{load_start:.1f} at the start and {load_average():.1f} at the end. {machine_line()}\n\n"
            f"{speed_table(fps, args.paths)}\n\n"
            "Against DeepLabCut-Live's published CPU figures (mean frames/s, one frame at a time; Kane et al. 2020, "
            "eLife 9:e61909, data in github.com/DeepLabCut/DLC-inferencespeed-benchmark `_data/mouse.yml`):\n\n"
            f"{dlc_table(fps)}\n\n"
            f"Predictions on lips-via's {len(check)} `extra` frames against the fp32 path (models trained on its "
            f"training split; original pixels):\n\n{deviation_table(devs)}\n")
    (args.out / "summary.md").write_text(text)
    print(text)
    if flags.should_write(args):
        write_section("inference_cpu", "## Inference on the CPU: frames/s by input size (issue 27)\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
