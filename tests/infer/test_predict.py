"""predict/evaluate map outputs back to ORIGINAL pixels; VIA output re-reads to the same points."""

from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cnnkit.data.sources import read_annotations
from cnnkit.data.sources.writers import write_via
from cnnkit.data.table import AnnotationTable
from cnnkit.errors import ConfigError
from cnnkit.infer.evaluate import evaluate
from cnnkit.infer.predict import predict, predictions_table
from cnnkit.io.checkpoint import FORMAT_VERSION, save_model
from cnnkit.model.builder import build_model

SPEC = [["conv", {"filter_size": 3, "layer_depth": 4}], ["relu"]]
NAMES = ["left", "right"]
CONST = [0.25, 0.75, 0.5, 0.125]  # x_left, x_right, y_left, y_right, normalised to the input frame


def _constant_model(tmp_path, *, size=(32, 24)):
    """A landmark model whose output ignores the image: known normalised points."""
    model = build_model(SPEC, size=size, channels=3, outputs=4, head="gap")
    fc = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        fc.weight.zero_()
        fc.bias.copy_(torch.tensor(CONST))
    meta = {"format_version": FORMAT_VERSION, "task": "landmarks", "landmarks": NAMES, "classes": [],
            "normalisation": {"mean": [0.5] * 3, "std": [0.25] * 3}, "size": list(size), "channels": 3,
            "grayscale": False, "letterbox": False, "flip_pairs": [], "mean_shape_norm": [[0.5, 0.5], [0.5, 0.5]]}
    return save_model(tmp_path / "const.safetensors", model, meta)


def _images(folder, sizes):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (w, h) in enumerate(sizes):
        path = folder / f"img{i}.png"
        Image.fromarray(np.full((h, w, 3), 40 * i, np.uint8)).save(path)
        paths.append(path)
    return paths


def test_predictions_are_in_original_pixels(tmp_path) -> None:
    ckpt = _constant_model(tmp_path)
    paths = _images(tmp_path / "imgs", [(100, 50), (37, 201), (640, 480)])
    preds = predict(ckpt, paths, device="cpu", batch_size=2)
    assert list(preds["image"]) == [str(p.resolve()) for p in paths]
    for (w, h), (_, row) in zip([(100, 50), (37, 201), (640, 480)], preds.iterrows(), strict=True):
        assert row["left_x"] == pytest.approx(0.25 * w, rel=1e-5)
        assert row["right_x"] == pytest.approx(0.75 * w, rel=1e-5)
        assert row["left_y"] == pytest.approx(0.5 * h, rel=1e-5)
        assert row["right_y"] == pytest.approx(0.125 * h, rel=1e-5)


def test_predict_folder_and_zip_give_the_same_points(tmp_path) -> None:
    ckpt = _constant_model(tmp_path)
    paths = _images(tmp_path / "imgs", [(60, 40), (80, 30)])
    archive = tmp_path / "imgs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in paths:
            zf.write(p, arcname=f"sub/{p.name}")
    from_folder = predict(ckpt, tmp_path / "imgs", device="cpu")
    from_zip = predict(ckpt, archive, device="cpu")
    assert list(from_zip["image"]) == ["sub/img0.png", "sub/img1.png"]
    np.testing.assert_allclose(from_folder.filter(like="_x").to_numpy(), from_zip.filter(like="_x").to_numpy())


def test_evaluate_reports_pixels_and_baseline(tmp_path) -> None:
    ckpt = _constant_model(tmp_path)
    paths = _images(tmp_path / "imgs", [(100, 40), (200, 80)])
    # truth: each point off by exactly (3, 4) px -> error 5 px; the baseline (centre) is farther
    df = pd.DataFrame({"image": [str(p) for p in paths],
                       "left_x": [25 + 3, 50 + 3], "left_y": [20 + 4, 40 + 4],
                       "right_x": [75 - 3, 150 - 3], "right_y": [5 - 4, 10 - 4]})
    table = AnnotationTable(df, landmarks=tuple(NAMES))
    result = evaluate(ckpt, table, device="cpu")
    assert result.metrics["error_px_mean"] == pytest.approx(5.0, rel=1e-4)
    assert result.metrics["baseline_px_mean"] > 10
    assert list(result.per_image.columns[:3]) == ["image", "row", "error_px_mean"]
    assert result.per_image["error_px_mean"].tolist() == pytest.approx([5.0, 5.0], rel=1e-4)


def test_via_review_round_trip(tmp_path) -> None:
    ckpt = _constant_model(tmp_path)
    paths = _images(tmp_path / "imgs", [(100, 50), (64, 64)])
    preds = predict(ckpt, paths, device="cpu")
    via = tmp_path / "imgs" / "review.json"
    write_via(predictions_table(preds, NAMES), via)
    back = read_annotations(via)
    assert back.landmarks == tuple(NAMES)
    np.testing.assert_allclose(back.points(), predictions_table(preds, NAMES).points(), atol=1e-3)


def test_flip_tta_mirrors_and_swaps_pairs(tmp_path) -> None:
    """With a constant model, TTA averages (x, y) with the mirrored, pair-swapped prediction."""
    ckpt = _constant_model(tmp_path)
    import json as _json

    from safetensors import safe_open

    with safe_open(str(ckpt), "pt") as f:
        meta = _json.loads(f.metadata()["cnnkit"])
    paths = _images(tmp_path / "imgs", [(100, 50)])
    with pytest.raises(ConfigError, match=r"test-time flip needs the model's left/right landmark pairs.*data\.flip_pairs"):
        predict(ckpt, paths, device="cpu", tta_flip=True)
    meta["flip_pairs"] = [["left", "right"]]
    model, _ = __import__("cnnkit").load_model(ckpt)
    paired = save_model(tmp_path / "paired.safetensors", model, meta)
    preds = predict(paired, paths, device="cpu", tta_flip=True).iloc[0]
    # left: x = (0.25 + (1 - 0.75)) / 2 = 0.25, y = (0.5 + 0.125) / 2; right mirrors it
    assert preds["left_x"] == pytest.approx(25.0, rel=1e-5)
    assert preds["left_y"] == pytest.approx(0.3125 * 50, rel=1e-5)
    assert preds["right_x"] == pytest.approx(75.0, rel=1e-5)
    assert preds["right_y"] == pytest.approx(0.3125 * 50, rel=1e-5)
