"""Peer benchmark: the same landmark job with Keras 3 on TensorFlow CPU vs cnnkit (warm cache + bf16).

    .venv/bin/python bench/perf/peer_keras.py --keras-bf16 --write    # full run, rewrites its section of docs/PERFORMANCE.md
    .venv/bin/python bench/perf/peer_keras.py --quick                 # smoke run (24 images, 1 round)

The job: ResNet-50 (no pretrained weights, global average pool, dense 40) regressing 20
landmarks normalised to the input frame, MSE, SGD (momentum 0.9, nesterov), batch 32,
input 92x64 (height 92, width 64), from the JPEGs listed in bench/out/e2e/landmarks.csv
(the harness's generated images, as bench/perf/end_to_end.py; a DataFrame on both sides).

Keras: ``keras.applications.ResNet50`` fed by ``tf.data`` (read_file -> decode_jpeg ->
resize bilinear -> normalise, ``num_parallel_calls=AUTOTUNE``, prefetch): Keras 3 dropped
``ImageDataGenerator.flow_from_dataframe``, and tf.data is its documented replacement.
TensorFlow lives ONLY in bench/.venv-peer (created here from bench/perf/peer_requirements.txt
when missing), never in cnnkit's environment. cnnkit: ``build_model('resnet50')`` trained by
the harness's timed epoch from ``TableDataset(cache=...)`` (cache built before timing), bf16 autocast,
channels-last (Keras on CPU is channels-last, NHWC, already).

Each side runs in its own fresh process (so peak RSS is its own); the processes take turns
(Keras, cnnkit, Keras, cnnkit ...) and each does one untimed warm-up epoch (graph tracing,
kernel selection) before its timed epochs. Peak RSS is VmHWM of the process plus its children.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# Standard library only up to here and in the harness modules imported at the top: the Keras child
# runs this file in bench/.venv-peer, which has TensorFlow but neither torch nor cnnkit.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.harness import OUT, ROOT, flags  # noqa: E402
from bench.harness.machine import load_average, peak_rss_mb  # noqa: E402
from bench.harness.runs import child_json  # noqa: E402
from bench.harness.timing import round_order  # noqa: E402

PEER_VENV = ROOT / "bench" / ".venv-peer"
PEER_PY = PEER_VENV / "bin" / "python"
REQUIREMENTS = Path(__file__).resolve().parent / "peer_requirements.txt"
SIZE = (64, 92)  # (width, height): the harness's training.SIZE and images.K, written out here
K = 20  # because the Keras child cannot import those modules (torch, Pillow)


# ---------------------------------------------------------------- the peer's environment


def ensure_peer_env() -> str | None:
    """Create bench/.venv-peer with TensorFlow if missing; None when ready, else the error text."""
    check = [str(PEER_PY), "-c", "import tensorflow, keras, pandas"]
    if PEER_PY.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return None
    steps = [
        ["python3", "-m", "venv", str(PEER_VENV)],
        [str(PEER_PY), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)],
    ]
    for cmd in steps:
        print("$", " ".join(cmd), flush=True)
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            return f"`{' '.join(cmd)}` failed (exit {res.returncode}): {(res.stderr or res.stdout).strip()[-800:]}"
    res = subprocess.run(check, capture_output=True, text=True)
    return None if res.returncode == 0 else f"TensorFlow does not import: {res.stderr.strip()[-800:]}"


def _peak_rss_mb() -> float:
    """VmHWM of this process plus that of its live children, MiB."""
    parent, kids = peak_rss_mb()
    return parent + kids


# ---------------------------------------------------------------- children (one per measurement)


def keras_dataset(csv: str, batch: int) -> tuple[Any, int]:
    """(tf.data pipeline of (normalised image, target) batches, rows): the Keras side's input."""
    import numpy as np
    import pandas as pd
    import tensorflow as tf

    df = pd.read_csv(csv)
    # Targets normalised to the input frame, [x0..x19, y0..y19], as cnnkit's network predicts them.
    # The generated images are all 1024x768 (a real job would read each image's size).
    xs = df[[f"p{k}_x" for k in range(K)]].to_numpy() / 1024.0
    ys = df[[f"p{k}_y" for k in range(K)]].to_numpy() / 768.0
    target = tf.constant(np.concatenate([xs, ys], axis=1), tf.float32)
    mean, std = tf.constant([0.485, 0.456, 0.406]), tf.constant([0.229, 0.224, 0.225])

    def load(path: Any, y: Any) -> tuple[Any, Any]:
        img = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        img = tf.image.resize(img, (SIZE[1], SIZE[0]), method="bilinear")
        return (img / 255.0 - mean) / std, y

    ds = (
        tf.data.Dataset.from_tensor_slices((df["image"].tolist(), target))
        .shuffle(len(df), seed=0, reshuffle_each_iteration=True)
        .map(load, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch)
        .prefetch(tf.data.AUTOTUNE)
    )
    return ds, len(df)


