"""Tests for cnnkit.compat.seed_api on the real seed-format data (faces68-csv, hymenoptera)."""

from __future__ import annotations

import copy
import re
import zipfile
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import cnnkit.compat.seed_api as S
from cnnkit.errors import ConfigError, DataError
from cnnkit.infer.predict import predict
from cnnkit.io.checkpoint import read_meta

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

K = 11  # the seed document uses the first 11 points
XS = [f"x{i}" for i in range(K)]
YS = [f"y{i}" for i in range(K)]
SIMPLE = [
    ["conv", {"filter_size": 3, "layer_depth": 2}],
    ["bn"],
    ["relu"],
    ["max_pool", {"kernel": [1, 2, 2, 1], "strides": [1, 1, 1, 1], "padding": "SAME"}],
    ["drop_out", {"prop": 0.9}],
    ["res_131", {"depths": [4, 4, 8]}],
]


def faces_frame(faces_dir: Path, rows: int | None = None) -> pd.DataFrame:
    """The document's preparation: fix the stale ``fullname`` paths into ``fullpath``."""
    dfx = pd.read_csv(faces_dir / "CSVs" / "faces68.csv")
    imgs_dir = str(faces_dir / "Images") + "/"
    fullpath = imgs_dir + dfx["fullname"].apply(lambda x: x.split("/")[-1])
    dfx = pd.concat([dfx, fullpath.rename("fullpath")], axis=1)  # one block: no fragmentation warning
    return dfx if rows is None else dfx.head(rows)


def reg_args(df: pd.DataFrame, **over: Any) -> dict[str, Any]:
    args = {"df": df, "x_label": "fullpath", "xp_label": XS, "yp_label": YS,
            "batch_size": 8, "offset": 10, "resize_wh": (32, 32), "toGray": False}  # fmt: skip
    return {**args, **over}


# -- df_x_y / df_xy / batch_params ----------------------------------------------------


def test_df_x_y_returns_exactly_scaled_landmarks(faces_dir: Path) -> None:
    dfx = faces_frame(faces_dir)
    before = dfx.copy()
    imgs, fxs, fys = S.df_x_y(dfx, x_label="fullpath", xp_label=XS, yp_label=YS, batch_size=5, offset=10,
                              resize_wh=(64, 92), toGray=False)  # fmt: skip
    assert imgs.shape == (5, 92, 64, 3) and imgs.dtype == np.uint8
    assert fxs.shape == fys.shape == (5, K)
    for b in range(5):
        row = dfx.iloc[10 + b]
        with Image.open(row["fullpath"]) as im:
            w, h = im.size
            ref = np.asarray(im.convert("RGB").resize((64, 92), Image.Resampling.LANCZOS))
        np.testing.assert_array_equal(fxs[b], row[XS].to_numpy(np.float64) * (64 / w))
        np.testing.assert_array_equal(fys[b], row[YS].to_numpy(np.float64) * (92 / h))
        assert np.abs(imgs[b].astype(int) - ref.astype(int)).max() <= 1
    pd.testing.assert_frame_equal(dfx, before)  # the caller's frame is untouched


def test_df_x_y_gray_images_only_and_partial_last_rows(faces_dir: Path) -> None:
    dfx = faces_frame(faces_dir, 12)
    gray = S.df_x_y(dfx, "fullpath", batch_size=3, offset=0, resize_wh=(40, 30), toGray=True)
    rgb = S.df_x_y(dfx, "fullpath", batch_size=3, offset=0, resize_wh=(40, 30))
    assert isinstance(gray, np.ndarray) and gray.shape == (3, 30, 40, 1) and rgb.shape == (3, 30, 40, 3)
    luma = rgb.astype(np.float64) @ np.array([0.2125, 0.7154, 0.0721])
    assert np.abs(gray[..., 0] - luma).max() <= 1.0
    tail, fx, _ = S.df_x_y(dfx, "fullpath", XS, YS, batch_size=5, offset=10)  # rows 10, 11 only
    assert tail.shape == (2, 32, 32, 3) and fx.shape == (2, K)


def test_df_x_y_reads_zip_members(faces_dir: Path, tmp_path: Path) -> None:
    dfx = faces_frame(faces_dir, 3)
    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in dfx["filename"]:
            zf.write(faces_dir / "Images" / f, arcname=f"Images/{f}")
    zdf = dfx.assign(member="Images/" + dfx["filename"])
    from_zip = S.df_x_y(zdf, "member", XS, YS, batch_size=3, zip_file=str(archive))
    from_files = S.df_x_y(dfx, "fullpath", XS, YS, batch_size=3)
    for a, b in zip(from_zip, from_files, strict=True):
        np.testing.assert_array_equal(a, b)


