"""Ensembles end to end: train N members into one folder (``--ensemble``), resume a killed member, use the
ensemble as one model (predict, evaluate, report, export). The experiment: ``tests/ensemble_fixtures.py``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from cnnkit.cli import main
from cnnkit.engine.step import StepSetup
from cnnkit.errors import CheckpointError
from cnnkit.experiment import load_experiment
from cnnkit.infer.evaluate import evaluate
from cnnkit.infer.predict import Predictor, predict
from cnnkit.io.ensemble import find_model, read_manifest
from cnnkit.io.export import ExportedEnsemble, export_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ensemble_fixtures import BATCHES_PER_EPOCH, write_experiment  # noqa: E402

PAIRS = ["--set", "data.flip_pairs=[[p0, p1]]"]  # a likelihood that varies: agreement with the mirror image


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("ensemble")
    exp = write_experiment(folder)
    assert main(["train", str(exp), "--ensemble", "2", "-q", *PAIRS]) == 0
    return {"folder": folder / "ens", "exp": exp, "tables": load_experiment(exp).tables()}


def test_members_are_ordinary_runs_with_their_own_seeds(trained: dict[str, Any]) -> None:
    ens = trained["folder"]
    manifest = json.loads((ens / "ensemble.json").read_text())
    assert manifest["format"] == "cnnkit-ensemble" and manifest["version"] == 1 and manifest["varies"] == "seed"
    assert [(m["folder"], m["seed"], m["done"]) for m in manifest["members"]] == [("member-1", 3, True),
                                                                                  ("member-2", 4, True)]
    assert [m["model"] for m in manifest["members"]] == ["member-1/best.safetensors", "member-2/best.safetensors"]
    for k, seed in ((1, 3), (2, 4)):
        member = ens / f"member-{k}"
        assert {"best.safetensors", "last.safetensors", "last.state.pt", "metrics.csv", "member.json"} <= \
            {p.name for p in member.iterdir()}
        assert json.loads((member / "settings.json").read_text())["train"]["seed"] == seed
    one, two = load_file(ens / "member-1" / "best.safetensors"), load_file(ens / "member-2" / "best.safetensors")
    assert any(not torch.equal(one[k], two[k]) for k in one)  # different seeds, different models
    # the ensemble's uncertainty, calibrated on the 7 validation images
    assert manifest["calibration"]["signal"] in ("likelihood", "spread", "both")
    record = manifest["uncertainty"]
    assert record["rows"] == 7 and record["points"] == 14 and set(record["val_auc"]) == {"likelihood", "spread", "both"}
    assert len(record["members_val_error_px"]) == 2
    # the experiment's test split was scored with the ensemble, and the report shows its uncertainty
    assert json.loads((ens / "test_metrics.json").read_text())["error_px_mean"] > 0
    page = (ens / "report.html").read_text()
    assert "Uncertainty: does it predict the error?" in page and "2 members (seeds 3, 4)" in page


def test_predict_gives_the_median_point_and_the_members_spread(trained: dict[str, Any]) -> None:
    ens, val = trained["folder"], trained["tables"]["val"]
    both = predict(ens, val, device="cpu")
    m1 = predict(ens / "member-1" / "best.safetensors", val, device="cpu")
    m2 = predict(ens / "member-2" / "best.safetensors", val, device="cpu")
    for c in ("p0_x", "p0_y", "p1_x", "p1_y"):  # the median of two members is their mean
        np.testing.assert_allclose(both[c], (m1[c] + m2[c]) / 2, rtol=1e-6)
    dx, dy = (m1["p0_x"] - m2["p0_x"]) / 2, (m1["p0_y"] - m2["p0_y"]) / 2  # each member's distance from the median
    np.testing.assert_allclose(both["p0_spread"], np.sqrt((dx ** 2 + dy ** 2) / 2), rtol=1e-6)
    assert list(both.columns) == ["image", "p0_x", "p0_y", "p0_likelihood", "p0_uncertainty", "p0_spread",
                                  "p1_x", "p1_y", "p1_likelihood", "p1_uncertainty", "p1_spread"]
    assert (both["p0_uncertainty"] > 0).all()
    # the folder, its ensemble.json and the Python predictor are the same model
    pd.testing.assert_frame_equal(predict(ens / "ensemble.json", val, device="cpu"), both)
    predictor = Predictor.from_checkpoint(ens, device="cpu")
    assert predictor.strategy.name == "ensemble of 2 (whole-frame)" and predictor.calibration is not None


def test_evaluate_says_how_well_the_uncertainty_ranks_the_errors(trained: dict[str, Any]) -> None:
    ev = evaluate(trained["folder"], trained["tables"]["val"], device="cpu")
    m = ev.metrics
    for key in ("likelihood_auc_10px", "spread_auc_10px", "uncertainty_auc_10px", "points_over_10px",
                "uncertainty_mean_px", "uncertainty_calibration_error_px"):
        assert key in m, key
    errors = ev.per_image[["error_px/p0", "error_px/p1"]].to_numpy()
    assert m["points_over_10px"] == float((errors > 10).sum())
    assert ev.reliability is not None and int(ev.reliability["n"].sum()) == 14
    assert "p0_uncertainty" in ev.per_image.columns and "p0_spread" in ev.per_image.columns


def test_export_writes_every_member_with_its_check_and_a_manifest(trained: dict[str, Any], tmp_path: Path) -> None:
    done = export_model(trained["folder"], tmp_path / "deploy", format="torchscript")
    assert isinstance(done, ExportedEnsemble) and [m.path.name for m in done.members] == ["member-1.pt", "member-2.pt"]
    assert all(m.max_abs_diff <= 1e-3 for m in done.members)
    record = json.loads((tmp_path / "deploy" / "ensemble.json").read_text())
    assert record["format"] == "cnnkit-ensemble-export" and "median" in record["combine"]["points"]
    assert [m["file"] for m in record["members"]] == ["member-1.pt", "member-2.pt"]
    assert record["calibration"] == json.loads((trained["folder"] / "ensemble.json").read_text())["calibration"]
    traced = torch.jit.load(str(tmp_path / "deploy" / "member-2.pt"))
    assert traced(torch.rand(1, 3, 30, 40)).shape == (1, 4)


def test_a_killed_member_resumes_and_a_finished_one_is_skipped(trained: dict[str, Any], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in member 2's second epoch; --resume skips member 1 and continues member 2 from its epoch 1,
    ending with the weights of the uninterrupted ensemble."""
    exp = write_experiment(tmp_path)
    original, calls, kill_at = StepSetup.inputs, [], [2 * BATCHES_PER_EPOCH + BATCHES_PER_EPOCH + 2]

    def inputs(self: StepSetup, batch: Any, **kw: Any) -> Any:
        if kw.get("generator") is not None:  # training batches only
            calls.append(1)
            if len(calls) in kill_at:  # member 2, epoch 2, batch 2
                raise KeyboardInterrupt
        return original(self, batch, **kw)

    monkeypatch.setattr(StepSetup, "inputs", inputs)
    assert main(["train", str(exp), "--ensemble", "2", "-q", *PAIRS]) == 130
    ens = tmp_path / "ens"
    manifest = json.loads((ens / "ensemble.json").read_text())
    assert [m["done"] for m in manifest["members"]] == [True, False] and manifest["calibration"] is None
    with pytest.raises(CheckpointError, match="member model file"):  # the unfinished member is not used...
        read_manifest(ens / "ensemble.json")
    assert find_model(ens / "member-1").file == ens / "member-1" / "best.safetensors"  # ...a finished one is
    first = (ens / "member-1" / "best.safetensors").read_bytes()
    kill_at.clear()
    calls.clear()
    assert main(["train", str(exp), "--ensemble", "2", "--resume", "-q", *PAIRS]) == 0
    assert len(calls) == BATCHES_PER_EPOCH  # member 1 skipped, member 2 trained its second epoch only
    assert (ens / "member-1" / "best.safetensors").read_bytes() == first
    assert list(pd.read_csv(ens / "member-2" / "metrics.csv")["epoch"]) == [1, 2]
    assert all(m["done"] for m in read_manifest(ens / "ensemble.json").members)
    resumed, whole = load_file(ens / "member-2" / "last.safetensors"), \
        load_file(trained["folder"] / "member-2" / "last.safetensors")
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], rtol=1e-5, atol=1e-6, msg=key)


