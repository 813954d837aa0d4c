"""Write checkpoints on a background thread while training goes on.

The shape of ``torch.distributed.checkpoint.async_save``: the caller copies what it wants
saved into CPU memory (cheap, on the training thread), hands a write job to the writer and
goes on; the job runs on one worker thread. At most one job is in flight: ``submit`` first
waits for the previous one, so files are written in submission order and a commit point
written last by a job stays the last thing written.

A job's error is raised in the training thread at the next ``submit`` or ``wait``, so a
full disk still stops the run (one epoch later), with one ``OSError`` naming the file
(``cnnkit.atomic`` turns what the writer raised into it; the command line prints one line).

On Linux the worker thread runs at the lowest CPU priority (nice 19; the nice value is per
thread there): on a machine whose cores the training threads keep busy, the write takes the
moments they leave idle instead of slowing the steps down. It still ends before the next
commit, since ``submit`` waits for it with the training threads idle.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable

log = logging.getLogger("cnnkit")


class BackgroundWriter:
    """Runs write jobs one at a time on a worker thread (``background=False``: inline, for tests)."""

    def __init__(self, *, background: bool = True) -> None:
        self.background = background
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, job: Callable[[], object]) -> None:
        """Wait for the previous job (raising its error), then start ``job``."""
        self.wait()
        if not self.background:
            job()
            return
        # Not a daemon: an interpreter that exits normally finishes the write in flight first.
        self._thread = threading.Thread(target=self._run, args=(job,), name="cnnkit-checkpoint-writer")
        self._thread.start()

    def _run(self, job: Callable[[], object]) -> None:
        _lowest_priority()
        try:
            job()
        except BaseException as err:  # handed to the training thread by wait()
            self._error = err

    @property
    def busy(self) -> bool:
        """Whether a job is still running."""
        return self._thread is not None and self._thread.is_alive()

    def finish(self) -> None:
        """Wait for the job in flight while another error is on its way: that error wins, this one is logged."""
        try:
            self.wait()
        except Exception as err:
            log.error(f"the checkpoint write in progress failed too: {type(err).__name__}: {err}")

    def wait(self) -> None:
        """Block until the job in flight (if any) is done; re-raise its error here."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise err


def _lowest_priority() -> None:
    """Lower THIS thread's CPU priority (Linux: per-thread nice values; elsewhere nothing)."""
    if not sys.platform.startswith("linux"):
        return  # on other systems PRIO_PROCESS would lower the whole process
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except OSError:
        pass  # not allowed here: the write runs at normal priority, only slower for the training
