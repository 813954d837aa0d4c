"""``python -m cnnkit`` that SIGKILLs itself at one chosen moment; used by test_kill_points.py.

Environment:
    CNNKIT_TEST_KILL_AT: ``startup`` (the run folder is set up, no step taken), ``epoch1`` (at
        the second training batch), ``state1`` (during the first write of last.state.pt: the
        temp file is written, not yet renamed) or ``state2`` (the same, for the second commit,
        which runs on the background writer while the next epoch trains).
A kill prints ``KILLED at <moment> on thread <name>`` first.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any


def _die(moment: str) -> None:
    print(f"KILLED at {moment} on thread {threading.current_thread().name}", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def _at_startup() -> None:
    from cnnkit.train.epochs import EpochRunner

    EpochRunner.run = lambda self, state: _die("startup")  # type: ignore[method-assign,assignment,return-value]


def _at_batch(n: int) -> None:
    from cnnkit.engine.step import StepSetup

    original, calls = StepSetup.inputs, []

    def inputs(self: StepSetup, batch: Any, **kw: Any) -> Any:
        if kw.get("generator") is not None:
            calls.append(1)
            if len(calls) == n:
                _die("epoch1")
        return original(self, batch, **kw)

    StepSetup.inputs = inputs  # type: ignore[method-assign]


def _at_state_write(n: int) -> None:
    """Die at the fsync of the n-th temp file of last.state.pt: written, not yet renamed over the old one."""
    from cnnkit import atomic

    real, seen = atomic.os.fsync, []

    def fsync(fd: int) -> None:
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".last.state.pt."):
            seen.append(fd)
            if len(seen) == n:
                _die(f"state{n}")
        real(fd)

    atomic.os.fsync = fsync  # type: ignore[attr-defined]


if __name__ == "__main__":
    at = os.environ.get("CNNKIT_TEST_KILL_AT", "")
    if at == "startup":
        _at_startup()
    elif at == "epoch1":
        _at_batch(2)
    elif at.startswith("state"):
        _at_state_write(int(at[5:]))
    from cnnkit.cli import main

    sys.exit(main(sys.argv[1:]))