def test_a_second_training_into_an_ensemble_is_refused_without_resume_or_overwrite(
        trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """Nothing of the finished ensemble is touched by the refusal; --overwrite trains every member again
    (the same seeds: the same weights), --resume finds every member finished and trains nothing."""
    copy = tmp_path / "copy"
    shutil.copytree(trained["folder"].parent, copy)
    exp, ens = copy / "exp.yaml", copy / "ens"
    marks = {k: (ens / f"member-{k}" / "member.json").read_bytes() for k in (1, 2)}
    best = (ens / "member-1" / "best.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["train", str(exp), "--ensemble", "2", "-q", *PAIRS]) == 2
    err = capsys.readouterr().err
    assert f"{ens} already holds an ensemble (ensemble.json, member-1, member-2)" in err and "--resume" in err
    assert {k: (ens / f"member-{k}" / "member.json").read_bytes() for k in (1, 2)} == marks
    assert (ens / "member-1" / "best.safetensors").read_bytes() == best
    assert not (ens / ".cnnkit-run.lock").exists() and not (ens / "member-1" / ".cnnkit-run.lock").exists()
    # a single model is never trained into an ensemble's folder, where every reader would take the manifest
    assert main(["train", str(exp), "--overwrite", "-q", *PAIRS]) == 2
    assert f"{ens} holds an ensemble (ensemble.json); a single model trained there" in capsys.readouterr().err
    assert not (ens / "best.safetensors").exists() and not (ens / "settings.json").exists()
    # nor an ensemble into a single run's folder without --overwrite
    assert main(["train", str(exp), "-q", "--set", "output=single"]) == 0
    capsys.readouterr()
    assert main(["train", str(exp), "--ensemble", "2", "-q", "--set", "output=single"]) == 2
    assert "single holds a single model's run (last.state.pt, best.safetensors, last.safetensors)" in \
        capsys.readouterr().err
    assert not (copy / "single" / "member-1").exists() and not (copy / "single" / "ensemble.json").exists()

    assert main(["train", str(exp), "--ensemble", "2", "--overwrite", "-q", *PAIRS]) == 0
    again = load_file(ens / "member-1" / "best.safetensors")
    for key, value in load_file(trained["folder"] / "member-1" / "best.safetensors").items():
        torch.testing.assert_close(again[key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert list(pd.read_csv(ens / "member-2" / "metrics.csv")["epoch"]) == [1, 2]
    assert all(m["done"] for m in read_manifest(ens / "ensemble.json").members)

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cnnkit"):
        assert main(["train", str(exp), "--ensemble", "2", "--resume", *PAIRS]) == 0
    assert "member 1 of 2 finished before; skipped" in caplog.text
    assert "member 2 of 2 finished before; skipped" in caplog.text


TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed next to python")
def test_torchrun_spreads_the_members_over_the_processes(trained: dict[str, Any]) -> None:
    """Two gloo processes: rank 0 trains member 1 and rank 1 member 2, each alone (not DDP), so each member
    equals the one trained in a single process; rank 0 writes the manifest."""
    folder = trained["exp"].parent
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", CNNKIT_DIST_TIMEOUT_S="120", CNNKIT_TEST_WATCH=str(folder / "spread"))
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(Path(__file__).with_name("_ddp_worker.py")),
           "train", str(trained["exp"]), "--ensemble", "2", *PAIRS, "--set", "output=spread"]
    done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    writes = dict(re.findall(r"AUDIT rank=(\d) writes=\d+ (\[.*\])", out))
    assert "member-2/" in writes["1"] and "member-1/" not in writes["1"] and "ensemble.json" not in writes["1"], out
    assert "member-1/" in writes["0"] and "member-2/" not in writes["0"], out
    manifest = read_manifest(folder / "spread" / "ensemble.json")
    assert all(m["done"] for m in manifest.members) and manifest.calibration is not None
    for k in (1, 2):
        alone, spread = (load_file(f / f"member-{k}" / "last.safetensors") for f in (trained["folder"], folder / "spread"))
        for key in alone:
            torch.testing.assert_close(spread[key], alone[key], rtol=1e-5, atol=1e-6, msg=f"member {k}: {key}")


def test_a_crop_trained_ensemble_scores_frames_with_each_members_views(tmp_path: Path) -> None:
    """Members trained on views: each scores the frames with the strategy its run measured best."""
    from cnnkit.train.fit import fit
    from crop_fixtures import small_subject_table

    table = small_subject_table(tmp_path / "img", 12, size=(320, 240), flip_pairs=[("a", "b")])
    train, val = table.split((0.75, 0.25), seed=0)
    spec = [["conv", {"filter_size": 3, "layer_depth": 8, "strides": [1, 2, 2, 1]}], ["relu"],
            ["conv", {"filter_size": 3, "layer_depth": 8, "strides": [1, 2, 2, 1]}], ["relu"]]
    run = fit(spec, train, val, out_dir=tmp_path / "ens", head={"type": "heatmap", "width": 8}, ensemble=2,
              crop={"size": [64, 64], "whole": 0.4, "map_loss": 0.0}, epochs=2, batch_size=4, quiet=True,
              plots=False, augment=None, device="cpu")
    assert run.best == tmp_path / "ens" / "ensemble.json" and set(run.history["member"]) == {1, 2}
    manifest = read_manifest(run.best)
    assert all(m["views"] in ("two-pass", "full-frame") for m in manifest.members)
    both = predict(tmp_path / "ens", val, device="cpu")
    members = [predict(f, val, device="cpu") for f in manifest.files]
    np.testing.assert_allclose(both["a_x"], (members[0]["a_x"] + members[1]["a_x"]) / 2, rtol=1e-6)
    assert both["a_spread"].notna().all() and both["a_uncertainty"].notna().all()
