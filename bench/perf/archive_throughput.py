"""Archive prediction throughput: frames/s per process with 1, 2 and 4 processes under torchrun.

    .venv/bin/python bench/perf/archive_throughput.py --quick    # smoke run: 4 short videos, 1 and 2 processes
    .venv/bin/python bench/perf/archive_throughput.py --write    # 8 videos x 150 frames, 1/2/4 processes; rewrites the
                                                            # table in docs/video.md ("Archive") and its figure

Each run is ``torchrun --standalone --nproc-per-node P -m cnnkit -q predict MODEL VIDEOS/ --out OUT/ --device D``
on a fresh ``--out`` (nothing skipped), with ``OMP_NUM_THREADS`` = cores / P (at least 1) so the
processes share the machine's cores instead of each taking them all. From ``archive_summary.csv``:
a process's frames/s = the frames it predicted / the seconds it was busy (its videos' times,
decoding overlapped with the model); the total = all frames / the slowest process's busy time
(process start-up, ~seconds, left out). The load average before and after each run is recorded:
on a shared machine other work takes cores from the processes measured.

Model: the ResNet-18 landmark default (heatmap head, width 128, stride 4) at 160x120 with 8
landmarks, untrained (speed does not depend on the weights), as ``bench/video_predict.py``.
Videos: generated H.264, 320x240 at 30 frames/s, a moving texture.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.harness import flags  # noqa: E402
from bench.harness.models import landmark_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "video.md"
FIGURE = ROOT / "docs" / "figures" / "archive_throughput.png"
SIZE = (160, 120)
HEATMAP_HEAD = {"type": "heatmap", "width": 128, "stride": 4}


def make_checkpoint(folder: Path) -> Path:
    return landmark_checkpoint(folder / "resnet18_heatmap.safetensors", "resnet18", SIZE, head=HEATMAP_HEAD)


def make_videos(folder: Path, count: int, frames: int) -> Path:
    """``count`` H.264 videos of ``frames`` frames in two sub-folders (an archive's nesting)."""
    import av

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (240, 640, 3), dtype=np.uint8)
    for v in range(count):
        path = folder / f"cam{v % 2}" / f"session{v:02d}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=30)
            stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
            for i in range(frames):
                shift = (i * 3 + v * 17) % 320
                out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(base[:, shift:shift + 320]),
                                                                 format="rgb24")))
            out.mux(stream.encode())
    return folder


def run(procs: int, model: Path, videos: Path, out: Path, device: str) -> dict[str, float]:
    """One torchrun job; per-process and total frames/s from its summary, and the load around it."""
    torchrun = Path(sys.executable).with_name("torchrun")
    threads = max(1, (os.cpu_count() or 1) // procs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    cmd = [str(torchrun), "--standalone", f"--nproc-per-node={procs}", "-m", "cnnkit", "-q", "predict", str(model),
           str(videos), "--out", str(out), "--device", device]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    wall = time.perf_counter() - start
    summary = pd.read_csv(out / "archive_summary.csv")
    per = summary.groupby("rank").agg(frames=("frames", "sum"), busy=("seconds", "sum"))
    rates = per["frames"] / per["busy"]
    return {"processes": procs, "threads": threads, "frames": int(per["frames"].sum()),
            "per_process": float(rates.mean()), "per_process_min": float(rates.min()),
            "total": float(per["frames"].sum() / per["busy"].max()), "wall_s": wall,
            "load_before": load_before, "load_after": os.getloadavg()[0]}


def plot(results: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    procs = [str(int(r["processes"])) for r in results]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.bar(procs, [r["per_process"] for r in results], color="#4C72B0", label="per process")
    ax.plot(procs, [r["total"] for r in results], "o-", color="#DD8452", label="all processes")
    ax.set_xlabel("processes (torchrun --nproc-per-node)")
    ax.set_ylabel("frames/s")
    ax.set_title("predict over a video archive (CPU)", fontsize=10)
    ax.legend(frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def table(results: list[dict[str, float]], command: str) -> str:
    rows = ["| processes | threads each | frames | frames/s per process (slowest) | frames/s, all | load average "
            "before / after |", "|---|---|---|---|---|---|"]
    rows += [f"| {int(r['processes'])} | {int(r['threads'])} | {int(r['frames'])} | {r['per_process']:.1f} "
             f"({r['per_process_min']:.1f}) | {r['total']:.1f} | {r['load_before']:.1f} / {r['load_after']:.1f} |"
             for r in results]
    cpu = platform.processor() or platform.machine()
    return "\n".join([f"`{command}` ({time.strftime('%Y-%m-%d')}; {os.cpu_count()} CPUs, {cpu}; torch "
                      f"{torch.__version__}).", "", *rows, "", f"![frames/s per process](figures/{FIGURE.name})"])


def write_section(body: str) -> None:
    start, end = "<!-- bench:archive -->", "<!-- /bench:archive -->"
    text = DOC.read_text(encoding="utf-8")
    if start not in text:
        raise SystemExit(f"{DOC} has no {start} ... {end} section to rewrite")
    block = f"{start}\n{body.strip()}\n{end}"
    DOC.write_text(re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.DOTALL),
                   encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = flags.parser(__doc__, quick={"help": "4 videos x 16 frames, 1 and 2 processes"}, device=True,
                          write={"help": "rewrite docs/video.md's table and the figure"})
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--procs", default="1,2,4", help="process counts, comma-separated")
    args = parser.parse_args(argv)
    count, frames = (4, 16) if args.quick else (args.videos, args.frames)
    procs = [1, 2] if args.quick else [int(p) for p in args.procs.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model, videos = make_checkpoint(folder), make_videos(folder / "videos", count, frames)
        results = [run(p, model, videos, folder / f"out{p}", args.device) for p in procs]
    for r in results:
        print({k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()})
    if args.write and not args.quick:
        plot(results, FIGURE)
        write_section(table(results, f"bench/perf/archive_throughput.py --videos {count} --frames {frames} "
                                     f"--procs {args.procs} --device {args.device} --write"))
        print(f"wrote {DOC} (Archive) and {FIGURE}")


if __name__ == "__main__":
    main()
