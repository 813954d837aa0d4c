"""Checkpoint overhead: a ``fit`` epoch on the warm cache, checkpoints included, vs the same epoch in memory.

    .venv/bin/python bench/perf/checkpoint_overhead.py --write    # full run, rewrites its section of docs/PERFORMANCE.md
    .venv/bin/python bench/perf/checkpoint_overhead.py --quick    # smoke run (32 images, 3 epochs)

The issue's setting: ResNet-18 with the direct (``gap``) head, 92x64 (height 92, width 64),
batch 32, 1,024 images (the harness's generated JPEGs), no augmentation, Adam at a
constant rate (fit's defaults), fp32, 2 torch threads, CPU. Modes, interleaved round by round
so load from other processes hits them alike:

(a) memory: the decoded batches held in a list, ``train_one_epoch`` with the model,
    optimizer and schedule ``fit`` builds; no loader, no checkpoint;
(b) fit: ``cnnkit.fit(..., cache=<warm cache>)``: the real epoch loop, a commit every epoch
    (snapshot to CPU memory on the training thread, files written by the background writer);
(c) fit, checkpoint_every=E: the same, committing only after the last epoch: what the loop
    costs without the checkpoints.

A fit epoch "including its checkpoints" is the time between two consecutive epoch-end log
lines (the snapshot of one commit and the background write of the previous one fall inside
it); the first epoch (start-up, mean-shape pass) is left out. The last interval also waits
for the final commit and ``last.safetensors`` to be on disk; it is reported separately.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import cnnkit  # noqa: E402
from bench.harness import OUT, flags  # noqa: E402
from bench.harness.images import jpegs, landmark_csv, read_table  # noqa: E402
from bench.harness.machine import load_average, machine_line  # noqa: E402
from bench.harness.results import markdown_table, write_section  # noqa: E402
from bench.harness.timing import round_order  # noqa: E402
from cnnkit.config import DataConfig, TrainConfig  # noqa: E402
from cnnkit.data.augment import Augment  # noqa: E402
from cnnkit.data.dataset import TableDataset  # noqa: E402
from cnnkit.data.loader import make_loader  # noqa: E402
from cnnkit.engine import tensors as T  # noqa: E402
from cnnkit.engine.step import StepSetup  # noqa: E402
from cnnkit.train.loop import train_one_epoch  # noqa: E402
from cnnkit.train.optim import make_optimizer, make_scheduler  # noqa: E402
from cnnkit.train.parts import build_for_table, make_loss_for  # noqa: E402

SIZE = (64, 92)  # (width, height)
HEAD = "gap"


class EpochClock(logging.Handler):
    """Records the moment of every ``epoch N/E`` line fit logs (the end of epoch N's training)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.stamps: list[tuple[float, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("epoch "):
            self.stamps.append(now())


def now() -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process: every thread, the checkpoint writer's too)."""
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float], end: tuple[float, float]) -> tuple[float, float]:
    return end[0] - start[0], end[1] - start[1]


def memory_epoch(table: Any, cache: str, batch: int, seed: int) -> tuple[float, float]:
    """(Wall, CPU) seconds of one epoch over in-memory batches, with fit's model, optimizer and schedule (fp32)."""
    cfg = TrainConfig(batch_size=batch, device="cpu", seed=0)
    torch.manual_seed(0)
    model, _ = build_for_table("resnet18", table, DataConfig(size=SIZE), HEAD)
    norm = T.default_normalisation(3)
    setup = StepSetup(task="landmarks", size=SIZE, mean=tuple(norm["mean"]), std=tuple(norm["std"]),
                      device=torch.device("cpu"), precision="fp32", channels_last=False, augment=Augment())
    batches = list(make_loader(TableDataset(table, size=SIZE, cache=cache), batch_size=batch, shuffle=True,
                               seed=seed, workers=0, pin_memory=False))
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg, len(batches), cfg.epochs_for(len(batches)))
    start = now()
    train_one_epoch(model, batches, setup, opt, sched, make_loss_for(table, cfg, model),
                    generator=torch.Generator().manual_seed(seed))
    return since(start, now())


