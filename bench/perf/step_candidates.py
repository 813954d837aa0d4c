"""Issue 27's speed candidates, side by side: one training step and one epoch of v0.2's data-only default
(``v02``: fp32, default layout) on the real data, against the same with one change (bf16 autocast, channels-last, a foreach or fused
Adam, the decoded cache, torch.compile, ImageNet Lite0 weights, all of the winners together).

    .venv/bin/python bench/perf/step_candidates.py --write          # lips, faces68, small; docs/PERFORMANCE.md
    .venv/bin/python bench/perf/step_candidates.py --sets small --configs v02 default foreach cache compile
    .venv/bin/python bench/perf/step_candidates.py --quick          # tiny: 8 rows, 2 steps, 1 round

Every candidate's run is built once, as ``cnnkit train`` builds it from an experiment file with
only ``data`` (bench/harness/candidates.py: ``data.crop: auto`` crops on the small-subject set,
``data.size: auto``, batch 16, ResNet-18 with the heatmap head, Adam at 1e-3 held constant here).
Then

* steps: ``--rounds`` x ``--batches`` turns; in each, every candidate takes ONE training step on the
  same fixed batch (the model alone: forward, loss, backward, optimizer step), in an order rotated
  every turn, so a change in the machine's speed lands on every candidate alike;
* epochs: ``--rounds`` rounds; in each, every candidate runs one epoch through its own loaders
  (reading and decoding or the cache, views, augmentation, the steps, the validation pass), as
  metrics.csv's ``time_s`` counts it, the order rotated every round.

Each timing is taken in wall seconds and in this process's CPU seconds. On a machine shared with
other jobs the CPU seconds of a one-thread run are the work itself (others' load does not inflate
them): the CPU speed-up (default's median / candidate's median, > 1: faster) is the figure to read
there; on a quiet machine with two threads, the wall speed-up (the median of the per-turn ratios).
Every candidate trains the same steps from the same initial weights on the same batches and epochs,
so after the turns the optimizer implementations must hold the default's weights to rounding
(``param gap``: largest |difference| / largest |weight|; Adam's normalised step turns rounding on a
near-zero gradient into a full step, so fused shows more than foreach), while bf16 shows its
drift; ``view gap`` compares the candidate's first training batches with the default's pixels (the
cache must give the same views).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.harness import OUT, flags  # noqa: E402
from bench.harness.candidates import (  # noqa: E402
    BASELINE,
    CANDIDATES,
    DEFAULT_SET,
    Trainee,
    load_job,
    parameter_gap,
    view_gap,
)
from bench.harness.machine import load_average, machine_line  # noqa: E402
from bench.harness.results import markdown_table, write_section  # noqa: E402
from bench.harness.timing import alternate, round_order  # noqa: E402

SETS = ("lips", "faces68", "small")
Timing = tuple[float, float]  # (wall, CPU) seconds
QUICK_ROWS = 8


def build(set_name: str, args: argparse.Namespace) -> dict[str, Trainee]:
    """Every asked-for candidate's run on ``set_name`` (v02 first: the others are compared with it)."""
    names = [BASELINE, *(c for c in args.configs if c != BASELINE)]
    limit = QUICK_ROWS if args.quick else None
    return {name: Trainee(load_job(set_name, name, args, limit=limit), CANDIDATES[name].optimizer) for name in names}


def warm_up(trainees: dict[str, Trainee], batches: list[Any]) -> dict[str, float]:
    """Two untimed steps and a validation pass each (compile compiles here): wall seconds per candidate."""
    took = {}
    for name, t in trainees.items():
        start = time.perf_counter()
        t.steps(batches[:2], seed=1000)
        t.validate()
        took[name] = time.perf_counter() - start
    return took


