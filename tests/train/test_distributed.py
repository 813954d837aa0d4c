"""DDP through the real ``torchrun`` (CPU, gloo, two processes) against one process.

The runs share one module-scoped experiment: 24 synthetic 40x30 PNGs (16 train, 7 val, 1
test) and a spec WITHOUT BatchNorm (SyncBatchNorm has no CPU version, and per-rank batch
statistics would make one and two processes differ). One process uses batch 4; two
processes use batch 2 each, so the global batch and therefore every SGD step are the same.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from cnnkit.engine.scored import Outputs
from cnnkit.errors import ConfigError
from cnnkit.experiment import load_experiment, run_experiment
from cnnkit.infer.evaluate import evaluate
from cnnkit.train.distributed import SINGLE, DistContext, merge_outputs

TORCHRUN = Path(sys.executable).with_name("torchrun")
WORKER = Path(__file__).with_name("_ddp_worker.py")
SPEC = [["conv", {"filter_size": 3, "layer_depth": 6, "strides": [1, 2, 2, 1]}], ["relu"],
        ["conv", {"filter_size": 3, "layer_depth": 8, "strides": [1, 2, 2, 1]}], ["relu"], ["global_avg_pool"]]
#: Only stops a hung job (a test fails by what the job did, never by how fast a busy machine ran it).
TIMEOUT_S = 900

pytestmark = pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed next to python")


def _write_data(folder: Path) -> Path:
    """24 images with a bright 3x3 dot (landmark p0) and its mirror (p1); split column 16/7/1."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        img = rng.integers(0, 60, size=(30, 40, 3), dtype=np.uint8)
        x, y = int(rng.integers(3, 37)), int(rng.integers(3, 27))
        img[y - 1 : y + 2, x - 1 : x + 2] = 255
        Image.fromarray(img).save(folder / f"img_{i:02d}.png")
        split = "train" if i < 16 else "val" if i < 23 else "test"
        rows.append({"image": f"img_{i:02d}.png", "x0": x + 0.5, "x1": 39.5 - x, "y0": y + 0.5, "y1": 29.5 - y,
                     "split": split})
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    exp = {
        "model": {"spec": SPEC},
        "data": {"source": "labels.csv", "images": ".", "split": {"column": "split"}, "size": "40x30"},
        # schedule none: the resume test extends a 1-epoch run to 2, which a cosine over the run's
        # length would not repeat (its first epoch decayed over 1 epoch, not 2)
        # fp32: a batch split over two processes sums its gradients in another order, which bf16 (the
        # default where it is native) rounds visibly; the equality checked is DDP's, not the arithmetic's
        "train": {"epochs": 2, "batch_size": 2, "lr": 0.05, "optimizer": "sgd", "seed": 3, "device": "cpu",
                  "plots": False, "schedule": "none", "precision": "fp32"},
        "augment": None,  # per-rank augmentation draws differ by design, so equal weights need none
        "output": "ddp",
    }
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return path