def fit_epochs(table: Any, cache: str, batch: int, epochs: int, every: int, out: Path) -> dict[str, Any]:
    """Epoch intervals of a real ``fit`` (see the module docstring) and the run folder's sizes."""
    clock = EpochClock()
    logger = logging.getLogger("cnnkit")
    level = logger.level
    logger.addHandler(clock)
    logger.setLevel(logging.INFO)
    try:
        cnnkit.fit("resnet18", table, None, out_dir=out, head=HEAD, augment=None, cache=cache, size=SIZE,
                   batch_size=batch, epochs=epochs, device="cpu", plots=False, quiet=False, checkpoint_every=every)
        done = now()
    finally:
        logger.removeHandler(clock)
        logger.setLevel(level)
    steps = [since(a, b) for a, b in zip(clock.stamps, clock.stamps[1:], strict=False)]
    return {"steady": steps[:-1] or steps, "last": since(clock.stamps[-2], done),
            "mb": [(out / name).stat().st_size / 1e6 for name in ("last.state.pt", "best.safetensors")]}


def _stepped_model() -> tuple[Any, Any]:
    """(ResNet-18 with the gap head, its Adam after one step: the moments exist, as after any epoch)."""
    model, _ = build_for_table("resnet18", read_table(landmark_csv(jpegs(4), OUT / "checkpoint_costs")),
                               DataConfig(size=SIZE), HEAD)
    opt = make_optimizer(model, TrainConfig())
    model(torch.randn(2, 3, SIZE[1], SIZE[0])).sum().backward()
    opt.step()
    return model, opt


