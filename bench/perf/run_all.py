"""Run the performance scripts in order (what ``make bench`` runs) and print a summary.

    .venv/bin/python bench/perf/run_all.py --write                 # full: each script rewrites its section of docs/PERFORMANCE.md
    .venv/bin/python bench/perf/run_all.py --quick                 # smoke run of every script, docs untouched
    .venv/bin/python bench/perf/run_all.py --write --peer          # also the Keras peer (creates bench/.venv-peer)
    .venv/bin/python bench/perf/run_all.py --only model_step end_to_end

Order: loader, augment, model_step, end_to_end, video_predict, checkpoint_overhead, then peer_keras
when asked for. Each script runs in its own process (fresh memory figures, no state carried between
them) with this interpreter and the harness's flags: ``--quick`` or ``--write`` as given here. The GPU
script (bench/gpu.sh) is not part of it: it needs an NVIDIA machine.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.harness import flags  # noqa: E402
from bench.harness.machine import load_average  # noqa: E402

PERF = Path(__file__).resolve().parent
ORDER = ("loader", "augment", "model_step", "end_to_end", "video_predict", "checkpoint_overhead", "peer_keras")
#: scripts that keep their own thread setting: loader (no model), checkpoint_overhead (2, the issue's
#: setting), peer_keras (every core per side); augment's default here is 1 (the reason: THREADS_NOTE)
OWN_THREADS = ("loader", "checkpoint_overhead", "peer_keras")
# Lines worth repeating in the summary: verdicts against the targets and headline ratios.
SUMMARY = re.compile(r"target|RSS ratio|fastest|TensorFlow could not", re.IGNORECASE)


def command(name: str, quick: bool, write: bool, threads: int | None) -> list[str]:
    """The command line of one script: the same flags for every one."""
    cmd = [sys.executable, str(PERF / f"{name}.py")]
    cmd += ["--quick"] if quick else ["--write"] if write else []
    if name == "peer_keras" and not quick:
        cmd.append("--keras-bf16")  # Keras' bf16 policy too: the like-for-like precision
    threads = threads or (1 if name == "augment" else None)
    return cmd + (["--threads", str(threads)] if threads and name not in OWN_THREADS else [])


def run(name: str, cmd: list[str]) -> tuple[int, float, list[str]]:
    """Run one script, echoing its output; (exit code, seconds, summary lines)."""
    print(f"\n=== {name}: {' '.join(Path(c).name if i < 2 else c for i, c in enumerate(cmd))}", flush=True)
    start, picked = time.perf_counter(), []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            if SUMMARY.search(line):
                picked.append(line.strip())
    return proc.returncode, time.perf_counter() - start, picked


def main(argv: list[str] | None = None) -> int:
    p = flags.parser(__doc__, quick={"help": "smoke run of every script (small sizes); docs untouched"},
                     write={"help": "each script rewrites its section of docs/PERFORMANCE.md (make bench)"},
                     threads={"help": "torch threads for the model scripts (default 1)"})
    p.add_argument("--peer", action="store_true", help="also run the Keras peer (slow; installs TensorFlow)")
    p.add_argument("--only", nargs="+", choices=ORDER, default=None, help="run only these scripts, in order")
    args = p.parse_args(argv)
    names = [n for n in ORDER if (n in args.only if args.only else n != "peer_keras" or args.peer)]
    results = []
    for name in names:
        code, seconds, picked = run(name, command(name, args.quick, args.write, args.threads))
        results.append((name, code, seconds, picked))
    lines = []
    for name, code, seconds, picked in results:
        lines.append(f"- `{name}`: {'ok' if code == 0 else f'FAILED (exit {code})'} in {seconds:.0f} s")
        lines += [f"  - {line}" for line in picked]
    print("\n=== summary\n" + "\n".join(lines))
    if flags.should_write(args):
        from bench.harness.results import write_section

        write_section("summary", "## Summary of the last `bench/perf/run_all.py`\n\n"
                      f"Load average at the end: {load_average():.1f}. Verdicts as each script printed them "
                      "(details and explanations in the sections below):\n\n" + "\n".join(lines))
    return max((code != 0 for _, code, _, _ in results), default=0)


if __name__ == "__main__":
    sys.exit(main())
