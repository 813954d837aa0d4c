"""Crash safety: SIGKILL the real ``cnnkit train`` at random points, resume, lose nothing.

The harness runs ``python -m cnnkit train exp.yaml`` on a tiny synthetic set (24 PNGs, a
two-layer spec, 6 epochs of a fraction of a second), kills it with SIGKILL at seeded random
moments (during startup, a training step, validation or a checkpoint write: the moment is
a random delay after an epoch's checkpoint appears, no hooks in the library), checks the run
folder after every kill and resumes with ``--resume``. Then injected ``OSError``s (disk full)
during a checkpoint write must leave the previous checkpoint intact.

``CNNKIT_CRASH_KILLS`` (default 4) sets the number of kills; docs/RELIABILITY.md records a
longer run.
"""

from __future__ import annotations

import errno
import os
import random
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import safetensors.torch
import torch
import yaml

import cnnkit
from cnnkit import atomic
from cnnkit.io.checkpoint import load_state, read_meta

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"
TINY_SPEC = [["conv", {"filter_size": 3, "layer_depth": 4}], ["relu"]]
# 10 epochs of a tiny model: at 6 a loaded machine once let the poller miss every commit until the run
# had ended, leaving one kill where the test needs two.
EPOCHS = int(os.environ.get("CNNKIT_CRASH_EPOCHS", "10"))
KILLS = int(os.environ.get("CNNKIT_CRASH_KILLS", "4"))
FIT = {"size": (16, 16), "batch_size": 4, "device": "cpu", "quiet": True, "plots": False, "head": "gap", "seed": 0,
       "schedule": "none"}  # a schedule is laid out over the epochs asked for: resumes here ask for more


def _experiment(folder: Path, source: Path) -> Path:
    settings = {"model": {"spec": TINY_SPEC, "head": "gap"},
                "data": {"source": str(source), "size": "16x16", "split": [0.75, 0.25]},
                "train": {"epochs": EPOCHS, "batch_size": 4, "device": "cpu", "plots": False, "seed": 0},
                "output": str(folder / "run")}
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def _start(exp: Path, resume: bool, log: Path) -> subprocess.Popen[bytes]:
    cmd = [str(PYTHON), "-m", "cnnkit", "train", str(exp)] + (["--resume"] if resume else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=exp.parent, env=env)


def check_run_folder(run: Path) -> int:
    """Every checkpoint file loads (none torn) and they agree; returns the resumable epoch (0: none).

    best.safetensors and metrics.csv are written just BEFORE last.state.pt, so a kill between
    those writes may leave them one epoch ahead of the state (see docs/RELIABILITY.md); never more.
    last.safetensors is written once, after the last epoch's state: it never holds a later epoch than the state.
    """
    for f in sorted(run.glob("*.safetensors")):
        meta = read_meta(f)  # raises CheckpointError on a torn or foreign file
        assert safetensors.torch.load_file(str(f)), f
        assert meta["task"] == "landmarks", f
    state_path = run / "last.state.pt"
    if not state_path.exists():
        return 0
    epoch = int(load_state(state_path)["epoch"])
    assert 1 <= epoch <= EPOCHS
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["epoch"].tolist() == list(range(1, len(metrics) + 1))
    assert epoch <= len(metrics) <= epoch + 1, (epoch, len(metrics))
    if (run / "last.safetensors").exists():
        assert read_meta(run / "last.safetensors")["epoch"] <= epoch
    assert len(load_state(state_path)["extra"]["history"]) == epoch
    return epoch


def _wait_for_epoch(run: Path, proc: subprocess.Popen[bytes], target: int, timeout: float = 120) -> bool:
    """Poll until last.state.pt holds an epoch >= ``target`` (False if the process ends first)."""
    path, end, seen = run / "last.state.pt", time.monotonic() + timeout, -1
    while time.monotonic() < end and proc.poll() is None:
        try:
            stamp = path.stat().st_mtime_ns
        except FileNotFoundError:
            stamp = -1
        if stamp != seen and stamp != -1:
            seen = stamp
            if int(load_state(path)["epoch"]) >= target:  # atomic writes: never a torn file to read
                return True
        time.sleep(0.002)
    return False


