"""One run per folder: a lock file that names its holder and is cleared when the holder is gone.

``RunLock.acquire(folder)`` is the first thing a run does to its folder (rank 0 only under
torchrun: the only process that writes there). The lock file, ``.cnnkit-run.lock``, holds the
holder's pid, host, start time and command line, so a refusal says who is writing:

    runs/r1 is in use by another run: pid 4242 on host lab-3, started 2025-05-02 14:03:11, command
    `cnnkit train exp.yaml`. Wait for it to end, or choose another output folder.

Two mechanisms, because either alone has a gap:

- an advisory ``flock`` on the file, held while the run lives: the kernel drops it when the
  process dies, however it dies, so a live holder is never mistaken for a dead one (pid reuse);
- the holder's identity in the file, for the message, and for where flock tells nothing (file
  systems without it, or with it local to each host): on this host a holder whose pid is gone
  (or now belongs to a process started later) is stale and cleared, saying so in one line. A
  holder on another host cannot be probed from here: the message says so and how to clear it,
  except for an earlier attempt of the same torchrun job (``TORCHELASTIC_RUN_ID``), which an
  elastic restart's new rank 0 takes over, wherever that attempt ran.

A process that already holds a folder's lock gets a nested handle (``fit`` inside
``run_experiment``). The lock file is removed on release, and so are the folders the lock had to
create if they are still empty (a run refused before writing leaves nothing behind).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shlex
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cnnkit.errors import ConfigError
from cnnkit.io.run_folder import LOCK

log = logging.getLogger("cnnkit")

LOCK_NAME = LOCK  # the run folder's lock file (io/run_folder names every file)
#: A holder that died while a child (a data-loader worker) keeps the flock: how long to wait for it.
ORPHAN_WAIT_S, ORPHAN_POLL_S = 10.0, 0.25


@dataclass(frozen=True)
class Holder:
    """Who holds a run folder, as written in its lock file."""

    pid: int
    host: str
    started: str
    command: str
    proc_start: str | None = None  # the process's start time on its host (Linux), against pid reuse
    job: str | None = None  # torchrun's TORCHELASTIC_RUN_ID: the same job across elastic restarts

    @classmethod
    def me(cls) -> Holder:
        job = os.environ.get("TORCHELASTIC_RUN_ID")
        return cls(pid=os.getpid(), host=socket.gethostname(), started=time.strftime("%Y-%m-%d %H:%M:%S"),
                   command=_command(), proc_start=_proc_start(os.getpid()),
                   job=None if job in (None, "", "none") else job)

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}, started {self.started}, command `{self.command}`"

    @property
    def here(self) -> bool:
        return self.host == socket.gethostname()

    def is_me(self) -> bool:
        return self.here and self.pid == os.getpid()

    def gone(self) -> bool | None:
        """True: certainly not running (this host: no such process, or a later one with its pid; another
        host: an earlier attempt of this torchrun job). False: running here. None: another host, unknown."""
        if not self.here:  # an earlier attempt of this torchrun job ran there: an elastic restart takes over
            return True if self.job is not None and self.job == Holder.me().job else None
        if not _alive(self.pid):
            return True
        return self.proc_start is not None and self.proc_start != _proc_start(self.pid)


class RunLock:
    """The held lock of one run folder; ``release()`` (or leaving the ``with`` block) gives it back."""

    def __init__(self, folder: Path, fd: int | None, created: list[Path]) -> None:
        self.folder, self._fd, self._created = folder, fd, created

    @classmethod
    def acquire(cls, folder: str | os.PathLike[str]) -> RunLock:
        """Take ``folder``'s lock (creating the folder), or raise ``ConfigError`` naming its holder."""
        folder = Path(folder)
        created = _make_folder(folder)
        try:
            fd = _take(folder / LOCK_NAME)
        except BaseException:
            _remove_empty(created)
            raise
        return cls(folder, fd, created)

    @property
    def nested(self) -> bool:
        """This process held the lock already; releasing this handle leaves it held."""
        return self._fd is None

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            (self.folder / LOCK_NAME).unlink()  # before the flock goes: a waiter re-checks the path
        _unlock(fd)
        os.close(fd)
        _remove_empty(self._created)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _take(path: Path) -> int | None:
    """The lock file's descriptor, flocked and holding our identity; None when this process holds it."""
    waited = 0.0
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as err:
            raise ConfigError(f"output {path.parent}: cannot write there ({err.strerror}). Nothing was written; "
                              "choose another output folder, or fix this one (permissions, free space).") from None
        got = _flock(fd)
        holder = _read(fd)
        if got is not False and not _still_linked(fd, path):  # released and removed meanwhile: again
            os.close(fd)
            continue
        if got is False or (holder is not None and holder.gone() is not True):
            os.close(fd)
            if holder is not None and holder.is_me():
                return None
            if got is False and holder is not None and holder.gone() is True and waited < ORPHAN_WAIT_S:
                time.sleep(ORPHAN_POLL_S)  # the holder died; a process it started still has the file
                waited += ORPHAN_POLL_S
                continue
            raise ConfigError(_busy(path, holder, got is False))
        if holder is not None:
            log.warning(f"{path.parent}: cleared the lock of a run that is no longer running ({holder.describe()})")
        _write(fd, Holder.me())
        return fd