def test_df_x_y_names_a_missing_column(faces_dir: Path) -> None:
    with pytest.raises(DataError, match=r"'fullpth' not found.*Did you mean 'fullpath'"):
        S.df_x_y(faces_frame(faces_dir, 3), "fullpth", XS, YS)


def hymenoptera_frame(root: Path, per_class: int = 4) -> pd.DataFrame:
    """Paths + one-hot (1, 2) arrays, as the seed's classification frames held them."""
    rows = []
    for c, name in enumerate(("ants", "bees")):
        for path in sorted((root / "train" / name).glob("*.jpg"))[:per_class]:
            rows.append({"path": str(path), "onehot": np.eye(2)[c].reshape(1, 2)})
    return pd.DataFrame(rows)


def test_df_xy_one_hot_targets(hymenoptera_dir: Path) -> None:
    df = hymenoptera_frame(hymenoptera_dir, 3)
    imgs, targets = S.df_xy(df, "path", "onehot", batch_size=4, offset=1, resize_wh=(24, 16))
    assert imgs.shape == (4, 16, 24, 3)
    np.testing.assert_array_equal(targets, [[1, 0], [1, 0], [0, 1], [0, 1]])
    only = S.df_xy(df, "path", None, batch_size=2)
    assert isinstance(only, np.ndarray) and only.shape == (2, 32, 32, 3)
    flat = df.assign(onehot=[v.reshape(-1) for v in df["onehot"]])  # (C,) vectors work too
    np.testing.assert_array_equal(S.df_xy(flat, "path", "onehot", batch_size=6)[1], np.repeat(np.eye(2), 3, 0))


def test_batch_params_counts_rows() -> None:
    assert S.batch_params({"df": pd.DataFrame({"a": range(10)}), "batch_size": 4}) == (10, 2, 4, 8)


# -- train / predict_model / test_model ----------------------------------------------


def _mse_from_predictions(preds: list[np.ndarray], args: dict[str, Any]) -> list[float]:
    out = []
    for b, pred in enumerate(preds):
        _, fxs, fys = S.df_x_y(**{**args, "offset": b * args["batch_size"]})
        out.append(float(np.mean((pred - np.concatenate([fxs, fys], 1)) ** 2)))
    return out