def _torchrun(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                               "MASTER_PORT")}
    full_env = {**clean, "OMP_NUM_THREADS": "1", "CNNKIT_DIST_TIMEOUT_S": "60", **env}
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", *args]
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=TIMEOUT_S)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One process (batch 4) in this process, and two processes (batch 2 each) through torchrun."""
    folder = tmp_path_factory.mktemp("ddp")
    exp_path = _write_data(folder)
    run_experiment(load_experiment(exp_path, ["train.batch_size=4", "output=single"]), quiet=True)
    done = _torchrun([str(WORKER), "train", str(exp_path)], folder, CNNKIT_TEST_WATCH=str(folder))
    assert done.returncode == 0, done.stdout + done.stderr
    return {"folder": folder, "exp": exp_path, "out": done.stdout + done.stderr}


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path)


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    assert not any(k.startswith("module.") for k in wa)  # the unwrapped module was saved
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-5, atol=1e-6, msg=key)


def test_two_processes_with_half_the_batch_give_the_same_weights(runs: dict[str, Any]) -> None:
    folder = runs["folder"]
    _assert_same_weights(folder / "single" / "last.safetensors", folder / "ddp" / "last.safetensors")
    initial = load_file(folder / "single" / "last.safetensors")
    assert any(v.abs().sum() > 0 for v in initial.values())
    one, two = pd.read_csv(folder / "single" / "metrics.csv"), pd.read_csv(folder / "ddp" / "metrics.csv")
    assert list(two["epoch"]) == [1, 2]
    for col in ("train_loss", "val_loss", "val_error_px_mean", "val_baseline_px_mean"):
        np.testing.assert_allclose(two[col], one[col], rtol=1e-4, err_msg=col)


def test_only_rank_0_writes_files_and_logs(runs: dict[str, Any]) -> None:
    audits = dict(re.findall(r"AUDIT rank=(\d) writes=(\d+)", runs["out"]))
    assert audits["1"] == "0", runs["out"]
    assert int(audits["0"]) > 5  # the audit does see rank 0's checkpoints, metrics, settings
    names = {p.name for p in (runs["folder"] / "ddp").iterdir()}
    assert {"last.safetensors", "best.safetensors", "last.state.pt", "metrics.csv", "settings.json",
            "experiment.yaml", "test_metrics.json"} <= names
    assert not any(n.startswith(".") for n in names)  # no temporary files left behind
    assert len(re.findall(r"^epoch 1/2 ", runs["out"], flags=re.M)) == 1


def test_validation_metrics_equal_one_process_on_the_same_weights(runs: dict[str, Any]) -> None:
    """7 val rows on 2 ranks (4 + 3, no padding): the reduced metrics are the single-process ones."""
    folder = runs["folder"]
    val = load_experiment(runs["exp"]).tables()["val"]
    assert len(val) == 7
    single = evaluate(folder / "ddp" / "last.safetensors", val, device="cpu").metrics
    last = pd.read_csv(folder / "ddp" / "metrics.csv").iloc[-1]
    for key in ("error_px_mean", "error_px_median", "nme"):
        if key in single and f"val_{key}" in last:
            assert last[f"val_{key}"] == pytest.approx(single[key], rel=1e-6), key
    assert last["val_error_px_mean"] == pytest.approx(single["error_px_mean"], rel=1e-6)


def test_resume_under_two_processes_repeats_the_uninterrupted_run(runs: dict[str, Any]) -> None:
    folder, exp = runs["folder"], str(runs["exp"])
    first = _torchrun(["-m", "cnnkit", "train", exp, "--set", "train.epochs=1", "--set", "output=resumed"], folder)
    assert first.returncode == 0, first.stdout + first.stderr
    assert len(pd.read_csv(folder / "resumed" / "metrics.csv")) == 1
    second = _torchrun(["-m", "cnnkit", "train", exp, "--resume", "--set", "output=resumed"], folder)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resuming" in second.stderr and "after epoch 1" in second.stderr
    assert list(pd.read_csv(folder / "resumed" / "metrics.csv")["epoch"]) == [1, 2]
    _assert_same_weights(folder / "ddp" / "last.safetensors", folder / "resumed" / "last.safetensors")


def test_torchrun_max_restarts_survives_a_killed_rank(runs: dict[str, Any]) -> None:
    """A job script's line: rank 1 is SIGKILLed in epoch 2; torchrun restarts both workers with the same
    ``--resume`` command line, and the job ends with the uninterrupted run's epochs and weights."""
    folder = runs["folder"]
    done = _torchrun(["--max-restarts=1", "--monitor-interval=0.2", str(WORKER), "train", str(runs["exp"]),
                         "--resume", "--set", "output=elastic"], folder,
                        CNNKIT_TEST_KILL_RANK="1", CNNKIT_TEST_KILL_BATCH="6")  # 4 batches per epoch and rank
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert out.count("KILLING rank 1") == 1, out
    assert "nothing to resume" in out  # the first attempt: a fresh start, said in one line
    assert re.search(r"resuming \S+ after epoch 1|nothing to resume.*\n(.*\n)*.*nothing to resume", out), out
    assert list(pd.read_csv(folder / "elastic" / "metrics.csv")["epoch"]) == [1, 2]
    assert not any(p.name.startswith(".") for p in (folder / "elastic").iterdir())  # no temp file left behind
    _assert_same_weights(folder / "ddp" / "last.safetensors", folder / "elastic" / "last.safetensors")