def _busy(path: Path, holder: Holder | None, flocked: bool) -> str:
    folder = path.parent
    if holder is None:
        return f"{folder} is in use by another run (it is starting: its lock {path} is not written yet). " \
               "Wait for it to end, or choose another output folder."
    if holder.here or flocked:
        return f"{folder} is in use by another run: {holder.describe()}. Wait for it to end, or choose " \
               "another output folder."
    return (f"{folder} is locked by a run on another host: {holder.describe()}; cnnkit cannot check from "
            f"{socket.gethostname()} whether it still runs. If it has ended, delete {path} and start again; "
            "else choose another output folder.")


def _make_folder(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; the ones created, outermost first."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"output {folder} is a file, not a folder: choose another output folder") from None
    except NotADirectoryError:
        raise ConfigError(f"output {folder}: a part of that path is a file, not a folder: choose another "
                          "output folder") from None
    except OSError as err:
        raise ConfigError(f"output {folder}: cannot create it ({err.strerror}): choose another output "
                          "folder, or fix its permissions") from None
    return missing


def _remove_empty(created: list[Path]) -> None:
    for folder in reversed(created):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only succeeds while empty


def _flock(fd: int) -> bool | None:
    """True: locked; False: another open file holds it; None: this file system has no flock."""
    try:
        import fcntl
    except ImportError:  # Windows
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        return None  # ENOLCK, EOPNOTSUPP, EINVAL: no flock here; the identity alone decides
    return True


def _unlock(fd: int) -> None:
    with contextlib.suppress(ImportError, OSError):
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


def _still_linked(fd: int, path: Path) -> bool:
    """The descriptor is still the file at ``path`` (a releaser unlinks the file before unlocking it)."""
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _read(fd: int) -> Holder | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = b""
    while chunk := os.read(fd, 65536):
        text += chunk
    try:
        data: Any = json.loads(text.decode("utf-8"))
        return Holder(**data)
    except (ValueError, TypeError):  # empty (being written) or not ours: no holder to name
        return None


def _write(fd: int, holder: Holder) -> None:
    data = json.dumps(asdict(holder), indent=1).encode("utf-8")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)
    os.fsync(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22); None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # the command name may hold spaces and parentheses
    return fields[19] if len(fields) > 19 else None


def _command() -> str:
    """This process's command line as a user would recognise it: ``cnnkit train exp.yaml``."""
    if not sys.argv:
        return "python"
    first = sys.argv[0]
    head = ("cnnkit" if first.endswith(("cnnkit", "__main__.py")) else "python -c" if first == "-c"
            else shlex.quote(first))
    return " ".join([head, shlex.join(sys.argv[1:])]).strip()
