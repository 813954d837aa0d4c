"""GPU benchmark (run through bench/gpu.sh): ResNet-50 at 224x224, bf16, channels-last, on one NVIDIA GPU.

    bench/gpu.sh                                       # creates/uses an env with CUDA torch, then runs this
    python bench/perf/gpu_bench.py                     # with a CUDA torch and cnnkit importable
    python bench/perf/gpu_bench.py --quick             # the whole path on the CPU, tiny (a test)

Two data paths feed the harness's timed epoch (``train_one_epoch``: ``StepSetup.inputs`` + model +
loss + SGD, the code ``fit`` runs), epoch by epoch in turn so clock and thermal drift hit both:

* synthetic: uint8 batches already on the GPU (no loader, no copies): the compute ceiling;
* cache: ``TableDataset(cache=...)`` + ``make_loader(workers=W, pin_memory=True)`` reading a
  warm decoded cache (built before timing, from generated 1024x768 JPEGs).

Reports images/s of both, their ratio, and GPU utilisation (``nvidia-smi`` sampled every
200 ms in the background, else ``torch.cuda.utilization()``) during each path's epochs.
Prints a table and writes it to OUT/gpu.md (``--out``, default bench/out; and, with ``--write``,
to the ``gpu`` section of docs/PERFORMANCE.md). Sized so one run fits in 8 minutes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.harness import OUT, ROOT, flags  # noqa: E402
from bench.harness.images import K, jpegs, landmark_table  # noqa: E402
from bench.harness.machine import machine_line  # noqa: E402
from bench.harness.results import markdown_table, write_section  # noqa: E402
from bench.harness.timing import WARMUP_ROUND, alternate  # noqa: E402
from bench.harness.training import epoch, train_parts  # noqa: E402


class UtilSampler:
    """GPU utilisation samples (percent) from a background ``nvidia-smi`` loop or torch's NVML call."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.samples, self.source = device, [], "none"  # type: ignore[var-annotated]
        self._stop = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.device.type != "cuda":
            return
        if shutil.which("nvidia-smi"):
            index = str(self.device.index or 0)
            cmd = ["nvidia-smi", "-i", index, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200"]
            self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            self.source, target = "nvidia-smi", self._read_smi
        else:
            self.source, target = "torch.cuda.utilization", self._poll_torch
        self._thread = threading.Thread(target=target, daemon=True)
        self._thread.start()

    def _read_smi(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.strip().isdigit():
                self.samples.append(float(line))

    def _poll_torch(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.samples.append(float(torch.cuda.utilization(self.device)))
            except Exception:  # no pynvml: say so in the table rather than fail the run
                self.source = "unavailable (no nvidia-smi, no pynvml)"
                return

    def mark(self) -> int:
        return len(self.samples)

    def mean_since(self, start: int) -> float | None:
        window = self.samples[start:]
        return statistics.fmean(window) if window else None

    def stop(self) -> None:
        self._stop.set()
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=5)


def synthetic_batches(n_batches: int, batch: int, size: tuple[int, int], device: torch.device) -> list[dict]:
    """uint8 image batches and landmark points already on the device: no loader cost at all."""
    gen = torch.Generator().manual_seed(0)
    w, h = size
    out = []
    for _ in range(n_batches):
        image = torch.randint(0, 256, (batch, 3, h, w), generator=gen, dtype=torch.uint8)
        points = torch.rand(batch, K, 2, generator=gen) * torch.tensor([float(w), float(h)])
        out.append({"image": image.to(device), "points": points.to(device)})
    return out


def cache_loader(table: Any, size: tuple[int, int], batch: int, workers: int, folder: str) -> tuple[Any, float]:
    """(loader over the warm cache, seconds the cache build took)."""
    from cnnkit.data.cache import build_cache
    from cnnkit.data.dataset import TableDataset
    from cnnkit.data.loader import make_loader

    t = time.perf_counter()
    build_cache(table, size=size, folder=folder, workers=workers, progress=False)
    built = time.perf_counter() - t
    ds = TableDataset(table, size=size, cache=folder)  # fresh: a stat per image
    pin = torch.cuda.is_available()
    return make_loader(ds, batch_size=batch, shuffle=True, seed=0, workers=workers, pin_memory=pin), built


def measure(args: argparse.Namespace, device: torch.device, folder: str) -> dict[str, Any]:
    paths = jpegs(args.images, args.workers or 1)
    table = landmark_table([paths[i % len(paths)] for i in range(args.rows)])  # rows cycle over the images
    loader, built = cache_loader(table, args.size, args.batch, args.workers, folder)
    data = {"cache": loader, "synthetic": synthetic_batches(len(loader), args.batch, args.size, device)}
    # channels-last pays on tensor cores; the CPU quick run keeps it simple
    parts = train_parts(args.arch, args.precision, device.type == "cuda", size=args.size, device=device)
    sampler = UtilSampler(device)

    def call(name: str) -> Any:
        def one(r: int) -> tuple[float, float | None]:
            mark = sampler.mark()
            ips = epoch(parts, data[name], r)["ips"]  # its per-step loss.item() waits for the GPU
            print(f"{'warm-up' if r >= WARMUP_ROUND else f'round {r}'} {name}: {ips:.0f} img/s", flush=True)
            return ips, sampler.mean_since(mark)

        return one

    sampler.start()
    try:  # one warm-up round: cuDNN autotune, worker start
        runs = alternate({name: call(name) for name in data}, args.rounds, warmup=1)
    finally:
        sampler.stop()
    util = {k: [u for _, u in v if u is not None] for k, v in runs.items()}
    return {"ips": {k: statistics.median(ips for ips, _ in v) for k, v in runs.items()},
            "util": {k: statistics.fmean(v) if v else None for k, v in util.items()},
            "util_source": sampler.source, "cache_build_s": built}  # fmt: skip


def report(res: dict[str, Any], args: argparse.Namespace, device: torch.device, cmd: str) -> str:
    gpu = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if gpu else "CPU (--quick run)"
    syn = res["ips"]["synthetic"]
    rows = [
        [path, f"{res['ips'][path]:.0f}", f"{res['ips'][path] / syn:.3f}",
         "n/a" if res["util"][path] is None else f"{res['util'][path]:.0f}%"]
        for path in ("synthetic", "cache")
    ]  # fmt: skip
    return "\n\n".join([
        f"## GPU: {args.arch} at {args.size[0]}x{args.size[1]}, {args.precision}{', channels-last' if gpu else ''}, on {name}",
        f"Command: `{cmd}`. Batch {args.batch}, {args.rows} rows over {args.images} generated 1024x768 JPEGs, "
        f"loader workers {args.workers}{', pinned memory' if gpu else ''}; 1 warm-up round, then {args.rounds} rounds of one "
        f"epoch per path (order alternating), medians. Cache build (untimed): {res['cache_build_s']:.1f} s. "
        f"GPU utilisation from {res['util_source']}. torch {torch.__version__}, CUDA {torch.version.cuda}. "
        + machine_line(),
        markdown_table(["data", "img/s", "vs synthetic", "GPU utilisation"], rows),
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = flags.parser(__doc__, quick={"help": "run on the CPU, tiny sizes (tests the script)"},
                     arch={"nargs": None, "default": "resnet50", "help": "model (default resnet50)"},
                     size={"default": (224, 224), "help": "input size WIDTHxHEIGHT (default 224x224)"},
                     batch={"default": 128, "help": "batch size (default 128)"},
                     images={"default": 500, "help": "distinct JPEGs the rows cycle over (default 500)"},
                     workers={"default": min(8, os.cpu_count() or 1), "help": "loader workers (default 8)"},
                     rounds={"default": 5, "help": "timed epochs per path (default 5)"}, precision=True,
                     out={"default": OUT, "help": "folder gpu.md is written to (default bench/out)"},
                     write={"help": "also rewrite the gpu section of docs/PERFORMANCE.md"})
    p.add_argument("--rows", type=int, default=6400, help="table rows per epoch (default 6400)")
    args = p.parse_args(argv)
    if args.quick:
        args.arch, args.size, args.batch, args.rows, args.images = "resnet18", (64, 64), 4, 8, 8
        args.workers, args.rounds, args.precision = 0, 1, "fp32"
        device = torch.device("cpu")
        torch.set_num_threads(1)
    elif not torch.cuda.is_available():
        print(f"gpu_bench: no CUDA GPU visible to torch {torch.__version__} (torch.cuda.is_available() is False). "
              "Run bench/gpu.sh on a machine with an NVIDIA GPU and driver, or pass --quick to test the "
              "script on the CPU.", file=sys.stderr)  # fmt: skip
        return 2
    else:
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OUT) as folder:
        res = measure(args, device, folder)
    text = report(res, args, device, flags.command_line(ROOT / "bench" / "gpu.sh", argv, prefix=""))
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.md").write_text(text + "\n", encoding="utf-8")
    print(f"wrote {args.out / 'gpu.md'}")
    if flags.should_write(args):
        print("updated", write_section("gpu", text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
