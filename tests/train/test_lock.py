"""One run per folder: the lock refuses a second live run, names its holder, and clears a dead one's."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cnnkit.errors import ConfigError
from cnnkit.train.lock import LOCK_NAME, Holder, RunLock

ROOT = Path(__file__).resolve().parents[2]

HOLD = textwrap.dedent("""
    import sys
    from cnnkit.train.lock import RunLock
    with RunLock.acquire(sys.argv[1]):
        print("held", flush=True)
        sys.stdin.read()  # until the test closes it
""")


def hold_in_another_process(folder: Path) -> subprocess.Popen[str]:
    """A real second process that holds ``folder``'s lock until its stdin is closed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(done.stdout)


def plant(folder: Path, holder: Holder) -> Path:
    """A lock file as a run that was killed leaves it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    path.write_text(json.dumps(dataclasses.asdict(holder)))
    return path


def test_a_live_holder_in_another_process_is_named_and_the_folder_is_free_once_it_ends(tmp_path: Path) -> None:
    proc = hold_in_another_process(tmp_path / "run")
    try:
        with pytest.raises(ConfigError, match=rf"run is in use by another run: pid {proc.pid} on host "
                                              rf"{socket.gethostname()}, started .*, command `python -c .*run`") as info:
            RunLock.acquire(tmp_path / "run")
        assert "Wait for it to end, or choose another output folder" in str(info.value)
    finally:
        proc.communicate("", timeout=60)  # closes its stdin: it releases and ends
    assert proc.returncode == 0 and not (tmp_path / "run" / LOCK_NAME).exists()
    with RunLock.acquire(tmp_path / "run") as lock:
        assert not lock.nested and (tmp_path / "run" / LOCK_NAME).is_file()
        with RunLock.acquire(tmp_path / "run") as inner:  # the same process again (fit inside run_experiment)
            assert inner.nested
        assert (tmp_path / "run" / LOCK_NAME).is_file()  # the nested release leaves it held
    assert not (tmp_path / "run").exists()  # made by the lock, so removed with it (it was empty)


def test_a_killed_holders_lock_is_cleared_saying_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "run"
    proc = hold_in_another_process(folder)
    proc.kill()  # SIGKILL: no release; the lock file stays, with the dead pid in it
    proc.wait(timeout=60)
    assert (folder / LOCK_NAME).is_file()
    with caplog.at_level(logging.WARNING, logger="cnnkit"), RunLock.acquire(folder):
        holder = json.loads((folder / LOCK_NAME).read_text())
        assert holder["pid"] == os.getpid()
    assert f"cleared the lock of a run that is no longer running (pid {proc.pid} on host" in caplog.text


def test_stale_and_foreign_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    me = Holder.me()
    # a dead pid on this host: stale
    plant(tmp_path / "dead", dataclasses.replace(me, pid=dead_pid(), proc_start=None))
    RunLock.acquire(tmp_path / "dead").release()
    # a live pid that now belongs to a process started later than the holder (pid reuse): stale
    plant(tmp_path / "reused", dataclasses.replace(me, pid=os.getppid(), proc_start="1"))
    RunLock.acquire(tmp_path / "reused").release()
    # a live process on this host that holds no flock (a file system without flock): still refused
    plant(tmp_path / "live", Holder(pid=os.getppid(), host=me.host, started="x", command="cnnkit train a.yaml"))
    with pytest.raises(ConfigError, match=rf"in use by another run: pid {os.getppid()}"):
        RunLock.acquire(tmp_path / "live")
    # another host cannot be probed: the message says so and how to clear it
    path = plant(tmp_path / "far", dataclasses.replace(me, host="node-7", pid=4242))
    with pytest.raises(ConfigError, match=rf"locked by a run on another host: pid 4242 on host node-7.*cannot check "
                                          rf"from {socket.gethostname()}.*If it has ended, delete {path} and start again"):
        RunLock.acquire(tmp_path / "far")
    assert path.is_file()  # nothing was touched
    # ... unless it is an earlier attempt of this torchrun job (an elastic restart's new rank 0 on another node)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-1")
    plant(tmp_path / "elastic", dataclasses.replace(me, host="node-7", pid=4242, job="job-1"))
    RunLock.acquire(tmp_path / "elastic").release()
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-2")  # another job's lock is not ours to take
    plant(tmp_path / "other-job", dataclasses.replace(me, host="node-7", pid=4242, job="job-1"))
    with pytest.raises(ConfigError, match="another host"):
        RunLock.acquire(tmp_path / "other-job")


def test_a_folder_the_lock_made_is_removed_when_the_run_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"output .*a\.txt is a file, not a folder"):
        RunLock.acquire(tmp_path / "a.txt")
    lock = RunLock.acquire(tmp_path / "new" / "deeper" / "run")
    lock.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]  # new/deeper/run were made, and removed empty