def test_simple_model_trains_saves_restores_and_predicts(
    faces_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = reg_args(faces_frame(faces_dir, 16))
    frozen = copy.deepcopy(args)
    name = str(tmp_path / "test_model")
    losses = S.train(args, model=SIMPLE, iters=6, lr=0.0001, save_name=name, v=True, opt_mode="regression")
    printed = capsys.readouterr().out
    assert len(losses) == 6 and losses[-1] < 0.7 * losses[0]
    lines = re.findall(r"^Iter: (\d+) batch (\d+) batches (\d+) Loss: ([\d.e+-]+)$", printed, re.M)
    assert [(int(p), int(b), int(n)) for p, b, n, _ in lines] == [(p, b, 2) for p in range(6) for b in range(2)]
    assert args.keys() == frozen.keys() and args["batch_size"] == 8 and args["offset"] == 10
    pd.testing.assert_frame_equal(args["df"], frozen["df"])
    assert (tmp_path / "test_model.safetensors").is_file()
    assert read_meta(tmp_path / "test_model.safetensors")["task"] == "landmarks"

    preds = S.predict_model(args, model_dir=name, opt_mode="regression")
    assert [p.shape for p in preds] == [(8, 2 * K), (8, 2 * K)]
    stats = S.test_model(args, model_name=name)
    np.testing.assert_allclose(stats, _mse_from_predictions(preds, args), rtol=1e-4)

    again = str(tmp_path / "restored")  # restore without training: the same predictions
    S.train(args, iters=0, save_name=again, restore_model=True, restore_name=name, opt_mode="regression")
    for a, b in zip(S.predict_model(args, again, "regression"), preds, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    more = S.train(args, iters=1, lr=0.0001, save_model=False, restore_model=True, restore_name=name,
                   opt_mode="regression")  # fmt: skip
    assert more[0] < losses[0]  # continues from the trained weights
    _check_modern_predict(tmp_path / "test_model.safetensors", args, preds)


def _check_modern_predict(path: Path, args: dict[str, Any], preds: list[np.ndarray]) -> None:
    """cnnkit.predict reads the same file and answers in ORIGINAL pixels (resized / fx)."""
    df = args["df"].head(3)
    frame = predict(path, pd.DataFrame({"image": df["fullpath"]}), device="cpu")
    for i, row in enumerate(df.itertuples()):
        with Image.open(row.fullpath) as im:
            fx = 32 / im.size[0]
        assert frame.iloc[i]["p0_x"] == pytest.approx(preds[0][i, 0] / fx, rel=1e-4, abs=1e-3)


def test_classification_predict_and_seed_statistics(hymenoptera_dir: Path, tmp_path: Path) -> None:
    df = hymenoptera_frame(hymenoptera_dir, 3)
    args = {"df": df, "x_label": "path", "y_label": "onehot", "batch_size": 4, "resize_wh": (24, 24), "toGray": True}
    name = str(tmp_path / "ants_bees")
    model = [["conv", {"layer_depth": 4}], ["relu"], ["max_pool", {"strides": [1, 2, 2, 1]}]]
    S.train(args, model=model, iters=2, lr=0.001, save_name=name)  # opt_mode defaults to classification
    preds = S.predict_model(args, model_dir=name)
    assert [(p.shape, i.shape) for p, i in preds] == [((4, 2), (4,)), ((2, 2), (2,))]
    np.testing.assert_allclose(preds[0][0].sum(axis=1), 1.0, rtol=1e-5)
    stats = S.test_model(args, model_name=name, opt_mode="classification")
    truth = [[0, 0, 0, 1], [1, 1]]
    for st, (_, idx), t in zip(stats, preds, truth, strict=True):
        assert list(st) == ["tp", "tn", "fp", "fn", "loss", "spe", "sen", "acc"]
        t = np.array(t)
        assert st["tp"] == np.sum((idx == 1) & (t == 1)) and st["tn"] == np.sum((idx == 0) & (t == 0))
        assert st["fp"] == np.sum((idx == 1) & (t == 0)) and st["fn"] == np.sum((idx == 0) & (t == 1))
        assert st["acc"] == pytest.approx(np.mean(idx == t)) and st["loss"] > 0
    only = S.test_model(args, model_name=name, opt_mode="classification", stats_list=["acc", "loss"])
    assert [list(s) for s in only] == [["acc", "loss"], ["acc", "loss"]]


def test_argument_mistakes_raise_clear_errors(faces_dir: Path, tmp_path: Path) -> None:
    args = reg_args(faces_frame(faces_dir, 2), batch_size=2)
    with pytest.raises(ConfigError, match=r"unknown key 'resize_hw'.*Did you mean 'resize_wh'"):
        S.train({**args, "resize_hw": (8, 8)}, model=SIMPLE, opt_mode="regression")
    with pytest.raises(ConfigError, match="needs model="):
        S.train(args, opt_mode="regression")
    with pytest.raises(ConfigError, match="opt_mode 'regresion'.*Did you mean 'regression'"):
        S.train(args, model=SIMPLE, opt_mode="regresion")
    name = str(tmp_path / "m")
    S.train(args, model=[["relu"]], iters=1, save_name=name, opt_mode="regression")
    with pytest.raises(ConfigError, match="'landmarks' model but opt_mode='classification'"):
        S.predict_model(args, model_dir=name)
    with pytest.raises(ConfigError, match=r"resize_wh=\(32, 32\)"):
        S.predict_model({**args, "resize_wh": (16, 16)}, model_dir=name, opt_mode="regression")
    with pytest.raises(ConfigError, match="architecture"):
        S.train(args, model=SIMPLE, restore_model=True, restore_name=name, opt_mode="regression")


def test_train_is_repeatable_through_its_seed(faces_dir: Path) -> None:
    args = reg_args(faces_frame(faces_dir, 4), batch_size=2, resize_wh=(16, 16))
    model = [["conv", {"layer_depth": 4}], ["drop_out", {"prop": 0.5}], ["relu"]]
    run = [S.train(args, model=model, iters=2, save_model=False, opt_mode="regression", seed=s) for s in (1, 1, 2)]
    assert run[0] == run[1] and run[0] != run[2]


# -- plots ----------------------------------------------------------------------------


def test_plots_draw_the_points(faces_dir: Path) -> None:
    dfx = faces_frame(faces_dir, 3)
    ax = S.plot_image_points(dfx, 1, "fullpath", max_point=5, figsize=(3, 3))
    expected = np.stack([dfx.loc[1, XS[:5]].to_numpy(np.float64), dfx.loc[1, YS[:5]].to_numpy(np.float64)], 1)
    np.testing.assert_allclose(ax.collections[0].get_offsets(), expected)
    imgs = np.zeros((2, 20, 10, 1), np.uint8)
    ax = S.plot_prediction_points(imgs, np.array([[0, 0, 0, 0], [1.0, 2.0, 3.0, 4.0]]), _index_=1)
    np.testing.assert_allclose(ax.collections[0].get_offsets(), [[1.0, 3.0], [2.0, 4.0]])
    assert ax.get_images()[0].get_array().shape[:2] == (20, 10)
    plt.close("all")
