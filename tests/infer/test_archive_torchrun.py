"""predict over a video archive through the real ``torchrun`` (CPU, gloo, two processes).

Six short videos in nested folders (9, 8, 7, 6, 5 and 4 frames). The worker records, per rank and
torchrun attempt, every frame that went through the model and every video written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from cnnkit.io.checkpoint import save_model
from cnnkit.model.builder import build_model

TORCHRUN = Path(sys.executable).with_name("torchrun")
WORKER = Path(__file__).with_name("_archive_worker.py")
FRAMES = {"a/one.mp4": 9, "a/two.mp4": 8, "b/c/three.mp4": 7, "b/four.mp4": 6, "five.mp4": 5, "b/c/six.mp4": 4}
TIMEOUT_S = 600  # two processes importing torch on a loaded 2-core machine

pytestmark = pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed next to python")


def _model(path: Path) -> Path:
    model = build_model([["conv", {"filter_size": 1, "layer_depth": 3}]], size=(48, 32), channels=3, outputs=2,
                        head="gap")
    with torch.no_grad():
        model.head_net.fc.bias.fill_(1.0)
    meta = {"task": "landmarks", "landmarks": ["p"], "classes": [], "size": [48, 32], "channels": 3,
            "normalisation": {"mean": [0.0] * 3, "std": [1.0] * 3}, "grayscale": False, "letterbox": False,
            "flip_pairs": []}
    return save_model(path, model, meta)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("_conftest", Path(__file__).parents[1] / "conftest.py")
    assert spec is not None and spec.loader is not None
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    folder = tmp_path_factory.mktemp("archive_ddp")
    for rel, n in FRAMES.items():
        (folder / "archive" / rel).parent.mkdir(parents=True, exist_ok=True)
        conftest.write_index_video(folder / "archive" / rel, n)
    return {"folder": folder, "root": folder / "archive", "model": _model(folder / "m.safetensors")}


def _torchrun(lab: dict[str, Path], out: str, log: str, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                               "MASTER_PORT")}
    (lab["folder"] / log).mkdir(exist_ok=True)
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", *extra, str(WORKER), "-q", "predict",
           str(lab["model"]), str(lab["root"]), "--out", str(lab["folder"] / out), "--device", "cpu",
           "--batch-size", "4"]
    full_env = {**clean, "OMP_NUM_THREADS": "1", "CNNKIT_DIST_TIMEOUT_S": "120",
                "CNNKIT_TEST_LOG": str(lab["folder"] / log), **env}
    return subprocess.run(cmd, cwd=lab["folder"], env=full_env, capture_output=True, text=True, timeout=TIMEOUT_S)


def _log(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """``"<attempt>-<rank>"`` -> the videos that rank wrote, in order."""
    return {p.stem: [json.loads(line) for line in p.read_text().splitlines()] for p in sorted(folder.glob("*.jsonl"))}


def _check_outputs(out: Path) -> None:
    for rel, n in FRAMES.items():
        assert pd.read_csv(out / Path(rel).with_suffix(".csv"))["frame"].tolist() == list(range(n)), rel
        assert (out / Path(rel).with_name(f"{Path(rel).stem}.cnnkit.json")).is_file()
    assert not [p for p in out.rglob(".*")]  # no temporary file left behind


def test_two_processes_predict_each_frame_once_then_a_rerun_skips_all(lab: dict[str, Path]) -> None:
    done = _torchrun(lab, "preds", "log")
    assert done.returncode == 0, done.stdout + done.stderr
    log = _log(lab["folder"] / "log")
    assert sorted(log) == ["0-0", "0-1"]
    videos = [v["video"] for rank in log.values() for v in rank]
    assert sorted(videos) == sorted(FRAMES)  # disjoint shares that cover the archive
    for rank in log.values():
        for v in rank:
            assert v["frames"] == list(range(FRAMES[v["video"]])) and v["scored"] == v["frames"]  # each frame once
    loads = sorted(sum(FRAMES[v["video"]] for v in rank) for rank in log.values())
    assert loads == [19, 20]  # balanced by frame count (39 frames): longest first onto the least-loaded
    assert done.stdout.count("archive: 6 videos") == 1  # rank 0 alone reports
    summary = pd.read_csv(lab["folder"] / "preds" / "archive_summary.csv").set_index("video")
    assert set(summary["status"]) == {"predicted"} and set(summary["rank"]) == {0, 1}
    assert {v["video"]: int(k[-1]) for k, rank in log.items() for v in rank} == summary["rank"].to_dict()
    _check_outputs(lab["folder"] / "preds")

    again = _torchrun(lab, "preds", "log_again")
    assert again.returncode == 0, again.stdout + again.stderr
    assert _log(lab["folder"] / "log_again") == {}  # nothing predicted the second time
    assert set(pd.read_csv(lab["folder"] / "preds" / "archive_summary.csv")["status"]) == {"skipped"}


def test_max_restarts_survives_a_killed_rank(lab: dict[str, Path]) -> None:
    """Rank 1 is SIGKILLed at its second video; torchrun restarts both workers with the same command line,
    and the restarted ranks predict only what had no completion record."""
    done = _torchrun(lab, "elastic", "log_elastic", "--max-restarts=1", "--monitor-interval=0.2",
                     CNNKIT_TEST_KILL_RANK="1")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert out.count("KILLING rank 1") == 1, out
    log = _log(lab["folder"] / "log_elastic")
    first = {v["video"] for k, rank in log.items() if k.startswith("0-") for v in rank}
    second = {v["video"] for k, rank in log.items() if k.startswith("1-") for v in rank}
    assert first and second and first | second == set(FRAMES)
    assert len(first & second) <= 1  # at most rank 0's video in flight when torchrun stopped it
    summary = pd.read_csv(lab["folder"] / "elastic" / "archive_summary.csv").set_index("video")
    assert set(summary["status"]) <= {"predicted", "skipped"} and len(summary) == len(FRAMES)
    assert set(summary.index[summary["status"] == "skipped"]) <= first
    _check_outputs(lab["folder"] / "elastic")
