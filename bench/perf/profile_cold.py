"""Where cold streaming spends its CPU: epochs of bench/perf/end_to_end.py's cold mode under py-spy.

    .venv/bin/pip install py-spy        # a profiler for this script only, not a cnnkit dependency
    .venv/bin/py-spy record --subprocesses --rate 250 --format raw -o bench/out/cold.txt -- \\
        .venv/bin/python bench/perf/profile_cold.py --epochs 3
    .venv/bin/python bench/perf/profile_cold.py --summarise bench/out/cold.txt

The first command trains resnet18 at 92x64 on the harness's generated JPEGs through the cold
loader (``make_loader(workers=1)``, decoding every epoch); the second sorts py-spy's samples
(collapsed stacks, one line per stack and count) into the training process and the loader
worker, and within each into what the stack was doing, by the innermost frame it recognises.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.harness import flags  # noqa: E402

#: (category, substrings of a frame), checked from the innermost frame outwards.
CATEGORIES = [
    ("JPEG decode (libjpeg via Pillow load)", ("ImageFile.py", "load (PIL")),
    ("resize (Pillow)", ("resize (PIL", "reduce (PIL")),
    ("open + header + EXIF (Pillow)", ("open (PIL", "getexif", "_open (PIL", "draft (PIL")),
    ("read file bytes", ("read_bytes",)),
    ("numpy conversion", ("__array_interface__", "asarray", "tobytes")),
    ("to tensor + collate", ("collate", "from_numpy", "permute")),
    ("worker IPC (send batch)", ("put (multiprocessing", "reduce_storage", "_send", "dumps")),
    ("waiting for work (worker idle)", ("get (multiprocessing", "poll", "wait (threading")),
    ("backward", ("backward",)),
    ("forward", ("forward",)),
    ("optimizer step", ("step (torch/optim", "_single_tensor", "_multi_tensor")),
    ("next(loader) (waiting for data)", ("__next__ (torch/utils/data",)),
]


def categorise(stack: list[str]) -> str:
    for frame in reversed(stack):
        for name, keys in CATEGORIES:
            if any(k in frame for k in keys):
                return name
    return "other"


def summarise(path: Path) -> str:
    """Table of sample shares per process role and category from a py-spy raw file."""
    roles: dict[str, Counter[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        stack_text, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        stack = stack_text.split(";")
        role = "loader worker" if any("_worker_loop" in f for f in stack) else "training process"
        roles.setdefault(role, Counter())[categorise(stack)] += int(count)
    total = sum(sum(c.values()) for c in roles.values())
    lines = ["| process | what | samples | share of all samples |", "|---|---|---|---|"]
    for role, counts in sorted(roles.items()):
        for name, n in counts.most_common():
            lines.append(f"| {role} | {name} | {n} | {n / total:.1%} |")
    return "\n".join(lines)


def run(epochs: int, precision: str, threads: int) -> None:
    import torch

    from bench.harness.images import jpegs, landmark_csv, read_table
    from bench.harness.training import epoch, train_parts
    from cnnkit.data.dataset import TableDataset
    from cnnkit.data.loader import make_loader

    torch.set_num_threads(threads)
    table = read_table(landmark_csv(jpegs(500)))
    loader = make_loader(TableDataset(table, size=(64, 92)), batch_size=32, shuffle=True, seed=0, workers=1)
    parts = train_parts("resnet18", precision, True)
    for e in range(epochs):
        res = epoch(parts, loader, e)
        print(f"epoch {e}: {res['ips']:.1f} img/s, waited {res['wait']:.1%}, "
              f"main {res['main_cpu_ms']:.1f} ms/img, worker {res['worker_cpu_ms']:.1f} ms/img", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = flags.parser(__doc__, epochs={"default": 3, "help": "cold epochs (default 3)"},
                     precision={"default": "fp32", "help": "default fp32"},
                     threads={"default": 1, "help": "torch threads in the training process (default 1)"})
    p.add_argument("--summarise", type=Path, help="print the table for a py-spy raw file instead")
    args = p.parse_args(argv)
    if args.summarise:
        print(summarise(args.summarise))
    else:
        run(args.epochs, args.precision, args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
