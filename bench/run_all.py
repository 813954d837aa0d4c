"""Run the benchmark scripts in order (what ``make bench`` runs) and print a summary.

    .venv/bin/python bench/run_all.py                       # full: each script rewrites its section of docs/PERFORMANCE.md
    .venv/bin/python bench/run_all.py --quick --no-write    # smoke run of every script, docs untouched
    .venv/bin/python bench/run_all.py --peer                # also the Keras peer (creates bench/.venv-peer)
    .venv/bin/python bench/run_all.py --only model_step end_to_end

Order: loader, augment, model_step, end_to_end, video_predict, checkpoint_overhead, then peer_keras
when asked for. Each script runs in its own process (fresh memory figures, no state carried between them) with this
interpreter; the GPU script (bench/gpu.sh) is not part of it: it needs an NVIDIA machine.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ORDER = ("loader", "augment", "model_step", "end_to_end", "video_predict", "checkpoint_overhead", "peer_keras")
# Lines worth repeating in the summary: verdicts against the targets and headline ratios.
SUMMARY = re.compile(r"target|RSS ratio|fastest|TensorFlow could not", re.IGNORECASE)


def command(name: str, quick: bool, write: bool, threads: int | None) -> list[str]:
    """The command line of one script; the scripts spell 'smoke run' and 'no doc' differently."""
    cmd = [sys.executable, str(BENCH / f"{name}.py")]
    if name == "loader":
        return cmd + (["--quick"] if quick else [] if write else ["--no-doc"])
    if name == "augment":  # writes only when asked; one thread for the reason given in model_step.py
        return cmd + ["--threads", str(threads or 1)] + (["--seconds", "0.3"] if quick else []) + (
            ["--write"] if write and not quick else []
        )
    if name == "checkpoint_overhead":  # 2 torch threads: the setting, whatever --threads says
        return cmd + (["--quick"] if quick else []) + ([] if write else ["--no-write"])
    if name == "peer_keras" and not quick:
        cmd.append("--keras-bf16")  # Keras' bf16 policy too: the like-for-like precision
    cmd += ["--quick"] if quick else []
    cmd += [] if write else ["--no-write"]
    return cmd + (["--threads", str(threads)] if threads and name != "peer_keras" else [])


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
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run of every script (small sizes)")
    p.add_argument("--no-write", action="store_true", help="leave docs/PERFORMANCE.md untouched")
    p.add_argument("--peer", action="store_true", help="also run the Keras peer (slow; installs TensorFlow)")
    p.add_argument("--only", nargs="+", choices=ORDER, default=None, help="run only these scripts, in order")
    p.add_argument("--threads", type=int, default=None, help="torch threads for the model scripts (default 1)")
    args = p.parse_args(argv)
    names = [n for n in ORDER if (n in args.only if args.only else n != "peer_keras" or args.peer)]
    results = []
    for name in names:
        code, seconds, picked = run(name, command(name, args.quick, not args.no_write, args.threads))
        results.append((name, code, seconds, picked))
    lines = []
    for name, code, seconds, picked in results:
        lines.append(f"- `{name}`: {'ok' if code == 0 else f'FAILED (exit {code})'} in {seconds:.0f} s")
        lines += [f"  - {line}" for line in picked]
    print("\n=== summary\n" + "\n".join(lines))
    if not (args.quick or args.no_write):
        sys.path.insert(0, str(BENCH))
        from _common import write_section

        write_section("summary", "## Summary of the last `bench/run_all.py`\n\n"
                      f"Load average at the end: {os.getloadavg()[0]:.1f}. Verdicts as each script printed them "
                      "(details and explanations in the sections below):\n\n" + "\n".join(lines))
    return max((code != 0 for _, code, _, _ in results), default=0)


if __name__ == "__main__":
    sys.exit(main())
