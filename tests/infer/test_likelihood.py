"""Likelihood per landmark: its meaning per head, its range, and the predict columns that carry it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnkit.engine.inference import run_inference, validation_strategy
from cnnkit.engine.readout import FLIP_AGREEMENT_SCALE
from cnnkit.infer.inputs import images_table
from cnnkit.infer.predict import Predictor, predict
from cnnkit.io.checkpoint import save_model
from cnnkit.model.builder import build_model
from cnnkit.model.heads import LIKELIHOOD_RADIUS, heatmap_likelihood

NAMES = ["left", "right"]
PYRAMID = [["conv", {"layer_depth": 8, "strides": 2}], ["relu"], ["res_33", {"depths": 8, "stride": 2}]]


def _meta(size, pairs=()):
    return {"task": "landmarks", "landmarks": NAMES, "classes": [], "size": list(size), "channels": 3,
            "normalisation": {"mean": [0.5] * 3, "std": [0.25] * 3}, "grayscale": False, "letterbox": False,
            "flip_pairs": [list(p) for p in pairs]}


def _gap_model(tmp_path, const, pairs=(), size=(32, 24)):
    """Direct (gap) head whose output ignores the image: ``const`` = [x_left, x_right, y_left, y_right]."""
    model = build_model([["conv", {"filter_size": 3, "layer_depth": 4}]], size=size, channels=3, outputs=4,
                        head="gap")
    with torch.no_grad():
        model.head_net.fc.weight.zero_()
        model.head_net.fc.bias.copy_(torch.tensor(const))
    return save_model(tmp_path / "gap.safetensors", model, _meta(size, pairs))


def _heatmap_model(tmp_path, *, seed=0, size=(32, 24)):
    torch.manual_seed(seed)
    model = build_model(PYRAMID, size=size, channels=3, outputs=4, head={"type": "heatmap", "width": 8, "stride": 2})
    with torch.no_grad():
        model.head_net.to_maps.weight.normal_(std=1.0)  # maps that depend on the image
    return save_model(tmp_path / "heatmap.safetensors", model, _meta(size, [("left", "right")]))


def _image(tmp_path, seed=0, size=(40, 30)):
    rng = np.random.default_rng(seed)
    path = tmp_path / f"img{seed}.png"
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def test_heatmap_likelihood_sharp_flat_and_split() -> None:
    maps = torch.full((1, 3, 20, 20), -30.0)
    maps[0, 0, 5, 7] = 30.0  # one sharp peak
    maps[0, 1] = 0.0  # flat
    maps[0, 2, 2, 2] = maps[0, 2, 17, 17] = 30.0  # two peaks: the mean lies between them, far from both
    lik = heatmap_likelihood(maps)
    assert lik.shape == (1, 3)
    assert lik[0, 0].item() == pytest.approx(1.0, abs=1e-6)
    disc = sum((i + 0.5 - 10) ** 2 + (j + 0.5 - 10) ** 2 <= LIKELIHOOD_RADIUS**2 for i in range(20) for j in range(20))
    assert lik[0, 1].item() == pytest.approx(disc / 400, abs=1e-6)
    assert lik[0, 2].item() < 1e-6
    assert torch.isnan(heatmap_likelihood(torch.full((1, 1, 4, 4), float("nan")))).all()


def test_heatmap_model_likelihood_columns_beside_points(tmp_path) -> None:
    ckpt = _heatmap_model(tmp_path)
    preds = predict(ckpt, [_image(tmp_path, s) for s in range(3)], device="cpu")
    assert [c for c in preds.columns if c != "image"] == [
        "left_x", "left_y", "left_likelihood", "right_x", "right_y", "right_likelihood"]
    lik = preds[["left_likelihood", "right_likelihood"]].to_numpy()
    assert np.all((lik > 0) & (lik <= 1))
    assert len(np.unique(lik.round(6))) > 1  # it depends on the image, not a constant
    # the points equal the model's own forward output (the likelihood reads maps, changes nothing)
    pred = Predictor.from_checkpoint(ckpt, device="cpu")
    loader = pred.loader(images_table([_image(tmp_path, s) for s in range(3)]))
    outputs = run_inference(validation_strategy(pred.net, pred.setup), loader)
    np.testing.assert_allclose(preds[["left_x", "right_x"]].to_numpy(), outputs.pred[:, :, 0], rtol=1e-5)


def test_direct_head_with_pairs_uses_agreement_under_flip(tmp_path) -> None:
    img = _image(tmp_path)
    # symmetric: the mirror image's right point, mirrored back, lands on the left point -> 1.0
    agree = predict(_gap_model(tmp_path, [0.25, 0.75, 0.5, 0.5], [("left", "right")]), [img], device="cpu")
    assert agree["left_likelihood"].iloc[0] == pytest.approx(1.0)
    # y differs by 0.25 of the height between partners: d = 0.25 * 24 px on a 40 px diagonal
    apart = predict(_gap_model(tmp_path, [0.25, 0.75, 0.5, 0.25], [("left", "right")]), [img], device="cpu")
    d = 0.25 * 24 / np.hypot(32, 24)
    assert apart["left_likelihood"].iloc[0] == pytest.approx(np.exp(-0.5 * (d / FLIP_AGREEMENT_SCALE) ** 2), rel=1e-4)
    assert apart["left_x"].iloc[0] == pytest.approx(0.25 * 40, rel=1e-5)  # points are the plain pass's


def test_direct_head_without_pairs_says_so_and_gives_one(tmp_path, caplog) -> None:
    with caplog.at_level("WARNING"):
        preds = predict(_gap_model(tmp_path, [0.25, 0.75, 0.5, 0.5]), [_image(tmp_path)], device="cpu")
    assert (preds[["left_likelihood", "right_likelihood"]] == 1.0).all(axis=None)
    assert "nothing measures its doubt" in caplog.text