def step_turns(trainees: dict[str, Trainee], batches: list[Any], rounds: int) -> dict[str, list[Timing]]:
    """(wall, CPU) of every candidate's steps, one step each in turn (the order rotated every turn), so a
    change in the machine's speed lands on every candidate alike."""
    out: dict[str, list[Timing]] = {name: [] for name in trainees}
    for turn in range(rounds * len(batches)):
        for name in round_order(list(trainees), turn, rotate=True):
            out[name].append(trainees[name].steps([batches[turn % len(batches)]], seed=turn))
    return out


def measure_set(set_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Step and epoch times of every candidate on one set, in rotated turns; the gaps after the turns."""
    trainees = build(set_name, args)
    batches = trainees[BASELINE].first_batches(args.batches)
    views = {name: view_gap(batches, t.first_batches(len(batches))) for name, t in trainees.items()}
    warm = warm_up(trainees, batches)
    steps = step_turns(trainees, batches, args.rounds)
    epochs = alternate({name: t.epoch for name, t in trainees.items()}, args.rounds, rotate=True)
    base = trainees[BASELINE]
    rows = {}
    for name, t in trainees.items():
        same_net = type(t.model) is type(base.model) and t.job.pretrained == base.job.pretrained
        rows[name] = {"step": summarise(steps[name], steps[BASELINE]),
                      "epoch": summarise(epochs[name], epochs[BASELINE]), "build_s": t.build_s,
                      "warmup_s": warm[name], "view_gap": views[name],
                      "param_gap": parameter_gap(base.model, t.model) if same_net else None}
    job = base.job
    return {"set": set_name, "rows": rows, "train_rows": len(job.train), "val_rows": len(job.val or []),
            "batch": job.cfg.batch_size, "steps_per_epoch": len(base.parts.loaders["train"]),
            "input": "x".join(map(str, job.data.frame)), "crop": job.data.crop_settings is not None}


def summarise(mine: list[Timing], default: list[Timing]) -> dict[str, float]:
    """Median wall and CPU seconds; the speed-up over the default (> 1: faster) from the median CPU seconds
    and, on wall time, the median of the per-turn ratios (each turn's default beside the candidate)."""
    wall = sorted(d[0] / m[0] for m, d in zip(mine, default, strict=True))
    cpu_s = statistics.median(t[1] for t in mine)
    return {"wall_s": statistics.median(t[0] for t in mine), "cpu_s": cpu_s,
            "cpu_x": statistics.median(t[1] for t in default) / cpu_s, "wall_x": statistics.median(wall),
            "wall_x_low": wall[len(wall) // 4], "wall_x_high": wall[(3 * len(wall)) // 4]}


def optimizer_alone(turns: int) -> str:
    """The optimizer step alone on ResNet-18's parameters (heatmap head, 160x120, 8 points; fixed random
    gradients), per implementation, one step each in turn: a table of median wall and CPU seconds."""
    from cnnkit.config import TrainConfig
    from cnnkit.model.builder import build_model
    from cnnkit.train.optim import make_optimizer

    opts = {}
    for impl in ("for-loop", "foreach", "fused"):
        torch.manual_seed(0)
        model = build_model("resnet18", size=(160, 120), outputs=16, task="landmarks")
        for p in model.parameters():
            p.grad = torch.randn_like(p) * 1e-3
        opts[impl] = make_optimizer(model, TrainConfig(), implementation=impl)
    times: dict[str, list[Timing]] = {impl: [] for impl in opts}
    for turn in range(turns + 2):
        for impl in round_order(list(opts), turn, rotate=True):
            wall, cpu = time.perf_counter(), time.process_time()
            opts[impl].step()
            times[impl].append((time.perf_counter() - wall, time.process_time() - cpu))
    med = {k: (statistics.median(t[0] for t in v[2:]), statistics.median(t[1] for t in v[2:])) for k, v in times.items()}
    rows = [[impl, f"{w * 1000:.1f}", f"{c * 1000:.1f}", f"{med['for-loop'][1] / c:.2f}", f"{med['for-loop'][0] / w:.2f}"]
            for impl, (w, c) in med.items()]
    n = sum(p.numel() for p in opts["fused"].param_groups[0]["params"])
    return (f"Adam's step alone ({n:,} parameters in {len(opts['fused'].param_groups[0]['params'])} tensors, "
            f"{turns} turns, medians):\n\n" + markdown_table(
                ["implementation", "wall ms", "CPU ms", "speed-up (CPU)", "speed-up (wall)"], rows))


def table(results: list[dict[str, Any]]) -> str:
    rows = []
    for res in results:
        for name, r in res["rows"].items():
            gap = "-" if r["param_gap"] is None else f"{r['param_gap']:.1e}"
            st, ep = r["step"], r["epoch"]
            rows.append([res["set"], name, f"{st['cpu_s']:.3f}", f"{st['cpu_x']:.2f}",
                         f"{st['wall_x']:.2f} ({st['wall_x_low']:.2f}-{st['wall_x_high']:.2f})",
                         f"{ep['cpu_s']:.1f}", f"{ep['wall_s']:.1f}", f"{ep['cpu_x']:.2f}",
                         f"{ep['wall_x']:.2f} ({ep['wall_x_low']:.2f}-{ep['wall_x_high']:.2f})",
                         f"{r['build_s']:.1f}", f"{r['warmup_s']:.1f}", gap,
                         f"{r['view_gap'][0]:.2f} / {r['view_gap'][1]}"])
    return markdown_table(["set", "candidate", "step CPU s", "step speed-up (CPU)", "step speed-up (wall, per turn; "
                           "middle half)", "epoch CPU s", "epoch wall s", "epoch speed-up (CPU)",
                           "epoch speed-up (wall, per round)", "build s", "warm-up s", "param gap",
                           "view gap mean / max"], rows)


def report(results: list[dict[str, Any]], args: argparse.Namespace, load: tuple[float, float]) -> str:
    sets = "; ".join(f"{r['set']}: {r['train_rows']} training rows ({r['steps_per_epoch']} steps of "
                     f"{r['batch']}), {r['val_rows']} validation rows, input {r['input']}"
                     f"{' (crop views)' if r['crop'] else ''}" for r in results)
    return (f"Command: `{flags.command_line(__file__)}`. Steps: {args.rounds} x {args.batches} turns of one step "
            f"each on the same fixed batches; epochs: {args.rounds} rounds; candidates in an order rotated every "
            f"turn; medians. {torch.get_num_threads()} torch threads; "
            f"loader workers {args.workers}. {sets}. Load average (`uptime`) {load[0]:.1f} at the start and "
            f"{load[1]:.1f} at the end. {machine_line()}\n\n{table(results)}\n")


def main(argv: list[str] | None = None) -> int:
    p = flags.parser(__doc__, quick=True, write=True, out={"default": OUT / "step_candidates"}, data_root=True,
                     sets={"default": list(SETS), "choices": list(SETS)},
                     configs={"default": DEFAULT_SET, "choices": list(CANDIDATES)},
                     rounds={"default": 3, "help": "timed rounds per candidate (default 3; --quick 1)"},
                     threads={"default": 2, "help": "torch threads (default 2, a laptop's)"}, workers=True)
    p.add_argument("--batches", type=int, default=8, help="training steps per step timing (default 8; --quick 2)")
    args = p.parse_args(argv)
    args.device, args.out = "cpu", args.out.resolve()
    if args.quick:
        args.rounds, args.batches = 1, 2
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    start_load = load_average()
    results = []
    for set_name in args.sets:
        results.append(measure_set(set_name, args))
        (args.out / "step_candidates.json").write_text(json.dumps(results, indent=1))
        print(table(results[-1:]), flush=True)
    text = report(results, args, (start_load, load_average())) + "\n" + optimizer_alone(5 if args.quick else 40) + "\n"
    (args.out / "summary.md").write_text(text)
    print(text)
    if flags.should_write(args):
        write_section("step_candidates", "## Training step candidates (issue 27)\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