def commit_costs(reps: int = 5) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of one ResNet-18 commit's pieces, timed alone (robust to other jobs).

    ``before``: what each epoch did on the training thread until now (last + best + state, the
    state serialised, read back to check it, then written). ``snapshot``: what the training thread
    does now. ``background``: the writer thread's work (best + state), CPU of that thread only.
    """
    import io

    from cnnkit.atomic import atomic_write_bytes
    from cnnkit.io.checkpoint import capture_rng, snapshot_model, snapshot_state, write_model, write_state

    model, opt = _stepped_model()
    found: dict[str, list[tuple[float, float]]] = {"before": [], "snapshot": [], "background": []}
    staging: dict[str, Any] = {}  # reused from commit to commit, as EpochRunner does
    with tempfile.TemporaryDirectory(dir=OUT) as folder:
        out = Path(folder)
        for _ in range(reps):
            start = now()
            kept = snapshot_model(model, {"task": "landmarks"}, staging=staging)
            record = snapshot_state(optimizer=opt, epoch=1, rng=capture_rng(), extra={"history": []}, staging=staging)
            record["extra"]["model"] = kept.tensors
            found["snapshot"].append(since(start, now()))
            thread_start = (time.perf_counter(), time.thread_time())
            write_model(out / "best.safetensors", kept)
            write_state(out / "last.state.pt", record)
            found["background"].append((time.perf_counter() - thread_start[0], time.thread_time() - thread_start[1]))
            start = now()
            for name in ("last.safetensors", "best.safetensors"):
                write_model(out / name, snapshot_model(model, {"task": "landmarks"}))
            buffer = io.BytesIO()
            torch.save(snapshot_state(optimizer=opt, epoch=1, rng=capture_rng(),
                                      extra={"history": [], "model": model.state_dict()}), buffer)
            torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
            atomic_write_bytes(out / "old.state.pt", buffer.getvalue())
            found["before"].append(since(start, now()))
    return {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)) for k, v in found.items()}


MODE_ORDER = ("memory", "fit", "fit_nockpt")


def measure(args: argparse.Namespace, table: Any, cache: str) -> dict[str, list[float]]:
    memory_epoch(table, cache, args.batch, 99)  # warm-up: oneDNN kernels, page cache
    times: dict[str, Any] = {"memory": [], "fit": [], "fit_final": [], "fit_nockpt": [], "mb": []}
    for r in range(args.rounds):
        # ABBA: even rounds run memory, fit, fit without commits; odd rounds the reverse, so a
        # drift in the machine's speed within a round (shared host) hits every mode alike.
        for mode in round_order(MODE_ORDER, r):
            if mode == "memory":
                times["memory"] += [memory_epoch(table, cache, args.batch, r) for _ in range(args.epochs - 2)]
                continue
            every = 1 if mode == "fit" else args.epochs
            with tempfile.TemporaryDirectory(dir=OUT) as out:
                res = fit_epochs(table, cache, args.batch, args.epochs, every, Path(out) / "run")
            times[mode] += res["steady"]
            if mode == "fit":
                times["fit_final"].append(res["last"])
                times["mb"] = res["mb"]
        print(f"round {r}: " + ", ".join(f"{k} {v[-1][0]:.2f} s ({v[-1][1]:.2f} CPU s)" for k, v in times.items()
                                         if k != "mb"), flush=True)
    return times


COST_LABELS = {"before": "until now: last + best + state written and the state read back, on the training thread",
               "snapshot": "now, on the training thread: copy weights + Adam moments to CPU memory",
               "background": "now, on the writer thread: best + state written (that thread's CPU)"}


def costs_text(costs: dict[str, tuple[float, float]]) -> str:
    rows = [[COST_LABELS[k], f"{wall:.3f}", f"{cpu:.3f}"] for k, (wall, cpu) in costs.items()]
    return ("One ResNet-18 commit's pieces, timed alone (5 repetitions, medians):\n\n"
            + markdown_table(["piece", "wall s", "CPU s"], rows))


def report(times: dict[str, list[float]], args: argparse.Namespace, n: int, load: tuple[float, float],
           costs: dict[str, tuple[float, float]], cmd: str) -> str:
    def med(key: str, i: int) -> float:
        return statistics.median(x[i] for x in times[key])

    base, base_cpu = med("memory", 0), med("memory", 1)
    rows = [[label, f"{med(key, 0):.2f}", f"{base / med(key, 0):.3f}", f"{med(key, 1):.2f}",
             f"{med(key, 1) / base_cpu:.3f}", len(times[key])] for key, label in (
        ("memory", "(a) memory, no checkpoint"), ("fit", "(b) fit on the warm cache, commit every epoch"),
        ("fit_nockpt", "(c) fit on the warm cache, no commit in the epoch"),
        ("fit_final", "(b) last epoch: waits for the final commit + last.safetensors"))]
    ratio = base / med("fit", 0)
    verdict = f"fit epoch with its checkpoints / memory epoch: {ratio:.3f}x speed (target >= 0.97: " \
              f"{'met' if ratio >= 0.97 else 'missed'})"
    return "\n\n".join([
        "## Checkpoint overhead: a fit epoch with its checkpoints vs the same epoch in memory",
        f"Command: `{cmd}`. {n} images, "
        f"resnet18 ({HEAD} head), 92x64, batch {args.batch}, fp32, Adam, no augmentation, "
        f"{torch.get_num_threads()} torch threads; {args.rounds} rounds (modes in ABBA order) of {args.epochs}-epoch fits (epochs 2.."
        f"{args.epochs - 1} are the steady intervals) and {args.epochs - 2} memory epochs each; medians. "
        f"A commit writes last.state.pt ({times['mb'][0]:.0f} MB: weights + Adam moments) and, when it "
        f"improved, best.safetensors ({times['mb'][1]:.0f} MB; every epoch here: no validation). Load average (`uptime`) "
        f"{load[0]:.2f} at the start and {load[1]:.2f} at the end on a machine shared with other jobs. "
        + machine_line(),
        markdown_table(["mode", "s/epoch", "speed vs memory", "CPU s/epoch (all threads)", "CPU vs memory",
                        "epochs"], rows),
        verdict + ".",
        costs_text(costs),
    ])


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    p = flags.parser(__doc__, quick={"help": "smoke run: 32 images, batch 16, 3 epochs, 1 round"},
                     images={"help": "images (default 1024, the issue's; --quick 32)"},
                     rounds={"help": "rounds (default 4; memory and fit modes in ABBA order)"},
                     epochs={"help": "epochs per fit (default 4; >= 3)"},
                     threads={"default": 2, "help": "torch threads (default 2, the issue's setting)"}, write=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    n, args.batch = (32, 16) if args.quick else (1024, 32)
    n = args.images or n
    args.rounds = args.rounds or (1 if args.quick else 4)
    args.epochs = max(3, args.epochs or (3 if args.quick else 4))
    load_start = load_average()
    table = read_table(landmark_csv(jpegs(n), OUT / "checkpoint_overhead"))
    with tempfile.TemporaryDirectory(dir=OUT) as cache:
        TableDataset(table, size=SIZE, cache=cache)  # builds the decoded cache, untimed
        times = measure(args, table, cache)
    costs = commit_costs(2 if args.quick else 5)
    text = report(times, args, n, (load_start, load_average()), costs, flags.command_line(__file__, argv))
    print(text)
    if flags.should_write(args):
        print("updated", write_section("checkpoint_overhead", text))
    return times


if __name__ == "__main__":
    main()
