"""``cnnkit`` command line under torchrun, with a file-write audit and an optional failing rank.

Used by ``test_distributed.py`` as ``torchrun --nproc_per_node=2 _ddp_worker.py train EXP.yaml``.

Environment:
    CNNKIT_TEST_WATCH: a folder; every write under it (open for writing, rename, mkdir,
        remove) is recorded and printed at exit as ``AUDIT rank=R writes=N [...]``.
    CNNKIT_TEST_FAIL_RANK: the rank whose second training batch raises a DataError.
"""

from __future__ import annotations

import atexit
import os
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


def _fail_on_second_batch() -> None:
    from cnnkit.engine.step import StepSetup
    from cnnkit.errors import DataError

    original, calls = StepSetup.inputs, []

    def inputs(self: StepSetup, batch: Any, **kw: Any) -> Any:
        if kw.get("generator") is not None:  # training batches only
            calls.append(1)
            if len(calls) == 2:
                raise DataError(f"synthetic failure on rank {RANK} at training batch 2")
        return original(self, batch, **kw)

    StepSetup.inputs = inputs  # type: ignore[method-assign]


if __name__ == "__main__":
    sys.addaudithook(_audit)
    atexit.register(_report)
    if os.environ.get("CNNKIT_TEST_FAIL_RANK") == str(RANK):
        _fail_on_second_batch()
    from cnnkit.cli import main

    sys.exit(main(sys.argv[1:]))
