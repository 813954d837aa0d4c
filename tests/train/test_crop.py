"""Crop training end to end on a tiny small-subject set: train, validate, evaluate, predict, flip TTA,
full-frame, export, video, seed API; and the refusals. One training shared by the module."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cnnkit.config import CropConfig
from cnnkit.data.sources import read_annotations
from cnnkit.errors import ConfigError
from cnnkit.experiment import load_experiment
from cnnkit.infer.evaluate import evaluate
from cnnkit.infer.predict import predict
from cnnkit.train.fit import fit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from crop_fixtures import small_subject_table, subject_image  # noqa: E402

SPEC = [
    ["conv", {"filter_size": 3, "layer_depth": 16, "strides": [1, 2, 2, 1]}], ["bn"], ["relu"],
    ["res_33", {"depths": [32, 32], "stride": 2}],
    ["res_33", {"depths": [32, 32], "stride": 2}],
]
CROP = {"size": [64, 64], "whole": 0.4, "map_loss": 0.0}  # the machinery; the map loss: test_map_loss_*


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """320x240 frames, a 40 px subject; 64x64 views: the whole view shows the subject at 8 px."""
    root = tmp_path_factory.mktemp("crop")
    table = small_subject_table(root / "img", 32, size=(320, 240), flip_pairs=[("a", "b")])
    train, val = table.split((0.75, 0.25), seed=0)
    run = fit(SPEC, train, val, out_dir=root / "run", head={"type": "heatmap", "width": 32}, crop=CROP, epochs=30, lr=3e-3, batch_size=4,
              quiet=True, plots=False, augment=None, device="cpu", cache=str(root / "cache"))
    return run, train, val, root


def _errors(preds: pd.DataFrame, table) -> np.ndarray:
    pred = np.stack([preds[[f"{n}_x", f"{n}_y"]].to_numpy() for n in table.landmarks], axis=1)
    return np.linalg.norm(pred - table.points(), axis=-1)


def test_two_pass_validation_beats_the_baseline_and_evaluate_repeats_it(trained) -> None:
    run, _, val, _ = trained
    best = run.history.loc[run.history["val_error_px_mean"].idxmin()]
    assert best["val_error_px_mean"] < 0.3 * best["val_baseline_px_mean"]
    found = evaluate(run.best, val, device="cpu", views="two-pass").metrics
    assert found["error_px_mean"] == pytest.approx(best["val_error_px_mean"], rel=1e-4)  # the same two passes
    assert found["baseline_px_mean"] == pytest.approx(best["val_baseline_px_mean"], rel=1e-4)


def test_predict_tta_and_full_frame_on_a_crop_checkpoint(trained) -> None:
    run, _, val, root = trained
    baseline = float(run.history["val_baseline_px_mean"].iloc[-1])
    for options in ({}, {"tta_flip": True}, {"views": "full-frame"}, {"views": "full-frame", "tta_flip": True}):
        preds = predict(run.best, val, device="cpu", **options)
        errors = _errors(preds, val)
        assert np.isfinite(errors).all() and errors.mean() < 0.5 * baseline, options
        lik = preds[[f"{n}_likelihood" for n in val.landmarks]].to_numpy()
        assert ((lik >= 0) & (lik <= 1)).all(), options
    with pytest.raises(ConfigError, match="views: expected one of auto, two-pass, full-frame"):
        predict(run.best, val, device="cpu", views="tiles")


def test_export_records_the_crop_settings(trained, tmp_path) -> None:
    from cnnkit.io.export import export_model

    run = trained[0]
    done = export_model(run.best, tmp_path / "m.pt", format="torchscript")
    meta = json.loads((tmp_path / "m.pt.json").read_text())
    assert meta["crop"]["size"] == [64, 64] and meta["inference"] == "two-pass" and meta["size"] == [64, 64]
    assert done.max_abs_diff < 1e-3


def test_video_frames_are_predicted_in_two_passes(trained, tmp_path) -> None:
    import av

    run = trained[0]
    rng = np.random.default_rng(5)
    frames = [subject_image(rng, 320, 240) for _ in range(4)]
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for img, _ in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode())
    preds = predict(run.best, path, device="cpu")
    assert list(preds["frame"]) == [0, 1, 2, 3]
    truth = np.stack([pts for _, pts in frames])
    pred = np.stack([preds[[f"{n}_x", f"{n}_y"]].to_numpy() for n in "abc"], axis=1)
    assert np.linalg.norm(pred - truth, axis=-1).mean() < 40  # the subject found in a 320x240 frame


def test_seed_api_predicts_with_a_crop_checkpoint(trained) -> None:
    from cnnkit.compat.seed_api import predict_model

    run, _, val, _ = trained
    df = val.df.rename(columns={"image": "path"})
    args = {"df": df, "x_label": "path", "xp_label": ["a_x", "b_x", "c_x"], "yp_label": ["a_y", "b_y", "c_y"],
            "resize_wh": (64, 64), "batch_size": 4}
    out = np.concatenate(predict_model(args, str(run.best), opt_mode="regression"))  # (N, 6) in 64x64 pixels
    expect = evaluate(run.best, val, device="cpu", views="two-pass").per_image.sort_values("row")  # the seed API: two passes
    scale = np.array([64 / 320, 64 / 240])
    for k, name in enumerate("abc"):
        np.testing.assert_allclose(out[:, k], expect[f"{name}_x"].to_numpy() * scale[0], atol=1e-3)
        np.testing.assert_allclose(out[:, 3 + k], expect[f"{name}_y"].to_numpy() * scale[1], atol=1e-3)


def test_classes_with_crop_are_refused(tmp_path) -> None:
    from cnnkit.data.sources import read_annotations

    table = small_subject_table(tmp_path / "img", 4, size=(160, 120))
    classes = read_annotations(pd.DataFrame({"image": table.images, "label": ["x", "y"] * 2}))
    with pytest.raises(ConfigError, match="data.crop is for landmark tables"):
        fit(SPEC, classes, out_dir=tmp_path / "run", crop="32x32", epochs=1, quiet=True, device="cpu")


def test_experiment_file_takes_data_crop(tmp_path) -> None:
    (tmp_path / "exp.yaml").write_text("data:\n  source: ann.csv\n  crop: {size: 128x96, scale: 0.5, whole: 0.3}\n")
    data = load_experiment(tmp_path / "exp.yaml").data_config()
    assert data.crop is not None and data.crop.size == (128, 96) and data.crop.scale == 0.5 and data.size == (128, 96)
    (tmp_path / "bad.yaml").write_text("data:\n  source: ann.csv\n  size: 64x64\n  crop: 128x96\n")
    with pytest.raises(ConfigError, match=r"data\.size \(64, 64\) conflicts with data\.crop\.size"):
        load_experiment(tmp_path / "bad.yaml").data_config()


def test_cli_predict_and_evaluate_take_views(trained, tmp_path, capsys) -> None:
    from cnnkit.cli import main

    run, _, val, _ = trained
    val.df.to_csv(tmp_path / "val.csv", index=False)
    assert main(["predict", str(run.best), str(tmp_path / "val.csv"), "--out", str(tmp_path / "p.csv"),
                 "--device", "cpu", "--views", "full-frame"]) == 0
    assert len(pd.read_csv(tmp_path / "p.csv")) == len(val)
    assert main(["evaluate", str(run.best), str(tmp_path / "val.csv"), "--device", "cpu", "--views", "two-pass"]) == 0
    assert "error_px_mean" in capsys.readouterr().out


def test_crop_resume_gives_the_same_weights_as_one_run(tmp_path) -> None:
    from safetensors.torch import load_file

    table = small_subject_table(tmp_path / "img", 8, size=(160, 120))
    opts = dict(crop={"size": [48, 48], "whole": 0.3, "background": 0.2}, batch_size=4, lr=1e-3, schedule="none",
                quiet=True, plots=False, device="cpu", head={"type": "heatmap", "width": 16})
    spec = SPEC[:4]
    fit(spec, table, out_dir=tmp_path / "once", epochs=3, **opts)
    fit(spec, table, out_dir=tmp_path / "twice", epochs=1, **opts)
    fit(spec, table, out_dir=tmp_path / "twice", epochs=3, resume=True, **opts)
    a, b = load_file(tmp_path / "once" / "last.safetensors"), load_file(tmp_path / "twice" / "last.safetensors")
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_full_frame_tiles_find_the_same_points(trained) -> None:
    from cnnkit.engine.full_frame import score_full_frame
    from cnnkit.infer.predict import Predictor

    run, _, val, _ = trained
    pred = Predictor.from_checkpoint(run.best, device="cpu", views="full-frame")
    item = pred.dataset(val)[0]
    whole, _ = score_full_frame(pred.net, pred.setup, pred.setup.crop, item["frame"], item["geometry"])
    tiled, lik = score_full_frame(pred.net, pred.setup, pred.setup.crop, item["frame"], item["geometry"],
                                  max_pixels=160 * 160)  # 320x256 padded -> 4 overlapping 160x160 tiles
    assert np.abs(tiled - whole).max() < 2.0 and np.abs(tiled - item["points"]).max() < 5.0
    assert ((lik > 0) & (lik <= 1)).all()


def test_views_auto_takes_the_strategy_the_run_measured_and_its_figure_is_what_evaluate_gives(trained) -> None:
    from cnnkit.infer.predict import Predictor

    run, _, val, _ = trained
    meta = Predictor.from_checkpoint(run.best, device="cpu").meta
    assert meta["subject_share"] == pytest.approx(40 / 240, abs=1e-4)  # the 40 px box in 320x240 frames
    record = meta["views_measured"]
    figures = record["val_error_px"]
    assert set(figures) == {"two-pass", "full-frame"} and record["rows"] == len(val)
    assert record["views"] == min(figures, key=figures.get)
    assert Predictor.from_checkpoint(run.best, device="cpu").views == record["views"]
    assert Predictor.from_checkpoint(run.last, device="cpu").meta["views_measured"] == record
    for views, figure in figures.items():  # each figure is what evaluate delivers with those views
        assert evaluate(run.best, val, device="cpu", views=views).metrics["error_px_mean"] == pytest.approx(
            figure, abs=1e-3)
    default = evaluate(run.best, val, device="cpu").metrics["error_px_mean"]
    assert default == pytest.approx(figures[record["views"]], abs=1e-3)


def test_a_crop_run_where_full_frame_loses_is_scored_two_pass_though_its_subject_is_small(tmp_path, caplog) -> None:
    """An almost untrained heatmap model on subjects at the frame's centre: two passes find the centre, the
    full-frame peaks land anywhere. The subject spans 0.17 of the frame, under the old 0.25 threshold
    that sent such models to full-frame."""
    import logging

    from cnnkit.engine.inference import resolve_views
    from cnnkit.infer.predict import Predictor

    table = _centred_subjects(tmp_path / "img", 12)
    train, val = table.split((0.5, 0.5), seed=0)
    with caplog.at_level(logging.INFO, logger="cnnkit"):
        run = fit(SPEC, train, val, out_dir=tmp_path / "run", head={"type": "heatmap", "width": 32}, crop=CROP,
                  epochs=1, lr=1e-9, batch_size=4, plots=False, augment=None, device="cpu")
    record = Predictor.from_checkpoint(run.best, device="cpu").meta["views_measured"]
    figures = record["val_error_px"]
    assert record["views"] == "two-pass" and figures["full-frame"] > 2 * figures["two-pass"], figures
    assert resolve_views("auto", crop=CropConfig(), heatmap=True, subject_share=40 / 240) == "full-frame"  # the old rule
    delivered = evaluate(run.best, val, device="cpu").metrics["error_px_mean"]
    assert delivered == pytest.approx(figures["two-pass"], abs=1e-3)
    assert f"two-pass {figures['two-pass']:.3g} px, full-frame {figures['full-frame']:.3g} px" in caplog.text
    assert "predict and evaluate use two-pass" in caplog.text


def _centred_subjects(folder: Path, n: int):
    """320x240 frames with the 40 px subject within 4 px of the centre."""
    folder.mkdir(parents=True)
    rng, rows = np.random.default_rng(7), []
    for i in range(n):
        img, pts = subject_image(rng, 320, 240)
        shift = np.array([140.0, 100.0]) + rng.uniform(-4, 4, 2) - pts[0]
        moved = np.roll(img, (int(round(shift[1])), int(round(shift[0]))), axis=(0, 1))
        pts = pts + np.round(shift)
        Image.fromarray(moved).save(folder / f"f{i:02d}.png")
        rows.append({"image": str(folder / f"f{i:02d}.png"),
                     **{f"{n}_{c}": pts[k, j] for k, n in enumerate("abc") for j, c in enumerate("xy")}})
    return read_annotations(pd.DataFrame(rows), flip_pairs="none")


def test_fit_crops_by_default_only_where_the_subject_is_small(tmp_path) -> None:
    from cnnkit.io.checkpoint import load_model

    big = small_subject_table(tmp_path / "big", 6, size=(640, 480))  # the 40 px box spans 0.08
    run = fit(SPEC, big, None, out_dir=tmp_path / "auto", head={"type": "heatmap", "width": 32}, epochs=1,
              batch_size=4, quiet=True, plots=False, augment=None, device="cpu")
    meta = load_model(run.last, device="cpu")[1]
    assert meta["crop"] == CropConfig().to_dict() and meta["size"] == [160, 160]
    assert meta["subject_share"] == pytest.approx(40 / 480, abs=1e-4)
    fixed = fit(SPEC, big, None, out_dir=tmp_path / "sized", head={"type": "heatmap", "width": 32}, epochs=1,
                size="64x48", batch_size=4, quiet=True, plots=False, augment=None, device="cpu")
    assert load_model(fixed.last, device="cpu")[1]["crop"] is None  # an explicit data.size: the whole frame
    small_frames = small_subject_table(tmp_path / "small", 6, size=(160, 120))  # the box spans 0.33
    whole = fit(SPEC, small_frames, None, out_dir=tmp_path / "whole", head={"type": "heatmap", "width": 32},
                epochs=1, batch_size=4, quiet=True, plots=False, augment=None, device="cpu")
    assert load_model(whole.last, device="cpu")[1]["crop"] is None
