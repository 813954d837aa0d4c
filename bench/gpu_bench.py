"""GPU benchmark (run through bench/gpu.sh): ResNet-50 at 224x224, bf16, channels-last, on one NVIDIA GPU.

    bench/gpu.sh                                       # creates/uses an env with CUDA torch, then runs this
    python bench/gpu_bench.py                          # with a CUDA torch and cnnkit importable
    python bench/gpu_bench.py --dry-run                # the whole path on the CPU, tiny (a test)

Two data paths feed the same ``train_one_epoch`` (``StepSetup.inputs`` + model + loss +
SGD, the code ``fit`` runs), epoch by epoch in turn so clock and thermal drift hit both:

* synthetic: uint8 batches already on the GPU (no loader, no copies): the compute ceiling;
* cache: ``TableDataset(cache=...)`` + ``make_loader(workers=W, pin_memory=True)`` reading a
  warm decoded cache (built before timing, from generated 1024x768 JPEGs).

Reports images/s of both, their ratio, and GPU utilisation (``nvidia-smi`` sampled every
200 ms in the background, else ``torch.cuda.utilization()``) during each path's epochs.
Prints a table and writes it to bench/out/gpu.md (and, with ``--write-doc``, to the
``gpu`` section of docs/PERFORMANCE.md). Sized so one run fits in 8 minutes.
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
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, markdown_table, write_section  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
K = 20


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


def _make_one(args: tuple[int, str]) -> None:
    from loader import make_image

    make_image(args[0]).save(args[1], "JPEG", quality=90)


def jpegs(n: int, procs: int) -> list[Path]:
    """bench/loader.py's 1024x768 JPEGs (same names), generated in parallel where missing."""
    OUT.mkdir(parents=True, exist_ok=True)
    paths = [OUT / f"img{i:04d}.jpg" for i in range(n)]
    todo = [(i, str(p)) for i, p in enumerate(paths) if not p.exists()]
    if todo:
        with Pool(max(1, procs)) as pool:
            pool.map(_make_one, todo)
    return paths


def table_for(paths: list[Path], rows: int) -> Any:
    """``rows`` rows cycling over the images, 20 random landmarks each."""
    import numpy as np
    import pandas as pd

    from cnnkit.data.table import AnnotationTable

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"image": [str(paths[i % len(paths)]) for i in range(rows)]})
    for k in range(K):
        df[f"p{k}_x"], df[f"p{k}_y"] = rng.uniform(50, 974, rows), rng.uniform(50, 718, rows)
    return AnnotationTable(df, landmarks=tuple(f"p{k}" for k in range(K)), source="generated")


def train_parts(arch: str, size: tuple[int, int], device: torch.device, precision: str) -> tuple[Any, ...]:
    from cnnkit.data.augment import Augment
    from cnnkit.engine import tensors as T
    from cnnkit.engine.step import StepSetup
    from cnnkit.model.builder import build_model
    from cnnkit.train.losses import make_loss

    torch.manual_seed(0)
    cl = device.type == "cuda"  # channels-last pays on tensor cores; the CPU dry run keeps it simple
    model = build_model(arch, size=size, outputs=2 * K).to(device)
    if cl:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    norm = T.default_normalisation(3)
    setup = StepSetup(task="landmarks", size=size, mean=tuple(norm["mean"]), std=tuple(norm["std"]), device=device,
                      precision=precision, channels_last=cl, augment=Augment())  # fmt: skip
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return model, setup, opt, sched, make_loss("landmarks", "mse")