def _kill_once(exp: Path, rng: random.Random, k: int, before: int) -> dict[str, Any]:
    run = exp.parent / "run"
    log = exp.parent / f"kill{k}.log"
    proc = _start(exp, resume=True, log=log)  # as a job script would: --resume every time
    mode = rng.choice(["startup", "in-epoch", "in-epoch"])
    # in-epoch: a random moment up to ~2 epochs after a randomly chosen checkpoint, so kills land in
    # training steps, validation and the checkpoint writes themselves.
    delay = rng.uniform(0.3, 3.0) if mode == "startup" else rng.uniform(0.0, 0.25)
    target = before + 1 + rng.randrange(2)
    if mode == "in-epoch" and not _wait_for_epoch(run, proc, target):
        mode = "startup"  # the process ended or stalled: kill it now
    time.sleep(delay)
    finished = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    text = log.read_text(errors="replace")
    resumed = re.search(r"resuming .* after epoch (\d+)", text)
    if resumed:  # the resumed process started exactly from the last complete checkpoint
        assert int(resumed.group(1)) == before, text
    if before == 0 and "epoch 1/" in text:  # it got as far as training: it said it started afresh
        assert "nothing to resume" in text, text
    assert "Traceback" not in text, text
    after = check_run_folder(run)
    assert after >= before  # a kill never loses a completed checkpoint
    temps = sorted(p.name for p in run.glob(".*.tmp"))  # left by a kill during a write (see the doc)
    rows = len(pd.read_csv(run / "metrics.csv")) if (run / "metrics.csv").exists() else 0
    return {"kill": k, "mode": mode, "delay_s": round(delay, 3), "epoch_before": before, "epoch_after": after,
            "resumed_from": int(resumed.group(1)) if resumed else None,
            "finished_first": finished, "temp_files": len(temps), "metrics_ahead": rows - after}


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume(tmp_path: Path, make_set: Callable[..., Path]) -> None:
    exp = _experiment(tmp_path, make_set(tmp_path / "data", n=48))
    rng = random.Random(20261126)
    epoch, records = 0, []
    for k in range(KILLS):
        if epoch == EPOCHS:
            break
        records.append(_kill_once(exp, rng, k, epoch))
        epoch = records[-1]["epoch_after"]
    proc = _start(exp, resume=True, log=tmp_path / "final.log")
    assert proc.wait(timeout=300) == 0, (tmp_path / "final.log").read_text()
    final = (tmp_path / "final.log").read_text()
    if epoch:
        assert f"after epoch {epoch}" in final
    run = tmp_path / "run"
    assert check_run_folder(run) == EPOCHS
    assert (run / "last.safetensors").exists() and not list(run.glob(".*.tmp"))  # stale temp files cleaned
    assert len(pd.read_csv(run / "metrics.csv")) == EPOCHS
    print("\n".join(str(r) for r in records))  # pytest -s shows the kill log
    assert len(records) >= min(KILLS, 2)


# -- in-process: exact resume, injected write failures ---------------------------------------
@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory, make_set: Callable[..., Path]) -> tuple[Any, Any]:
    t = cnnkit.read_annotations(make_set(tmp_path_factory.mktemp("crash") / "data", n=12))
    return t.split((0.75, 0.25), seed=0)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(path))


