"""End-to-end benchmark: training images/s with data in memory vs cnnkit streaming cold vs warm cache.

    .venv/bin/python bench/perf/end_to_end.py --write    # full run, rewrites its section of docs/PERFORMANCE.md
    .venv/bin/python bench/perf/end_to_end.py --quick    # smoke run (24 images, resnet18, batch 8)

Data: the harness's generated 1024x768 textured JPEGs in bench/out/ (the images bench/perf/loader.py
reads) with 20 random landmarks each, listed in bench/out/e2e/landmarks.csv (bench/perf/peer_keras.py
reads the same file). Every mode trains through the harness's timed epoch
(``cnnkit.train.loop.train_one_epoch``: ``StepSetup.inputs`` + model + loss + optimizer, the code
``fit`` runs), at 92x64 (height 92, width 64), batch 32, bf16 autocast and channels-last (the
fastest combination in bench/perf/model_step.py; flags change both):

(a) memory: the decoded uint8 batches held in a list (no decoding, no loader);
(b) cold: ``TableDataset`` + ``make_loader(workers=2)`` decoding the JPEGs every epoch
    (also workers=1 by default: on 2 cores fewer processes can compete less);
(c) warm: ``TableDataset(cache=folder)`` reading the pre-decoded cache (built untimed).

The modes take turns epoch by epoch (order rotating each round) so load from other
processes hits them alike; figures are medians over rounds. A wrapper around each loader
times how long the training loop waited for the next batch, and the loader workers' CPU
seconds are read from /proc, to explain where a gap comes from.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.harness import OUT, flags  # noqa: E402
from bench.harness.images import K, jpegs, landmark_csv, read_table  # noqa: E402
from bench.harness.machine import load_average, machine_line  # noqa: E402
from bench.harness.results import markdown_table, write_section  # noqa: E402
from bench.harness.timing import THREADS_NOTE, WARMUP_ROUND, alternate  # noqa: E402
from bench.harness.training import SIZE, epoch, train_parts  # noqa: E402
from cnnkit.data.dataset import TableDataset  # noqa: E402
from cnnkit.data.loader import make_loader  # noqa: E402
from cnnkit.data.table import AnnotationTable  # noqa: E402

LOAD_AT_START = load_average()
LOAD_NOTE = " (other jobs shared the CPUs: read the ratios, not the absolute figures)"


def cold_name(workers: int) -> str:
    return f"cold, workers={workers}"


def loaders(table: AnnotationTable, batch: int, workers: list[int], cache_dir: str) -> dict[str, Any]:
    """The data paths over the same rows: memory, cold (one per worker count), warm."""
    cold = TableDataset(table, size=SIZE)
    warm = TableDataset(table, size=SIZE, cache=cache_dir)  # builds the cache here, untimed
    # The in-memory batches: what any loader yields, decoded once up front.
    memory = list(make_loader(warm, batch_size=batch, shuffle=True, seed=0, workers=0, pin_memory=False))
    return {
        "memory": memory,
        **{cold_name(w): make_loader(cold, batch_size=batch, shuffle=True, seed=0, workers=w, pin_memory=False)
           for w in workers},
        "warm": make_loader(warm, batch_size=batch, shuffle=True, seed=0, workers=0, pin_memory=False),
    }


def measure(arch: str, table: AnnotationTable, args: argparse.Namespace, cache_dir: str) -> dict[str, Any]:
    """Epochs of the modes in turn (order rotating; the warm-up: worker start, oneDNN kernels); medians per mode."""
    parts = train_parts(arch, args.precision, args.channels_last)
    data = loaders(table, args.batch, args.workers, cache_dir)

    def call(mode: str) -> Any:
        def one(r: int) -> dict[str, float]:
            res = epoch(parts, data[mode], r)
            if r < WARMUP_ROUND:  # the timed rounds
                print(f"{arch} round {r} {mode}: {res['ips']:.1f} img/s, waited {res['wait']:.1%}", flush=True)
            return res

        return one

    runs = alternate({mode: call(mode) for mode in data}, args.rounds, args.warmup, rotate=True)
    med = {m: {k: statistics.median(x[k] for x in v) for k in v[0]} for m, v in runs.items()}
    return {"arch": arch, "modes": med}


def table_text(results: list[dict[str, Any]]) -> str:
    rows = []
    for res in results:
        base = res["modes"]["memory"]["ips"]
        for mode, m in res["modes"].items():
            rows.append([res["arch"], mode, f"{m['ips']:.1f}", f"{m['ips'] / base:.3f}", f"{m['wait']:.1%}",
                         f"{m['main_cpu_ms']:.1f}", f"{m['worker_cpu_ms']:.1f}"])  # fmt: skip
    headers = ["model", "data", "img/s", "vs memory", "waiting for data", "main CPU ms/img", "worker CPU ms/img"]
    return markdown_table(headers, rows)


def targets_text(results: list[dict[str, Any]]) -> str:
    parts = []
    for res in results:
        modes = res["modes"]
        base = modes["memory"]["ips"]
        warm = modes["warm"]["ips"] / base
        colds = [
            f"{name.replace('cold, ', 'cold (')})/memory {m['ips'] / base:.3f} "
            f"(target >= 0.90: {'met' if m['ips'] / base >= 0.90 else 'missed'}; CPU-bound bound "
            f"main/(main + worker CPU) = {m['main_cpu_ms'] / (m['main_cpu_ms'] + m['worker_cpu_ms']):.3f})"
            for name, m in modes.items()
            if name.startswith("cold")
        ]
        parts.append(
            f"{res['arch']}: warm/memory {warm:.3f} (target >= 0.97: {'met' if warm >= 0.97 else 'missed'}), "
            + ", ".join(colds) + "."
        )
    return " ".join(parts)


EXPLAIN = (
    "Reading the columns: *waiting for data* is the share of the epoch the training loop spent "
    "blocked in `next(loader)`; *main CPU ms/img* and *worker CPU ms/img* are the CPU time the training "
    "process and the loader processes burned per image (utime + stime from /proc; main CPU below "
    "1000 / img/s means the process was waiting or descheduled by other jobs). With one torch thread on "
    "an otherwise idle 2-core machine the loader worker decodes on the core torch leaves free, so cold "
    "streaming costs little. When torch uses both cores (`--threads 2`) or other jobs keep them busy, "
    "CPU time is the currency: cold streaming can reach at most main CPU / (main CPU + worker CPU) of the "
    "in-memory speed (the bound printed with each cold ratio), whatever the worker count or prefetch "
    "depth; 0.90 would then need decoding at under 1/9 of a train step's CPU per image. Decoding already "
    "uses reduced-size JPEG decoding (`Image.draft`, 1/8 scale for 1024x768 -> 92x64), the cheapest "
    "Pillow offers; the fast path there is the decoded cache (`cache=`), with which the cold path is only "
    "the cache build. The warm cache reads rows with one `pread` each in the main process (no workers, "
    "no IPC), so it costs only the copy and the collate. See the profile below the table for both cases."
)


def report(results: list[dict[str, Any]], args: argparse.Namespace, n: int, cmd: str) -> str:
    return "\n\n".join([
        "## End to end: training images/s, data in memory vs streaming vs warm cache",
        f"Command: `{cmd}`. {n} generated 1024x768 JPEGs (quality 90) with {K} landmarks each, input "
        f"92x64 (height 92, width 64), batch {args.batch}, {args.precision}"
        f"{', channels-last' if args.channels_last else ''}, SGD; {torch.get_num_threads()} torch threads; "
        f"cold = `make_loader(workers=N)` decoding every epoch; warm = `TableDataset(cache=...)` "
        f"with workers=0. {args.warmup} warm-up epoch per mode, then {args.rounds} rounds of one epoch per "
        f"mode (order rotating), medians. Load average {LOAD_AT_START:.1f} at the start and "
        f"{load_average():.1f} at the end{LOAD_NOTE if LOAD_AT_START > 1.5 else ''}. " + machine_line(),
        table_text(results),
        targets_text(results),
        EXPLAIN,
        THREADS_NOTE,
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = flags.parser(__doc__, quick={"help": "smoke run: 24 images, resnet18, batch 8"},
                     images={"help": "images (default 500; --quick 24)"},
                     arch={"help": "models (default resnet18 resnet50)"},
                     batch={"help": "batch size (default 32; --quick 8)"},
                     rounds={"help": "epochs per mode, timed (default 5; --quick 1)"},
                     workers={"type": int, "nargs": "+", "default": None,
                              "help": "loader worker counts for cold streaming, one mode each (default 2 1; --quick 2)"},
                     precision=True, threads={"help": "torch threads (default 1: see THREADS_NOTE)"}, write=True)
    p.add_argument("--warmup", type=int, default=None, help="untimed epochs per mode (default 1; --quick 0)")
    p.add_argument("--contiguous", dest="channels_last", action="store_false",
                   help="contiguous model and inputs (default channels-last, the fastest in model_step.py)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads or 1)
    n = args.images or (24 if args.quick else 500)
    args.batch = args.batch or (8 if args.quick else 32)
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.workers = args.workers or ([2] if args.quick else [2, 1])
    args.warmup = (0 if args.quick else 1) if args.warmup is None else min(args.warmup, 1)
    table = read_table(landmark_csv(jpegs(n)))
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OUT) as cache_dir:
        arches = args.arch or (["resnet18"] if args.quick else ["resnet18", "resnet50"])
        results = [measure(arch, table, args, cache_dir) for arch in arches]
    print(table_text(results))
    print(targets_text(results))
    if flags.should_write(args):
        print("updated", write_section("end_to_end", report(results, args, n, flags.command_line(__file__, argv))))
    return results


if __name__ == "__main__":
    main()