def test_a_failing_rank_ends_the_job_with_its_message(runs: dict[str, Any]) -> None:
    folder = runs["folder"]
    # The surviving rank waits in a collective: the job must end because torchrun stops it when rank 1 fails,
    # not because that collective times out. The timeout is set far beyond the test's own (TIMEOUT_S), so a job
    # that only a timeout would end fails the test as hung, however fast or slow the machine.
    done = _torchrun([str(WORKER), "train", str(runs["exp"]), "--set", "output=failed"], folder,
                     CNNKIT_TEST_FAIL_RANK="1", CNNKIT_DIST_TIMEOUT_S=str(10 * TIMEOUT_S))
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "synthetic failure on rank 1 at training batch 2" in out
    assert not (folder / "failed" / "last.safetensors").exists()


# -- in-process pieces --------------------------------------------------------------------------


def _outputs(index: list[int], loss: float) -> Outputs:
    idx = np.array(index)
    pts = np.full((len(idx), 2, 2), 0.0) + idx[:, None, None]
    return Outputs(index=idx, pred=pts, true=pts + 1, scale=np.ones((len(idx), 2)), offset=np.zeros((len(idx), 2)),
                   pred_input_px=pts * 2, loss=loss)


def test_merge_outputs_restores_table_order_and_row_weighted_loss() -> None:
    merged = merge_outputs([_outputs([0, 2, 4, 6], 1.0), _outputs([1, 3, 5], 2.0), _outputs([], float("nan"))])
    assert merged.index.tolist() == list(range(7))
    assert merged.pred[:, 0, 0].tolist() == [float(i) for i in range(7)]
    assert merged.true is not None and merged.true[3, 1, 1] == 4.0
    assert merged.pred_input_px is not None and merged.pred_input_px[5, 0, 0] == 10.0
    assert merged.loss == pytest.approx((4 * 1.0 + 3 * 2.0) / 7)


def test_single_process_context_is_the_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = DistContext.from_env("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.owns_group) == (0, 1, True, False)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert DistContext.from_env("cpu") == SINGLE  # torchrun with one process: no group
    t = torch.tensor([1.0, 2.0])
    out = SINGLE.reduce_sum(t)
    out += 1
    assert t.tolist() == [1.0, 2.0] and SINGLE.gather("x") == ["x"]
    net = torch.nn.Linear(2, 2)
    assert SINGLE.wrap(net, sync_bn=True) is net


def test_rank_seeds_differ_except_rank_0() -> None:
    seeds = [DistContext(rank=r, world_size=4).rank_seed(7) for r in range(4)]
    assert seeds[0] == 7 and len(set(seeds)) == 4
    assert all(0 <= s < 2**63 for s in seeds)


def test_config_errors_name_what_to_change(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="sync_bn: SyncBatchNorm needs GPUs"):
        DistContext(rank=0, world_size=2).wrap(torch.nn.Conv2d(1, 1, 1), sync_bn=True)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match=r"WORLD_SIZE='two': expected an integer"):
        DistContext.from_env("cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("CNNKIT_DIST_TIMEOUT_S", "soon")
    with pytest.raises(ConfigError, match="CNNKIT_DIST_TIMEOUT_S='soon'"):
        DistContext.from_env("cpu")
