"""kill -9 at the moments a job script meets most: start-up, the first epoch, the first state write,
and a write on the background checkpoint writer. After each, the SAME command (``train exp.yaml
--resume``) runs again; the last one finishes with weights bit-identical to an uninterrupted run.

The kills are exact, not timed: ``_kill_worker.py`` runs the real CLI and SIGKILLs itself at the
chosen moment (the random-timing campaign is test_crash_resume.py).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import safetensors.torch
import torch
import yaml

from cnnkit.experiment import load_experiment, run_experiment
from cnnkit.io.checkpoint import load_state, read_meta

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"
WORKER = Path(__file__).with_name("_kill_worker.py")
SPEC = [["conv", {"filter_size": 3, "layer_depth": 4}], ["relu"], ["drop_out", {"prop": 0.7}]]  # dropout: RNG
EPOCHS = 3


def _experiment(folder: Path, source: Path) -> Path:
    settings = {"model": {"spec": SPEC, "head": "gap"},
                "data": {"source": str(source), "size": "16x16", "split": [0.75, 0.25]},
                "train": {"epochs": EPOCHS, "batch_size": 4, "device": "cpu", "plots": False, "seed": 0},
                "output": str(folder / "run")}
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def _resume(exp: Path, kill_at: str = "") -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "CNNKIT_TEST_KILL_AT": kill_at}
    done = subprocess.run([str(PYTHON), str(WORKER), "train", str(exp), "--resume"], capture_output=True,
                          text=True, env=env, cwd=exp.parent, timeout=180)
    out = done.stdout + done.stderr
    assert "Traceback" not in out, out
    assert done.returncode == (-9 if kill_at else 0), out
    return out


def _state_epoch(run: Path) -> int:
    return int(load_state(run / "last.state.pt")["epoch"]) if (run / "last.state.pt").exists() else 0


@pytest.mark.slow
def test_kill_at_startup_first_epoch_first_state_write_and_background_write(
        tmp_path: Path, make_set: Callable[..., Path]) -> None:
    exp = _experiment(tmp_path, make_set(tmp_path / "data", n=16))
    run = tmp_path / "run"
    found = []
    for moment, committed in (("startup", 0), ("epoch1", 0), ("state1", 0), ("state2", 1)):
        out = _resume(exp, kill_at=moment)
        assert f"KILLED at {moment}" in out, out
        if moment != "startup":  # up to there, each start said it had nothing to continue
            assert "nothing to resume" in out and "starting from epoch 1" in out, out
        assert _state_epoch(run) == committed
        found.append(sorted(p.name for p in run.glob(".*.tmp")))
        for f in run.glob("*.safetensors"):
            read_meta(f)  # none torn
    assert "on thread cnnkit-checkpoint-writer" in out  # the second commit was a background write
    assert found[2] and found[3]  # both state kills left a temp file behind ...
    assert not (run / "last.safetensors").exists() and (run / "best.safetensors").exists()
    final = _resume(exp)
    assert "resuming" in final and "after epoch 1" in final, final
    assert not list(run.glob(".*.tmp"))  # ... cleaned at the next start
    assert _state_epoch(run) == EPOCHS and read_meta(run / "last.safetensors")["epoch"] == EPOCHS
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocesses (OMP_NUM_THREADS=1): the same reduction order
    try:
        run_experiment(load_experiment(exp, ["output=" + str(tmp_path / "ref")]), quiet=True)
    finally:
        torch.set_num_threads(threads)
    a = safetensors.torch.load_file(str(tmp_path / "ref" / "last.safetensors"))
    b = safetensors.torch.load_file(str(run / "last.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ma, mb = pd.read_csv(tmp_path / "ref" / "metrics.csv"), pd.read_csv(run / "metrics.csv")
    assert ma["train_loss"].tolist() == mb["train_loss"].tolist()
