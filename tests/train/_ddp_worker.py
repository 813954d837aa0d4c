"""``cnnkit`` command line under torchrun, with a file-write audit and an optional failing rank.

Used by ``test_distributed.py`` as ``torchrun --nproc_per_node=2 _ddp_worker.py train EXP.yaml``.

Environment:
    CNNKIT_TEST_WATCH: a folder; every write under it (open for writing, rename, mkdir,
        remove) is recorded and printed at exit as ``AUDIT rank=R writes=N [...]``.
    CNNKIT_TEST_FAIL_RANK: the rank whose second training batch raises a DataError.
    CNNKIT_TEST_KILL_RANK, CNNKIT_TEST_KILL_BATCH: the rank that SIGKILLs itself at that training
        batch (counted over epochs, from 1), in torchrun's first attempt only (restart count 0).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from typing import Any

RANK = int(os.environ.get("RANK", "0"))
WATCH = os.path.realpath(os.environ.get("CNNKIT_TEST_WATCH", "/nonexistent-cnnkit-watch"))
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
WRITES: list[str] = []


def _is_write(event: str, args: tuple[Any, ...]) -> bool:
    if event == "open":
        mode, flags = args[1], args[2]
        return any(c in mode for c in "wax+") if isinstance(mode, str) else bool(int(flags or 0) & WRITE_FLAGS)
    return event in ("os.rename", "os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree")


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not args or not isinstance(args[0], (str, bytes, os.PathLike)) or not _is_write(event, args):
        return
    path = os.path.realpath(os.fsdecode(args[0]))
    if path.startswith(WATCH):
        WRITES.append(f"{event}:{os.path.relpath(path, WATCH)}")


def _report() -> None:
    print(f"AUDIT rank={RANK} writes={len(WRITES)} {sorted(set(WRITES))[:20]}", flush=True)


def _at_training_batch(n: int, action: Any) -> None:
    """Call ``action()`` when this process prepares its ``n``-th training batch."""
    from cnnkit.engine.step import StepSetup

    original, calls = StepSetup.inputs, []

    def inputs(self: StepSetup, batch: Any, **kw: Any) -> Any:
        if kw.get("generator") is not None:  # training batches only
            calls.append(1)
            if len(calls) == n:
                action()
        return original(self, batch, **kw)

    StepSetup.inputs = inputs  # type: ignore[method-assign]


def _fail() -> None:
    from cnnkit.errors import DataError

    raise DataError(f"synthetic failure on rank {RANK} at training batch 2")


def _kill() -> None:
    print(f"KILLING rank {RANK} (SIGKILL)", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    sys.addaudithook(_audit)
    atexit.register(_report)
    if os.environ.get("CNNKIT_TEST_FAIL_RANK") == str(RANK):
        _at_training_batch(2, _fail)
    if os.environ.get("CNNKIT_TEST_KILL_RANK") == str(RANK) and os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0":
        _at_training_batch(int(os.environ["CNNKIT_TEST_KILL_BATCH"]), _kill)
    from cnnkit.cli import main

    sys.exit(main(sys.argv[1:]))
