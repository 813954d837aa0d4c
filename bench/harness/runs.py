"""The one launcher: training runs (``cnnkit train`` on an experiment file, or any command) in their own
processes, ``parallel`` at a time, each handed back as it ends; and single child processes whose
last output line is a JSON result (a fresh process per measurement: its own peak RSS, no state).

Each launched run writes its output to a log file; ``on_done(job, exit code, wall seconds)`` is
called as each ends, so a launch killed by an outer time limit loses only the runs still going.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import ROOT


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment with the repository's ``src`` first on PYTHONPATH (and ``extra`` on top)."""
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **(extra or {})}


def cnnkit_argv(*args: str) -> list[str]:
    """``python -m cnnkit ARGS`` with this interpreter."""
    return [sys.executable, "-m", "cnnkit", *args]


@dataclass(frozen=True, eq=False)  # eq=False: hashed by identity, a key of the runs in flight
class Job:
    """One process to launch: the command, where its output goes, what it adds to the environment."""

    argv: Sequence[str]
    log: Path
    env: Mapping[str, str] = field(default_factory=dict)


def launch(jobs: Sequence[Job], parallel: int, on_done: Callable[[Job, int, float], None],
           poll_s: float = 1.0) -> None:
    """Run every job, ``parallel`` at a time, in order; ``on_done(job, exit code, wall s)`` as each ends."""
    pending, running = list(jobs), {}
    while pending or running:
        while pending and len(running) < max(1, parallel):
            job = pending.pop(0)
            job.log.parent.mkdir(parents=True, exist_ok=True)
            with job.log.open("w") as log:  # the child holds its own copy of the descriptor
                proc = subprocess.Popen(list(job.argv), stdout=log, stderr=subprocess.STDOUT,
                                        env=child_env(job.env))
            running[job] = (proc, time.perf_counter())
        for job, (proc, t0) in list(running.items()):
            if proc.poll() is not None:
                del running[job]
                took = time.perf_counter() - t0
                print(f"{job.log.parent.name}/{job.log.name}: exit {proc.returncode} after {took:.0f} s", flush=True)
                on_done(job, proc.returncode, took)
        if running:
            time.sleep(poll_s)


def train_job(experiment: Path, env: Mapping[str, str] | None = None) -> Job:
    """``cnnkit train EXPERIMENT``, its output in ``train.log`` beside the file."""
    return Job(cnnkit_argv("train", str(experiment)), experiment.parent / "train.log", dict(env or {}))


def last_json(text: str) -> Any:
    """The JSON value on the last line of ``text`` that holds one (a child's result)."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith(("{", "[")):
            return json.loads(line)
    raise ValueError(f"no JSON result line in the output: {text[-500:]!r}")


def child_json(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Any:
    """Run one child process to the end and return the JSON result it printed last."""
    res = subprocess.run(list(argv), capture_output=True, text=True, env=child_env(env))
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
    return last_json(res.stdout)