def run_epoch(parts: tuple[Any, ...], data: Any, epoch: int) -> float:
    """Images/s of one epoch through cnnkit's ``train_one_epoch`` (its per-step ``loss.item()``
    synchronises with the GPU, so the figure is real work, not queued kernels)."""
    from cnnkit.train.loop import train_one_epoch

    model, setup, opt, sched, loss = parts
    sampler = getattr(data, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)  # type: ignore[union-attr]
    gen = torch.Generator().manual_seed(epoch)
    return float(train_one_epoch(model, data, setup, opt, sched, loss, generator=gen)["images_per_s"])


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
    size = (args.size, args.size)
    table = table_for(jpegs(args.images, args.workers or 1), args.rows)
    loader, built = cache_loader(table, size, args.batch, args.workers, folder)
    data = {"synthetic": synthetic_batches(len(loader), args.batch, size, device), "cache": loader}
    parts = train_parts(args.arch, size, device, args.precision)
    sampler = UtilSampler(device)
    sampler.start()
    ips: dict[str, list[float]] = {k: [] for k in data}
    util: dict[str, list[float]] = {k: [] for k in data}
    try:
        for r in range(-1, args.rounds):  # round -1: warm-up (cuDNN autotune, worker start)
            for name in (list(data) if r % 2 else list(data)[::-1]):
                mark = sampler.mark()
                value = run_epoch(parts, data[name], r + 1)
                if r >= 0:
                    ips[name].append(value)
                    u = sampler.mean_since(mark)
                    if u is not None:
                        util[name].append(u)
                print(f"round {r} {name}: {value:.0f} img/s", flush=True)
    finally:
        sampler.stop()
    return {"ips": {k: statistics.median(v) for k, v in ips.items()},
            "util": {k: statistics.fmean(v) if v else None for k, v in util.items()},
            "util_source": sampler.source, "cache_build_s": built}  # fmt: skip


def report(res: dict[str, Any], args: argparse.Namespace, device: torch.device, cmd: str) -> str:
    gpu = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if gpu else "CPU (dry run)"
    syn = res["ips"]["synthetic"]
    rows = [
        [path, f"{res['ips'][path]:.0f}", f"{res['ips'][path] / syn:.3f}",
         "n/a" if res["util"][path] is None else f"{res['util'][path]:.0f}%"]
        for path in ("synthetic", "cache")
    ]  # fmt: skip
    return "\n\n".join([
        f"## GPU: {args.arch} at {args.size}x{args.size}, {args.precision}{', channels-last' if gpu else ''}, on {name}",
        f"Command: `{cmd}`. Batch {args.batch}, {args.rows} rows over {args.images} generated 1024x768 JPEGs, "
        f"loader workers {args.workers}{', pinned memory' if gpu else ''}; 1 warm-up round, then {args.rounds} rounds of one "
        f"epoch per path (order alternating), medians. Cache build (untimed): {res['cache_build_s']:.1f} s. "
        f"GPU utilisation from {res['util_source']}. torch {torch.__version__}, CUDA {torch.version.cuda}. "
        + machine_line(),
        markdown_table(["data", "img/s", "vs synthetic", "GPU utilisation"], rows),
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="run on the CPU, tiny sizes (tests the script)")
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--size", type=int, default=224, help="square input side (default 224)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rows", type=int, default=6400, help="table rows per epoch (default 6400)")
    p.add_argument("--images", type=int, default=500, help="distinct JPEGs the rows cycle over (default 500)")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="loader workers")
    p.add_argument("--rounds", type=int, default=5, help="timed epochs per path (default 5)")
    p.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    p.add_argument("--out", type=Path, default=OUT / "gpu.md", help="where the table is written")
    p.add_argument("--write-doc", action="store_true", help="also rewrite the gpu section of docs/PERFORMANCE.md")
    args = p.parse_args(argv)
    if args.dry_run:
        args.arch, args.size, args.batch, args.rows, args.images = "resnet18", 64, 4, 8, 8
        args.workers, args.rounds, args.precision = 0, 1, "fp32"
        device = torch.device("cpu")
        torch.set_num_threads(1)
    elif not torch.cuda.is_available():
        print(f"gpu_bench: no CUDA GPU visible to torch {torch.__version__} (torch.cuda.is_available() is False). "
              "Run bench/gpu.sh on a machine with an NVIDIA GPU and driver, or pass --dry-run to test the "
              "script on the CPU.", file=sys.stderr)  # fmt: skip
        return 2
    else:
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OUT) as folder:
        res = measure(args, device, folder)
    cmd = "bench/gpu.sh " + " ".join(sys.argv[1:] if argv is None else argv)
    text = report(res, args, device, cmd.strip())
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    if args.write_doc and not args.dry_run:
        print("updated", write_section("gpu", text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