def test_resume_after_a_completed_epoch_is_exact(tmp_path: Path, table: tuple[Any, Any]) -> None:
    train, val = table
    cnnkit.fit(TINY_SPEC, train, val, out_dir=tmp_path / "a", epochs=3, **FIT)
    cnnkit.fit(TINY_SPEC, train, val, out_dir=tmp_path / "b", epochs=2, **FIT)
    cnnkit.fit(TINY_SPEC, train, val, out_dir=tmp_path / "b", epochs=3, resume=True, **FIT)
    a, b = _weights(tmp_path / "a" / "last.safetensors"), _weights(tmp_path / "b" / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ma, mb = pd.read_csv(tmp_path / "a" / "metrics.csv"), pd.read_csv(tmp_path / "b" / "metrics.csv")
    assert ma["train_loss"].tolist() == mb["train_loss"].tolist()


def _victim(fd_or_path: int | Any, victim: str) -> bool:
    """Whether a temp file (by fd) or a destination (by path) belongs to the file ``victim``."""
    name = os.readlink(f"/proc/self/fd/{fd_or_path}") if isinstance(fd_or_path, int) else str(fd_or_path)
    base = Path(name).name
    return base == victim or base.startswith(f".{victim}.")


class _HalfFull:
    """A temp file whose write stores half the bytes, then fails: the disk filled up mid-write."""

    def __init__(self, f: Any) -> None:
        self.f = f

    def __enter__(self) -> _HalfFull:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.f.close()

    def write(self, data: bytes) -> int:
        self.f.write(bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device (injected)")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)


def _failing(kind: str, victim: str, real: dict[str, Callable[..., Any]]) -> Callable[..., Any]:
    """A stand-in for os.replace / os.fsync / os.fdopen that fails with ENOSPC for ``victim`` only."""

    def full() -> OSError:
        return OSError(errno.ENOSPC, "No space left on device (injected)")

    def replace(src: Any, dst: Any, *a: Any, **k: Any) -> Any:
        if _victim(dst, victim):
            raise full()
        return real["replace"](src, dst, *a, **k)

    def fsync(fd: int) -> None:
        if _victim(fd, victim):
            raise full()
        real["fsync"](fd)

    def fdopen(fd: int, *a: Any, **k: Any) -> Any:
        f = real["fdopen"](fd, *a, **k)
        return _HalfFull(f) if _victim(fd, victim) else f

    return {"replace": replace, "fsync": fsync, "fdopen": fdopen}[kind]


@pytest.mark.parametrize(("kind", "victim"), [("fsync", "best.safetensors"), ("fsync", "metrics.csv"),
                                              ("replace", "metrics.csv"), ("fdopen", "last.state.pt"),
                                              ("replace", "last.state.pt")])
def test_failing_checkpoint_write_keeps_previous_checkpoint(kind: str, victim: str, tmp_path: Path,
                                                            table: tuple[Any, Any],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Disk full during epoch 3's commit (on the writer thread): the failed file keeps epoch 2 byte for byte."""
    train, val = table
    out = tmp_path / "run"
    fit = {**FIT, "select": "last"}  # best changes every epoch, so every commit writes it
    cnnkit.fit(TINY_SPEC, train, val, out_dir=out, epochs=2, **fit)
    order = ["best.safetensors", "metrics.csv", "last.state.pt"]  # a commit writes in this order
    before = {n: (out / n).read_bytes() for n in order}
    real = {"replace": os.replace, "fdopen": os.fdopen, "fsync": os.fsync}
    monkeypatch.setattr(atomic.os, kind, _failing(kind, victim, real))
    with pytest.raises(OSError, match="No space left on device"):
        cnnkit.fit(TINY_SPEC, train, val, out_dir=out, epochs=3, resume=True, **fit)
    monkeypatch.undo()
    untouched = order[order.index(victim):]  # the victim and every file after it
    assert {n: (out / n).read_bytes() for n in untouched} == {n: before[n] for n in untouched}
    assert not list(out.glob(".*.tmp"))  # the failed temp file was removed
    assert check_run_folder(out) == 2
    cnnkit.fit(TINY_SPEC, train, val, out_dir=out, epochs=3, resume=True, **fit)  # space is back: resume works
    assert check_run_folder(out) == 3


class _Crash(BaseException):
    """Stands for the process dying: nothing in the library catches a BaseException subclass."""


def test_crash_between_weights_and_state_still_resumes_exactly(tmp_path: Path, table: tuple[Any, Any],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    train, val = table
    cnnkit.fit(TINY_SPEC, train, val, out_dir=tmp_path / "a", epochs=3, **FIT)
    out = tmp_path / "b"
    cnnkit.fit(TINY_SPEC, train, val, out_dir=out, epochs=1, **FIT)
    from cnnkit.train import commit

    def crash(*args: Any, **kwargs: Any) -> None:
        raise _Crash

    monkeypatch.setattr(commit, "write_state", crash)  # on the writer thread, after best and metrics
    with pytest.raises(_Crash):
        cnnkit.fit(TINY_SPEC, train, val, out_dir=out, epochs=3, resume=True, **FIT)
    monkeypatch.undo()
    cnnkit.fit(TINY_SPEC, train, val, out_dir=out, epochs=3, resume=True, **FIT)
    a, b = _weights(tmp_path / "a" / "last.safetensors"), _weights(out / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_saved_best_value_matches_best_checkpoint(tmp_path: Path, table: tuple[Any, Any]) -> None:
    train, val = table
    out = tmp_path / "run"
    cnnkit.fit(TINY_SPEC, train, val, out_dir=out, epochs=3, **FIT)
    errors = pd.read_csv(out / "metrics.csv")["val_error_px_mean"]
    assert float(load_state(out / "last.state.pt")["extra"]["best_value"]) == pytest.approx(errors.min())


def test_resume_with_nothing_committed_starts_afresh_and_clears_leftovers(
        tmp_path: Path, table: tuple[Any, Any], caplog: pytest.LogCaptureFixture) -> None:
    """Killed during epoch 1's first state write: best and metrics without a state, and a temp file."""
    train, val = table
    cnnkit.fit(TINY_SPEC, train, val, out_dir=tmp_path / "a", epochs=2, **FIT)
    out = tmp_path / "run"
    cnnkit.fit(TINY_SPEC, train, val, out_dir=out, epochs=1, **FIT)
    (out / "last.state.pt").rename(out / ".last.state.pt.k1ll3d.tmp")
    (out / "last.safetensors").unlink()
    with caplog.at_level("INFO", logger="cnnkit"):
        cnnkit.fit(TINY_SPEC, train, val, out_dir=out, epochs=2, resume=True, **{**FIT, "quiet": False})
    said = [r.getMessage() for r in caplog.records if "nothing to resume" in r.getMessage()]
    assert said == [f"nothing to resume in {out} (no epoch committed yet): starting from epoch 1; clearing what "
                    "an unfinished start left: metrics.csv, best.safetensors"]
    assert not list(out.glob(".*.tmp"))
    assert check_run_folder(out) == 2
    a, b = _weights(tmp_path / "a" / "last.safetensors"), _weights(out / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_folder_of_another_run_naming_the_difference(tmp_path: Path,
                                                                      table: tuple[Any, Any]) -> None:
    train, val = table
    out = tmp_path / "run"
    cnnkit.fit(TINY_SPEC, train, val, out_dir=out, epochs=1, **FIT)
    settings = (out / "settings.json").read_bytes()
    with pytest.raises(cnnkit.CheckpointError, match=r"holds a different run \(train.lr: 0.001 in the folder, "
                                                      r"0.01 now; train.seed: 0 in the folder, 1 now\)"):
        cnnkit.fit(TINY_SPEC, train, val, out_dir=out, epochs=2, resume=True, **{**FIT, "lr": 0.01, "seed": 1})
    assert (out / "settings.json").read_bytes() == settings  # refused before anything was replaced
    with pytest.raises(cnnkit.CheckpointError, match=r"holds a different run \(rows.train: 9 in the folder, 8 now"):
        cnnkit.fit(TINY_SPEC, train.subset(range(8)), val, out_dir=out, epochs=2, resume=True, **FIT)
    with pytest.raises(cnnkit.CheckpointError, match=r"cannot resume from .*elsewhere: it holds no last.state.pt"):
        cnnkit.fit(TINY_SPEC, train, val, out_dir=out, epochs=2, resume=tmp_path / "elsewhere", **FIT)
    cnnkit.fit(TINY_SPEC, train, val, out_dir=out, epochs=2, resume=True, **{**FIT, "quiet": False})  # epochs may grow
    assert check_run_folder(out) == 2


def test_commits_follow_checkpoint_every_on_the_writer_thread(tmp_path: Path, table: tuple[Any, Any],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnkit.train import commit

    written: list[tuple[int, str]] = []
    real = commit.write_state

    def spy(path: Path, record: Any) -> Path:
        written.append((int(record["epoch"]), threading.current_thread().name))
        return real(path, record)

    monkeypatch.setattr(commit, "write_state", spy)
    train, val = table
    cnnkit.fit(TINY_SPEC, train, val, out_dir=tmp_path, epochs=5, checkpoint_every=2, **FIT)
    assert written == [(2, "cnnkit-checkpoint-writer"), (4, "cnnkit-checkpoint-writer"),
                       (5, "cnnkit-checkpoint-writer")]
    assert check_run_folder(tmp_path) == 5


def test_resume_leaves_the_callers_global_rngs_alone(tmp_path: Path, table: tuple[Any, Any]) -> None:
    """A run restores only what it draws from; numpy's, python's and torch's global RNGs stay the caller's."""
    train, val = table
    cnnkit.fit(TINY_SPEC, train, val, out_dir=tmp_path, epochs=1, **FIT)
    np.random.seed(123)
    random.seed(5)
    torch.manual_seed(7)
    cnnkit.fit(TINY_SPEC, train, val, out_dir=tmp_path, epochs=2, resume=True, **FIT)
    drawn = (np.random.rand(), random.random(), torch.rand(1).item())
    np.random.seed(123)
    random.seed(5)
    torch.manual_seed(7)
    assert drawn == (np.random.rand(), random.random(), torch.rand(1).item())
