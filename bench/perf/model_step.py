"""Model benchmark: cnnkit's ResNet presets vs a hand-written PyTorch ResNet of the same shape.

    .venv/bin/python bench/perf/model_step.py --write    # full run, rewrites its section of docs/PERFORMANCE.md
    .venv/bin/python bench/perf/model_step.py --quick    # smoke run (resnet18, batch 2)

One training step = forward (under cnnkit's ``autocast`` for bf16) + MSE loss on float32
output + backward + SGD (momentum, nesterov) step, at batch 32 and 92x64 (height 92,
width 64: the seed's size). The reference below is written from scratch in torchvision's
layout (BasicBlock / Bottleneck, stride on the 3x3 conv, 1x1 projection shortcut,
AdaptiveAvgPool + fc) and must have exactly cnnkit's parameter count (asserted). For every
(precision, memory format) the two models step in turn, A B B A ..., so load from other
processes hits both alike; the figures are medians of the step times.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.harness import flags  # noqa: E402
from bench.harness.machine import load_average, machine_line  # noqa: E402
from bench.harness.results import markdown_table, write_section  # noqa: E402
from bench.harness.timing import THREADS_NOTE, alternate, seconds  # noqa: E402
from cnnkit.engine.device import autocast  # noqa: E402
from cnnkit.model.builder import build_model  # noqa: E402

SIZE = (64, 92)  # (width, height), the seed's input
OUTPUTS = 40  # 20 landmarks, flat [x.., y..]
COMBOS: tuple[tuple[str, bool], ...] = (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True))
LOAD_AT_START = load_average()
Step = Callable[[], None]


# ---------------------------------------------------------------- the hand-written reference


class RefBasic(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(cin, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class RefBottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(cin, width * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module | None:
    if cin == cout and stride == 1:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class RefResNet(nn.Module):
    """torchvision-style ResNet: 7x7/2 stem, 3x3/2 max pool, four stages, global average pool, fc."""

    LAYOUTS: dict[str, tuple[type[nn.Module], tuple[int, ...]]] = {
        "resnet18": (RefBasic, (2, 2, 2, 2)),
        "resnet34": (RefBasic, (3, 4, 6, 3)),
        "resnet50": (RefBottleneck, (3, 4, 6, 3)),
    }

    def __init__(self, arch: str, outputs: int) -> None:
        super().__init__()
        block, counts = self.LAYOUTS[arch]
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages: list[nn.Module] = []
        cin = 64
        for i, count in enumerate(counts):
            width = 64 * 2**i
            blocks = []
            for j in range(count):
                blocks.append(block(cin, width, 2 if i > 0 and j == 0 else 1))
                cin = width * block.expansion  # type: ignore[attr-defined]
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_pair(arch: str, outputs: int = OUTPUTS) -> dict[str, nn.Module]:
    """{'cnnkit': preset with gap head, 'reference': RefResNet} with identical weights.

    The parameter counts must be equal, and cnnkit's weights are copied into the reference
    tensor by tensor (which asserts every shape, in order): both then compute the same numbers,
    so a difference in initialisation (e.g. denormals in fp32) cannot tilt the timing.
    """
    torch.manual_seed(0)
    ours = build_model(arch, size=SIZE, outputs=outputs, head="gap")
    ref = RefResNet(arch, outputs)
    assert n_params(ours) == n_params(ref), (arch, n_params(ours), n_params(ref))
    with torch.no_grad():
        for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
            assert a.shape == b.shape, (arch, a.shape, b.shape)
            b.copy_(a)
    return {"cnnkit": ours, "reference": ref}


# ---------------------------------------------------------------- timing


def make_step(model: nn.Module, precision: str, channels_last: bool, batch: int) -> Step:
    """A closure running one training step on fixed random inputs (as fit's loop does per batch)."""
    gen = torch.Generator().manual_seed(1)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()  # type: ignore[call-overload]
    x = torch.randn(batch, 3, SIZE[1], SIZE[0], generator=gen).contiguous(memory_format=fmt)
    target = torch.rand(batch, OUTPUTS, generator=gen)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, nesterov=True)
    device = torch.device("cpu")

    def step() -> None:
        with autocast(device, precision):
            out = model(x)
        loss = nn.functional.mse_loss(out.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def measure(arch: str, batch: int, rounds: int, warmup: int = 2) -> list[dict[str, object]]:
    """One row per (precision, memory format): img/s of both models and their ratio."""
    rows = []
    for precision, cl in COMBOS:
        models = build_pair(arch)  # fresh weights per combo: no state carried between settings
        steps = {name: make_step(m, precision, cl, batch) for name, m in models.items()}
        t = alternate({name: seconds(step) for name, step in steps.items()}, rounds, warmup)
        ips = {name: batch / statistics.median(v) for name, v in t.items()}
        # Ratio: median over rounds of the paired ratio (the two steps of a round ran back to back).
        paired = [r / c for c, r in zip(t["cnnkit"], t["reference"], strict=True)]
        q = statistics.quantiles(paired, n=4) if len(paired) > 1 else [paired[0]] * 3
        rows.append({"arch": arch, "precision": precision, "channels_last": cl, "params": n_params(models["cnnkit"]),
                     "cnnkit": ips["cnnkit"], "reference": ips["reference"], "ratio": statistics.median(paired),
                     "spread": f"{q[0]:.2f}-{q[2]:.2f}"})  # fmt: skip
        print(f"{arch} {precision} {'channels-last' if cl else 'contiguous'}: cnnkit {ips['cnnkit']:.1f} img/s, "
              f"reference {ips['reference']:.1f} img/s, ratio {rows[-1]['ratio']:.3f}", flush=True)  # fmt: skip
    return rows


def profile_ops(arch: str, precision: str, channels_last: bool, batch: int, steps: int = 3) -> str:
    """Per-op self CPU time (torch.profiler) of both models, largest differences first: where a
    gap in the ratio comes from, if anywhere. Each model is profiled twice, in both orders."""
    from torch.profiler import ProfilerActivity, profile

    runs = {k: make_step(m, precision, channels_last, batch) for k, m in build_pair(arch).items()}
    for run in runs.values():
        run()
    per_op: dict[str, dict[str, float]] = {}
    for order in (("cnnkit", "reference"), ("reference", "cnnkit")):
        for name in order:
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(steps):
                    runs[name]()
            for e in prof.key_averages():
                per_op.setdefault(e.key, {"cnnkit": 0.0, "reference": 0.0})[name] += e.self_cpu_time_total / 1e3
    top = sorted(per_op.items(), key=lambda kv: -abs(kv[1]["cnnkit"] - kv[1]["reference"]))[:12]
    totals = [f"{sum(d[k] for d in per_op.values()):.0f}" for k in ("cnnkit", "reference")]
    body = [[op, f"{d['cnnkit']:.1f}", f"{d['reference']:.1f}"] for op, d in top]
    only = {k: [op for op, d in per_op.items() if d[k] > 0 and d[other] == 0]
            for k, other in (("cnnkit", "reference"), ("reference", "cnnkit"))}  # fmt: skip
    return (
        markdown_table(["op (self CPU ms)", "cnnkit", "reference"], [["total", *totals], *body])
        + f"\n\nOps only in cnnkit: {', '.join(only['cnnkit']) or 'none'}; only in the reference: "
        + f"{', '.join(only['reference']) or 'none'}."
    )


# ---------------------------------------------------------------- report


def table_text(rows: list[dict[str, object]]) -> str:
    body = [
        [r["arch"], f"{r['params']:,}", r["precision"], "channels-last" if r["channels_last"] else "contiguous",
         f"{r['cnnkit']:.1f}", f"{r['reference']:.1f}", f"{r['ratio']:.3f}", r["spread"]]
        for r in rows
    ]  # fmt: skip
    return markdown_table(
        ["model", "params", "precision", "memory format", "cnnkit img/s", "reference img/s", "cnnkit / reference",
         "per-round ratios, middle half"],
        body,
    )  # fmt: skip


def verdict(rows: list[dict[str, object]]) -> str:
    """Fastest combination per model, and the worst ratio against the 0.98 target."""
    lines = []
    for arch in dict.fromkeys(str(r["arch"]) for r in rows):
        mine = [r for r in rows if r["arch"] == arch]
        best = max(mine, key=lambda r: float(r["cnnkit"]))  # type: ignore[arg-type]
        base = next(r for r in mine if r["precision"] == "fp32" and not r["channels_last"])
        lines.append(
            f"{arch}: fastest is {best['precision']} + {'channels-last' if best['channels_last'] else 'contiguous'} "
            f"({float(best['cnnkit']) / float(base['cnnkit']):.2f}x fp32 contiguous)."  # type: ignore[arg-type]
        )
    worst = min(float(r["ratio"]) for r in rows)  # type: ignore[arg-type]
    median = statistics.median(float(r["ratio"]) for r in rows)  # type: ignore[arg-type]
    below = [f"{r['arch']} {r['precision']} {'channels-last' if r['channels_last'] else 'contiguous'} "
             f"{float(r['ratio']):.3f}" for r in rows if float(r["ratio"]) < 0.98]  # type: ignore[arg-type]  # fmt: skip
    lines.append(
        f"cnnkit / reference: median {median:.3f}, lowest {worst:.3f} (target >= 0.98: "
        f"{'met' if median >= 0.98 else 'missed'} on the median; below 0.98: {', '.join(below) or 'none'})."
    )
    return " ".join(lines)


def worst_profile(rows: list[dict[str, object]], batch: int) -> str:
    """Per-op profile of the lowest-ratio setting when it is under 0.98 (the issue asks for one)."""
    worst = min(rows, key=lambda r: float(r["ratio"]))  # type: ignore[arg-type]
    if float(worst["ratio"]) >= 0.98:  # type: ignore[arg-type]
        return ""
    fmt = "channels-last" if worst["channels_last"] else "contiguous"
    table = profile_ops(str(worst["arch"]), str(worst["precision"]), bool(worst["channels_last"]), batch)
    return (
        f"Profile of the lowest row ({worst['arch']} {worst['precision']} {fmt}; `--profile {worst['arch']} "
        f"{worst['precision']} {fmt}`): self CPU ms of 2 x 3 steps per model, in both orders, the 12 ops that "
        "differ most. Where the per-op differences go "
        "both ways and the per-round ratios straddle 1.0, the gap is run-to-run noise from the shared CPUs, "
        "not the model code.\n\n" + table
    )


def report(rows: list[dict[str, object]], batch: int, rounds: int, cmd: str, profile: str = "") -> str:
    return "\n\n".join(part for part in [
        "## Model: cnnkit ResNet vs a hand-written PyTorch ResNet",
        f"Command: `{cmd}`. Batch {batch}, input 92x64 (height 92, width 64), {OUTPUTS} outputs, gap head; "
        f"{torch.get_num_threads()} torch threads; {rounds} timed steps per model and setting after 2 warm-up "
        f"steps, the two models alternating (A B B A ...); img/s from the median step time, the ratio is "
        f"the median of the per-round ratios. Load average {LOAD_AT_START:.1f} at the "
        f"start and {load_average():.1f} at the end (other jobs shared the CPUs: read the ratios). "
        + machine_line(),
        "One step = forward (bf16: under `torch.autocast`, as `fit(precision='bf16')`) + MSE on float32 "
        "output + backward + SGD (momentum 0.9, nesterov). The reference is written in the script in "
        "torchvision's layout with the same parameter count (asserted) and cnnkit's weights copied in, "
        "tensor by tensor (so every shape matches and both compute the same numbers).",
        table_text(rows),
        verdict(rows),
        profile,
        THREADS_NOTE,
    ] if part)  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = flags.parser(__doc__, quick={"help": "smoke run: resnet18, batch 2, 1 thread"},
                          arch={"help": "models (default resnet18 resnet50)"}, batch={"help": "batch size (default 32)"},
                          rounds={"help": "timed steps per model and setting (default 10)"},
                          threads={"help": "torch threads (default 1; see THREADS_NOTE)"}, write=True)
    parser.add_argument("--profile", nargs=3, metavar=("ARCH", "PRECISION", "FORMAT"), default=None,
                        help="only profile one setting per op, e.g. resnet50 fp32 contiguous")  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads or 1)
    arches = args.arch or (["resnet18"] if args.quick else ["resnet18", "resnet50"])
    batch = args.batch or (2 if args.quick else 32)
    if args.profile:
        arch, precision, fmt = args.profile
        print(profile_ops(arch, precision, fmt == "channels-last", batch))
        return []
    rounds = args.rounds or (2 if args.quick else 10)
    rows = [row for arch in arches for row in measure(arch, batch, rounds, 1 if args.quick else 2)]
    print(table_text(rows))
    print(verdict(rows))
    if flags.should_write(args):
        profile = worst_profile(rows, batch)
        print(profile)
        report_text = report(rows, batch, rounds, flags.command_line(__file__, argv), profile)
        print("updated", write_section("model_step", report_text))
    return rows


if __name__ == "__main__":
    main()
