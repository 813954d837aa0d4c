"""``run_demo``: a quick run end to end, data reuse, and argument checks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cnnkit.data.sources import read_annotations
from cnnkit.data.table import columns_to_points
from cnnkit.demo.run import METRIC_KEYS, SPLIT, _ensure_data, run_demo
from cnnkit.demo.synth import make_demo_dataset
from cnnkit.errors import ConfigError
from cnnkit.infer.predict import predict


def test_quick_run_writes_files_and_returns_finite_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    metrics = run_demo(tmp_path / "demo", quick=True, seed=1)
    for key in (*METRIC_KEYS, "ratio", "images", "train_seconds", "error_px/left_eye", "error_px/chin"):
        assert math.isfinite(metrics[key]), key
    assert metrics["ratio"] == pytest.approx(metrics["error_px_mean"] / metrics["baseline_px_mean"])
    # the printed test error is what `predict` on the test images delivers, against their labels
    _, _, test = read_annotations(tmp_path / "demo" / "data" / "demo_via.json").split(SPLIT, seed=1)
    preds = predict(tmp_path / "demo" / "run" / "best.safetensors", test)
    errors = np.linalg.norm(columns_to_points(preds, test.landmarks) - test.points(), axis=-1)
    assert metrics["error_px_mean"] == pytest.approx(np.nanmean(errors), rel=1e-5)
    assert metrics["images"] == 6  # 15% of the 40 quick images
    root = tmp_path / "demo"
    assert len(list((root / "data" / "images").glob("*.jpg"))) == 40
    for name in ("test_predictions.png", "run/curves.png", "run/best.safetensors", "report.html"):
        assert (root / name).stat().st_size > 1000, name
    # (the AUCs of "error > 10 px" are NaN when no point, or every point, is that far off)
    assert json.loads((root / "test_metrics.json").read_text()) == pytest.approx(metrics, nan_ok=True)
    out = capsys.readouterr().out
    assert "mean-shape baseline" in out and "test_predictions.png" in out
    assert f"report            {root / 'report.html'}" in out
    page = (root / "report.html").read_text(encoding="utf-8")
    assert 'id="worst"' in page and "test split (15%, seed 1)" in page


def test_existing_data_is_reused_and_other_settings_regenerate(tmp_path: Path) -> None:
    make_demo_dataset(tmp_path, n_images=3, seed=0)
    image = tmp_path / "images" / "demo_0000.jpg"
    stamp = image.stat().st_mtime_ns
    _ensure_data(tmp_path, 3, 0, quiet=True)
    assert image.stat().st_mtime_ns == stamp
    _ensure_data(tmp_path, 3, 4, quiet=True)
    assert image.stat().st_mtime_ns != stamp


@pytest.mark.parametrize(("kwargs", "word"), [({"n_images": 10}, "n_images"), ({"epochs": 0}, "epochs")])
def test_rejects_bad_arguments(tmp_path: Path, kwargs: dict[str, int], word: str) -> None:
    with pytest.raises(ConfigError, match=word):
        run_demo(tmp_path, quiet=True, **kwargs)
    assert not (tmp_path / "data").exists()