def keras_child(csv: str, batch: int, epochs: int, threads: int, precision: str) -> dict[str, Any]:
    """Runs in bench/.venv-peer: Keras ResNet-50 on tf.data; images/s per epoch (first untimed)."""
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    if precision == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    ds, n = keras_dataset(csv, batch)
    base = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(SIZE[1], SIZE[0], 3),
                                       pooling="avg")  # fmt: skip
    out = keras.layers.Dense(2 * K, dtype="float32")(base.output)
    model = keras.Model(base.input, out)
    model.compile(optimizer=keras.optimizers.SGD(1e-4, momentum=0.9, nesterov=True), loss="mse")
    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            times.append(time.perf_counter() - self.t)

    model.fit(ds, epochs=epochs + 1, verbose=0, callbacks=[Timer()])
    return {"ips": [n / t for t in times[1:]], "rss_mb": _peak_rss_mb(), "params": model.count_params(),
            "versions": f"TensorFlow {tf.__version__}, Keras {keras.__version__}"}  # fmt: skip


def cnnkit_child(csv: str, batch: int, epochs: int, threads: int, precision: str) -> dict[str, Any]:
    """Runs in cnnkit's .venv: resnet50 preset, warm cache, ``train_one_epoch`` (first epoch untimed)."""
    import tempfile

    import torch

    from bench.harness.images import read_table
    from bench.harness.training import epoch, train_parts
    from cnnkit.data.dataset import TableDataset
    from cnnkit.data.loader import make_loader

    torch.set_num_threads(threads)
    table = read_table(Path(csv))
    with tempfile.TemporaryDirectory(dir=OUT) as cache_dir:
        TableDataset(table, size=SIZE, cache=cache_dir)  # build the cache: the "warm" in warm cache
        ds = TableDataset(table, size=SIZE, cache=cache_dir)
        loader = make_loader(ds, batch_size=batch, shuffle=True, seed=0, workers=0, pin_memory=False)
        parts = train_parts("resnet50", precision, channels_last=True)
        ips = [epoch(parts, loader, i)["ips"] for i in range(epochs + 1)][1:]
    params = sum(p.numel() for p in parts[0].parameters())
    return {"ips": ips, "rss_mb": _peak_rss_mb(), "params": params, "versions": f"torch {torch.__version__}"}


# ---------------------------------------------------------------- orchestration


def run_child(side: str, csv: Path, args: argparse.Namespace, precision: str) -> dict[str, Any]:
    py = str(PEER_PY) if side == "keras" else sys.executable
    cmd = [py, __file__, f"--{side}-child", str(csv), "--batch", str(args.batch), "--epochs", str(args.epochs),
           "--threads", str(args.threads), "--precision", precision]  # fmt: skip
    out = child_json(cmd, env={"TF_CPP_MIN_LOG_LEVEL": "2"})
    print(f"{side}: {', '.join(f'{x:.1f}' for x in out['ips'])} img/s, peak RSS {out['rss_mb']:.0f} MiB", flush=True)
    return out


