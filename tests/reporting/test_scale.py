"""The page stays readable and small with 1 and 68 landmarks, and with 2 and 100 classes (no training)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cnnkit.data.table import AnnotationTable
from cnnkit.engine.metrics import class_metrics, landmark_metrics, point_errors
from cnnkit.infer.evaluate import Evaluation
from cnnkit.reporting import build_page
from cnnkit.reporting.run_folder import EvalData, RunRecord

HISTORY = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.0, 0.5, 0.4], "val_loss": [1.1, 0.7, 0.6]})


def _images(folder: Path, n: int, size: tuple[int, int] = (640, 480)) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"img{i:03d}.jpg"
        Image.fromarray(rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def _run(tmp_path: Path, meta: dict[str, Any]) -> RunRecord:
    return RunRecord(tmp_path, {"model_argument": "resnet18"}, HISTORY, None, None, meta)


def _landmark_page(tmp_path: Path, k: int, likelihood: bool) -> tuple[str, Evaluation]:
    rng = np.random.default_rng(k)
    names = [f"p{i}" for i in range(k)]
    n = 12
    true = rng.uniform(50, 400, size=(n, k, 2))
    pred = true + rng.normal(0, 5, size=true.shape)
    points = {f"{name}_{axis}": true[:, i, j] for i, name in enumerate(names) for j, axis in enumerate("xy")}
    df = pd.DataFrame({"image": _images(tmp_path / "img", n), **points})
    table = AnnotationTable(df, landmarks=tuple(names))
    err = point_errors(pred, true)
    cols: dict[str, Any] = {"image": df["image"], "row": np.arange(n), "error_px_mean": err.mean(axis=1)}
    for i, name in enumerate(names):
        cols[f"{name}_x"], cols[f"{name}_y"] = pred[:, i, 0], pred[:, i, 1]
        if likelihood:
            cols[f"{name}_likelihood"] = rng.uniform(0, 1, size=n)
    per_image = pd.DataFrame(cols).sort_values("error_px_mean", ascending=False).reset_index(drop=True)
    ev = Evaluation(landmark_metrics(pred, true, names=names, baseline_px=true.mean(axis=0)), per_image)
    pairs = [[names[0], names[1]]] if k > 1 else []
    meta = {"task": "landmarks", "landmarks": names, "flip_pairs": pairs}
    return build_page(_run(tmp_path, meta), EvalData(table, "test", "synthetic"), ev), ev


def _png_size(src: str) -> tuple[int, int]:
    mime, data = src.split(",", 1)
    with Image.open(io.BytesIO(base64.b64decode(data))) as im:
        return im.size


@pytest.mark.parametrize(("k", "likelihood"), [(1, False), (68, True)])
def test_one_and_sixty_eight_landmarks(tmp_path: Path, k: int, likelihood: bool, parse_page) -> None:
    text, _ = _landmark_page(tmp_path, k, likelihood)
    assert text.count("<section") == 9
    (tmp_path / "r.html").write_text(text, encoding="utf-8")
    page = parse_page(tmp_path / "r.html")
    assert page.sections[-1] == "confusions" and "per-landmark" in page.sections
    rows = page.table("per-landmark")
    assert len(rows) == k
    assert ("mean likelihood" in rows[0]) == likelihood
    assert ("likelihood mean" in page.text) == likelihood  # thumbnail captions
    thumbs = [i for i in page.images if i["src"].startswith("data:image/jpeg")]
    assert len(thumbs) == 8 + 4  # worst and typical
    for thumb in thumbs:
        assert max(_png_size(thumb["src"])) <= 200  # 640x480 originals, downscaled
    for image in page.images:
        w, h = _png_size(image["src"])
        assert w <= 1000 and h <= 1400, (image["alt"], w, h)
    assert len(text) < 700_000
    if k == 1:
        assert "nothing to confuse" in page.text


def test_classes_two_and_a_hundred(tmp_path: Path, parse_page) -> None:
    for n_classes in (2, 100):
        rng = np.random.default_rng(n_classes)
        classes = [f"class_{i:03d}" for i in range(n_classes)]
        n = 300
        true = rng.integers(0, n_classes, size=n)
        pred = np.where(rng.random(n) < 0.6, true, rng.integers(0, n_classes, size=n))
        images = _images(tmp_path / f"img{n_classes}", 5, size=(300, 200))
        df = pd.DataFrame({"image": [images[i % 5] for i in range(n)], "label": [classes[t] for t in true]})
        table = AnnotationTable(df, classes=tuple(classes))
        conf = rng.uniform(0.3, 1.0, size=n)
        per_image = pd.DataFrame({"image": df["image"], "row": np.arange(n), "true": df["label"],
                                  "pred": [classes[p] for p in pred], "confidence": conf,
                                  "p_true": np.where(pred == true, conf, 0.1)})
        per_image["correct"] = per_image["true"] == per_image["pred"]
        ev = Evaluation(class_metrics(pred, true, classes=classes), per_image)
        text = build_page(_run(tmp_path, {"task": "classes", "classes": classes}),
                          EvalData(table, "test", "synthetic"), ev)
        path = tmp_path / f"r{n_classes}.html"
        path.write_text(text, encoding="utf-8")
        page = parse_page(path)
        assert page.sections[-3:] == ["per-class", "confusion-matrix", "wrong"]
        assert len(page.table("per-class")) == n_classes
        matrix = next(i for i in page.images if i["alt"] == "confusion matrix")
        assert max(_png_size(matrix["src"])) <= 900
        mistakes = page.table("confusion-matrix")
        assert 1 <= len(mistakes) <= 15
        assert len(text) < 500_000
