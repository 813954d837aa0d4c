"""Every subcommand through the entry function, on small real data.

Most tests call ``cnnkit.cli.main`` in this process (a subprocess costs a torch import each);
``test_the_installed_entry_point_*`` runs the real ``python -m cnnkit`` once.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from cnnkit.data.sources import read_annotations
from cnnkit.data.table import columns_to_points

SMALL = [["conv", {"filter_size": 3, "layer_depth": 8, "strides": [1, 2, 2, 1]}], ["bn"], ["relu"],
         ["res_33", {"depths": [16, 16], "stride": 2}], ["global_avg_pool"]]


def cnnkit(*args: str) -> subprocess.CompletedProcess:
    """``cnnkit --quiet ARGS`` in-process: exit code, stdout and stderr as a subprocess would give them."""
    from cnnkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--quiet", *args])
    return subprocess.CompletedProcess(["cnnkit", *args], code, out.getvalue(), err.getvalue())


def test_the_installed_entry_point_runs_and_reports_errors_in_one_line(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-m", "cnnkit", "spec", "resnet18", "--quiet"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and yaml.safe_load(done.stdout)[0][0] == "conv"
    done = subprocess.run([sys.executable, "-m", "cnnkit", "check-data", str(tmp_path / "nope.csv")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "nope.csv" in done.stderr and "Traceback" not in done.stderr


def test_quiet_works_after_the_command_too(capsys) -> None:
    # Before: `cnnkit spec resnet18 --quiet` was "unrecognized arguments".
    from cnnkit.cli import build_parser

    assert build_parser().parse_args(["spec", "resnet18", "--quiet"]).quiet is True
    assert build_parser().parse_args(["-q", "spec", "resnet18"]).quiet is True
    assert build_parser().parse_args(["spec", "resnet18"]).quiet is False


@pytest.fixture
def small_lips_csv(lips_dir, tmp_path):
    out = tmp_path / "lips.csv"
    done = cnnkit("convert", str(lips_dir / "via_project.json"), str(out))
    assert done.returncode == 0, done.stderr
    df = pd.read_csv(out)
    assert len(df) == 707
    df.iloc[::25].to_csv(out, index=False)  # 29 rows
    return out


def _experiment(tmp_path, source, **train):
    exp = {"model": {"spec": SMALL, "head": "gap"},
           "data": {"source": str(source), "split": {"fractions": [0.6, 0.2, 0.2], "seed": 0}, "size": "48x36",
                    "flip_pairs": "auto"},
           "train": {"epochs": 2, "batch_size": 8, "lr": 0.003, "device": "cpu", **train},
           "output": str(tmp_path / "run")}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


def test_train_predict_evaluate_export_round_trip(small_lips_csv, tmp_path) -> None:
    exp = _experiment(tmp_path, small_lips_csv)
    done = cnnkit("train", str(exp), "--set", "train.epochs=3")
    assert done.returncode == 0, done.stderr
    run = tmp_path / "run"
    assert len(pd.read_csv(run / "metrics.csv")) == 3  # --set took effect
    saved = yaml.safe_load((run / "experiment.yaml").read_text())
    assert saved["train"]["epochs"] == 3
    per_image = pd.read_csv(run / "test_per_image.csv")  # the printed test figure is the per-image one's mean
    errors = per_image[[c for c in per_image.columns if c.startswith("error_px/")]].to_numpy()
    assert json.loads((run / "test_metrics.json").read_text())["error_px_mean"] == pytest.approx(np.nanmean(errors))
    preds_csv, via = tmp_path / "preds.csv", tmp_path / "review.json"
    done = cnnkit("predict", str(run / "best.safetensors"), str(small_lips_csv), "--out", str(preds_csv),
                  "--via", str(via))
    assert done.returncode == 0, done.stderr
    preds = pd.read_csv(preds_csv)
    assert len(preds) == 29 and "leftLip_x" in preds.columns
    assert json.loads(via.read_text())["_via_img_metadata"]
    done = cnnkit("evaluate", str(run / "best.safetensors"), str(small_lips_csv), "--json", str(tmp_path / "m.json"))
    assert done.returncode == 0, done.stderr
    plain = json.loads((tmp_path / "m.json").read_text())["error_px_mean"]
    truth = read_annotations(small_lips_csv)  # evaluate's figure is predict's points against the labels
    errors = np.linalg.norm(columns_to_points(preds, truth.landmarks) - truth.points(), axis=-1)
    assert plain == pytest.approx(np.nanmean(errors), rel=1e-5)
    done = cnnkit("evaluate", str(run / "best.safetensors"), str(small_lips_csv), "--tta-flip",
                  "--json", str(tmp_path / "tta.json"))
    assert done.returncode == 0, done.stderr  # data.flip_pairs: auto put the lips' pairs in the checkpoint
    tta = json.loads((tmp_path / "tta.json").read_text())["error_px_mean"]
    assert tta > 0 and abs(tta - plain) > 1e-6  # the mirror image changed the prediction
    for fmt, suffix in (("torchscript", ".pt"), ("onnx", ".onnx")):
        done = cnnkit("export", str(run / "best.safetensors"), "--format", fmt)
        assert done.returncode == 0, done.stderr
        assert (run / f"best{suffix}").stat().st_size > 1000
        assert "parity" in done.stdout


def test_config_errors_exit_2_with_one_clear_line(small_lips_csv, tmp_path) -> None:
    exp = _experiment(tmp_path, small_lips_csv)
    done = cnnkit("train", str(exp), "--set", "train.epoch=3")
    assert done.returncode == 2
    assert "train.epoch: unknown key. Did you mean 'epochs'?" in done.stderr
    assert "Traceback" not in done.stderr
    done = cnnkit("train", str(exp), "--set", "train.epochs=three")
    assert done.returncode == 2 and "train.epochs: expected int" in done.stderr
    done = cnnkit("train", str(exp), "--set", "modle.spec=resnet18")
    assert done.returncode == 2 and "Did you mean 'model'?" in done.stderr
    assert not (tmp_path / "run").exists()  # nothing started


def test_summary_spec_and_check_data(lips_dir, tmp_path) -> None:
    done = cnnkit("summary", "resnet50", "--size", "224x224", "--outputs", "1000")
    assert done.returncode == 0, done.stderr
    assert "25,557,032" in done.stdout or "25557032" in done.stdout
    done = cnnkit("spec", "resnet18")
    assert done.returncode == 0
    spec = yaml.safe_load(done.stdout)
    assert isinstance(spec, list) and spec[0][0] == "conv"
    (tmp_path / "r18.yaml").write_text(done.stdout)
    again = cnnkit("summary", str(tmp_path / "r18.yaml"), "--size", "224x224", "--outputs", "1000")
    assert "11,689,512" in again.stdout or "11689512" in again.stdout
    done = cnnkit("check-data", str(lips_dir / "via_project.json"), "--no-decode")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "707" in done.stdout
    done = cnnkit("check-data", str(tmp_path / "nope.csv"))
    assert done.returncode == 2 and "nope.csv" in done.stderr


def test_demo_quick(tmp_path) -> None:
    done = cnnkit("demo", "--out", str(tmp_path / "demo"), "--quick")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "demo" / "test_metrics.json").read_text())
    assert f"test error        {metrics['error_px_mean']:.1f} px" in done.stdout
    assert f"mean-shape baseline {metrics['baseline_px_mean']:.1f} px" in done.stdout
    assert (tmp_path / "demo" / "run" / "best.safetensors").is_file()


def test_cache_command_writes_one_file(small_lips_csv, tmp_path) -> None:
    done = cnnkit("cache", str(small_lips_csv), "--size", "32x24", "--folder", str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr
    files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert files and sum(p.stat().st_size for p in files) >= 29 * 32 * 24 * 3


def test_bad_spec_in_experiment_is_reported_with_layer_index(small_lips_csv, tmp_path) -> None:
    exp = _experiment(tmp_path, small_lips_csv)
    settings = yaml.safe_load(exp.read_text())
    settings["model"]["spec"] = [["conv", {"layer_dept": 8}], ["relu"]]
    exp.write_text(yaml.safe_dump(settings))
    done = cnnkit("train", str(exp))
    assert done.returncode == 2
    assert "layer 0" in done.stderr and "layer_depth" in done.stderr


def test_version_is_the_installed_distributions(capsys) -> None:
    from importlib.metadata import version

    import cnnkit as package
    from cnnkit.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"cnnkit {version('cnnkit')}" == f"cnnkit {package.__version__}"