def measure(csv: Path, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Fresh processes taking turns (order flipping each round); median img/s, largest RSS per job.

    Jobs: 'keras' (``--keras-precision``), 'cnnkit' (bf16), and with ``--keras-bf16`` also
    'keras_bf16' (Keras' mixed_bfloat16 policy), a fairer match for cnnkit's bf16 path.
    """
    jobs = [("keras", "keras", args.keras_precision), ("cnnkit", "cnnkit", "bf16")]
    if args.keras_bf16 and args.keras_precision != "bf16":
        jobs.append(("keras_bf16", "keras", "bf16"))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in jobs}
    for r in range(args.rounds):
        for name, side, precision in round_order(jobs, r):
            runs[name].append(run_child(side, csv, args, precision))
    return {
        name: {"ips": statistics.median(x for run in v for x in run["ips"]), "rss_mb": max(run["rss_mb"] for run in v),
               "params": v[0]["params"], "versions": v[0]["versions"]}
        for name, v in runs.items()
    }  # fmt: skip


LABELS = {"cnnkit": "cnnkit, warm cache, bf16, channels-last", "keras_bf16": "Keras 3 / TF, tf.data, mixed_bfloat16"}


def table_text(res: dict[str, dict[str, Any]], keras_precision: str) -> str:
    """One row per job; ratios against the Keras job in ``keras_precision``."""
    from bench.harness.results import markdown_table

    k = res["keras"]
    labels = {"keras": f"Keras 3 / TF, tf.data, {keras_precision}", **LABELS}
    rows = [
        [labels[name], f"{j['params']:,}", f"{j['ips']:.1f}", f"{j['rss_mb']:.0f}", f"{j['ips'] / k['ips']:.2f}",
         f"{j['rss_mb'] / k['rss_mb']:.2f}"]
        for name, j in res.items()
    ]  # fmt: skip
    return markdown_table(["job", "params", "img/s", "peak RSS MiB", "img/s vs Keras", "RSS vs Keras"], rows)


def report(res: dict[str, dict[str, Any]], args: argparse.Namespace, n: int, cmd: str, load0: float) -> str:
    from bench.harness.machine import machine_line

    ratio = res["cnnkit"]["ips"] / res["keras"]["ips"]
    return "\n\n".join([
        "## Peer: Keras 3 on TensorFlow CPU, the same landmark job",
        f"Command: `{cmd}`. ResNet-50 regressing {K} landmarks, input 92x64 (height 92, width 64), batch "
        f"{args.batch}, {n} JPEGs (1024x768) listed in a DataFrame, {args.threads} compute thread(s) per side "
        f"(TF intra- and inter-op; torch); {args.rounds} fresh processes per side taking turns, each one "
        f"warm-up epoch then {args.epochs} timed; median img/s, largest peak RSS (VmHWM, process + children). "
        f"Load average {load0:.1f} at the start and {load_average():.1f} at the end. "
        f"{res['keras']['versions']} (in bench/.venv-peer only). " + machine_line(),
        table_text(res, args.keras_precision),
        f"cnnkit / Keras images/s: {ratio:.2f} (target >= 2: {'met' if ratio >= 2 else 'missed'}). "
        "Keras decodes every JPEG at full size each epoch (tf.data threads share the same 2 cores as the "
        "model); cnnkit reads the decoded cache and runs the model under bf16 autocast. Keras' parameter "
        "count is higher because it counts BatchNorm moving statistics as (non-trainable) parameters and its "
        "ResNet50 convolutions carry biases (redundant before BatchNorm). Keras' ResNet50 is v1 (stride on the "
        "first 1x1 conv of a block, slightly fewer FLOPs than cnnkit's v1.5, stride on the 3x3): if anything "
        "that favours Keras. Each side gets every core by default (`--threads` = the CPU count): with one "
        "compute thread per side, tf.data's own decode threads still take the second core while cnnkit's warm "
        "cache leaves it idle, which is not the same machine for both (measured idle on 2026-11-26: 1.65x "
        "with `--threads 1`). Under load from other jobs pass `--threads 1` (spin-waiting; see the model "
        "section)." + bf16_text(res),
    ])  # fmt: skip


def bf16_text(res: dict[str, dict[str, Any]]) -> str:
    if "keras_bf16" not in res:
        return ""
    kb = res["keras_bf16"]
    return (f" Against Keras under mixed_bfloat16 (the same precision as cnnkit's run), cnnkit is "
            f"{res['cnnkit']['ips'] / kb['ips']:.2f}x the images/s.")  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]] | None:
    p = flags.parser(__doc__, quick={"help": "smoke run: 24 images, batch 8, 1 round"},
                     images={"help": "images (default 500; --quick 24)"},
                     batch={"help": "batch size (default 32; --quick 8)"},
                     epochs={"help": "timed epochs per process (default 2; --quick 1)"},
                     rounds={"help": "processes per side (default 2; --quick 1)"},
                     threads={"default": os.cpu_count() or 1,
                              "help": "compute threads per side (default: every core, as a user would run either)"},
                     precision={"help": argparse.SUPPRESS}, write=True)
    p.add_argument("--keras-precision", default="fp32", choices=("fp32", "bf16"), help="Keras policy (default fp32)")
    p.add_argument("--keras-bf16", action="store_true", help="also time Keras under mixed_bfloat16")
    p.add_argument("--keras-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--cnnkit-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.batch = args.batch or (8 if args.quick else 32)
    args.epochs = args.epochs or (1 if args.quick else 2)
    args.rounds = args.rounds or (1 if args.quick else 2)
    for side, child in (("keras", keras_child), ("cnnkit", cnnkit_child)):
        csv = getattr(args, f"{side}_child")
        if csv:
            print(json.dumps(child(csv, args.batch, args.epochs, args.threads, args.precision)))
            return None
    return orchestrate(args, argv)


def orchestrate(args: argparse.Namespace, argv: list[str] | None) -> dict[str, dict[str, Any]] | None:
    from bench.harness.images import jpegs, landmark_csv
    from bench.harness.results import write_section

    load0 = load_average()
    n = args.images or (24 if args.quick else 500)
    csv = landmark_csv(jpegs(n))
    error = ensure_peer_env()
    write = flags.should_write(args)
    if error is not None:
        print(f"TensorFlow could not be installed, no peer figures: {error}")
        if write:
            write_section("peer_keras", f"## Peer: Keras 3 on TensorFlow CPU\n\nNot measured: {error}")
        return None
    res = measure(csv, args)
    print(table_text(res, args.keras_precision))
    ratio = res["cnnkit"]["ips"] / res["keras"]["ips"]
    print(f"cnnkit / Keras images/s: {ratio:.2f} (target >= 2: {'met' if ratio >= 2 else 'missed'}).{bf16_text(res)}")
    if write:
        print("updated", write_section("peer_keras", report(res, args, n, flags.command_line(__file__, argv), load0)))
    return res


if __name__ == "__main__":
    main()
