"""The seed library's functions (``cnn_model_resnet`` / ``dl_utils``) on top of cnnkit's core.

Same names, argument order, defaults and NHWC numpy shapes as the seed; every step is
delegated to the core (``TableDataset`` / ``decode_image`` to load, ``build_model`` to
build, ``StepSetup`` + ``train_one_epoch`` to train, ``run_inference`` to predict,
``save_model`` / ``load_model`` for files). Porting a notebook means changing its import
lines only; see docs/compat.md.

Deviations from the seed (each deliberate):

- Checkpoints: ``save_name='x'`` writes ``x.safetensors`` (the name is kept as given when it
  already ends in ``.safetensors``); ``restore_name``, ``model_dir`` and ``model_name`` follow
  the same rule. The file also works with ``cnnkit.infer.predict.predict``. It holds the
  weights, not Adam's moments: a restored run restarts Adam's statistics. When restoring,
  the checkpoint's architecture is used; a ``model`` list that differs is an error.
- ``train``, ``predict_model`` and ``test_model`` walk the WHOLE DataFrame batch by batch
  from row 0 (the seed overwrote ``offset`` the same way); ``offset`` only matters to
  ``df_x_y`` / ``df_xy``. The last partial batch is used once per pass (the seed trained
  it after every full batch) and ``batch_size`` in the caller's dict is never changed.
- The caller's ``df_xy_args`` dict and DataFrame are never mutated.
- ``df_x_y`` / ``df_xy`` return the rows that exist in ``offset .. offset+batch_size`` (as
  ``iloc``; possibly fewer, or none) instead of failing with an IndexError.
- Images are uint8 in both colour modes (the seed returned float64 grey); alpha channels
  are dropped (the seed returned 4 channels for RGBA files and then failed); EXIF
  orientation is applied; the resize filter is LANCZOS (Pillow's old ANTIALIAS).
- The network sees images scaled to [0, 1] and normalised with ImageNet statistics, and
  predicts landmarks normalised to the input frame; every value the seed API returns or
  prints is still in resized pixels. The regression loss (training and ``test_model``) is
  the seed's MSE in resized pixels; NaN landmarks are masked out of it.
- ``res_131`` adds its residual (the seed's comparison bug dropped it) and projects the
  shortcut when channels change; as in the seed it keeps the resolution (no stride by default).
- Missing arguments (``model=None``, no ``save_name`` / ``restore_name`` / ``model_dir``)
  raise ``ConfigError`` instead of printing and returning None/0; an unknown ``opt_mode``
  or ``df_xy_args`` key raises too, with a suggestion.
- ``train`` returns the mean training loss of each pass (the seed returned None) and takes
  a keyword-only ``seed`` (default 0) that seeds python/numpy/torch: runs repeat exactly.
  ``v=True`` prints ``Iter: <pass> batch <i> batches <n> Loss: <batch loss>`` where ``n``
  counts the partial batch too.
- ``predict_model`` / ``test_model`` run the network in evaluation mode;
  ``is_training=True`` is not supported (a warning is issued and it is ignored).
- ``test_model`` statistics for classification: class index 1 is the positive class;
  ``spe`` / ``sen`` / ``acc`` are NaN when undefined (0/0); with more than two classes only
  ``acc`` and ``loss`` are defined (the counts are NaN). ``stats_list`` defaults to a tuple.
- ``plot_*`` honour ``figsize`` and return the matplotlib Axes.
- Runs on the GPU when one is visible (``device='auto'``).
"""

from __future__ import annotations

import inspect
import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from cnnkit import geometry
from cnnkit.compat.seed_data import (
    _as_list,
    _class_table,
    _image_table,
    _landmark_table,
    batch_params,
    df_x_y,
    df_xy,
)
from cnnkit.compat.seed_plots import plot_image_points, plot_prediction_points
from cnnkit.config import CropConfig
from cnnkit.data.augment import Augment
from cnnkit.data.dataset import TableDataset
from cnnkit.data.loader import make_loader
from cnnkit.data.table import AnnotationTable
from cnnkit.data.views import ViewDataset, collate_frames
from cnnkit.engine import tensors as T
from cnnkit.engine.device import resolve_device
from cnnkit.engine.inference import run_inference, validation_strategy
from cnnkit.engine.metrics import class_metrics
from cnnkit.engine.step import StepSetup
from cnnkit.errors import ConfigError, DataError, did_you_mean
from cnnkit.io.checkpoint import load_model
from cnnkit.io.checkpoint import save_model as _save_checkpoint
from cnnkit.io.meta import CheckpointMeta
from cnnkit.model.builder import build_model
from cnnkit.rng import make_generator, seed_global
from cnnkit.spec.parse import load_spec
from cnnkit.train.loop import train_one_epoch
from cnnkit.train.losses import make_loss

__all__ = [
    "batch_params", "checkpoint_path", "df_x_y", "df_xy", "plot_image_points", "plot_prediction_points",
    "predict_model", "test_model", "train",
]  # fmt: skip

SUFFIX = ".safetensors"
OPT_MODES = ("regression", "classification")
_TASK = {"regression": "landmarks", "classification": "classes"}
STATS = ("tp", "tn", "fp", "fn", "loss", "spe", "sen", "acc")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def checkpoint_path(name: str | os.PathLike[str]) -> Path:
    """The file a seed model name refers to: ``'x'`` -> ``x.safetensors``; ``'x.safetensors'`` kept.

    Example:
        >>> checkpoint_path("test_model").name, checkpoint_path("m/run.v2.safetensors").name
        ('test_model.safetensors', 'run.v2.safetensors')
    """
    p = Path(name)
    return p if p.suffix == SUFFIX else p.with_name(p.name + SUFFIX)


# -- the df_xy_args dict --------------------------------------------------------------


@dataclass(frozen=True)
class _Args:
    """A validated, private copy of the caller's ``df_xy_args`` (never mutated)."""

    df: pd.DataFrame
    x_label: str
    xp_label: Any
    yp_label: Any
    y_label: Any
    batch_size: int
    size: tuple[int, int]
    gray: bool
    zip_file: Any

    def table(self, opt_mode: str, *, targets: bool = True) -> AnnotationTable:
        if not targets:
            return _image_table(self.df, self.x_label, self.zip_file)
        if opt_mode == "regression":
            return _landmark_table(self.df, self.x_label, self.xp_label, self.yp_label, self.zip_file)
        return _class_table(self.df, self.x_label, self.y_label, self.zip_file)

    def dataset(self, table: AnnotationTable) -> TableDataset:
        return TableDataset(table, size=self.size, grayscale=self.gray)


def _check_mode(opt_mode: str) -> None:
    if opt_mode not in OPT_MODES:
        raise ConfigError(f"opt_mode {opt_mode!r} is not one of {OPT_MODES}.{did_you_mean(opt_mode, OPT_MODES)}")


def _read_args(df_xy_args: Mapping[str, Any], opt_mode: str, *, targets: bool) -> _Args:
    _check_mode(opt_mode)
    if not isinstance(df_xy_args, Mapping):
        raise ConfigError(f"df_xy_args must be the dict of df_x_y / df_xy arguments. Received {type(df_xy_args).__name__}")
    known = set(inspect.signature(df_x_y).parameters) | {"y_label"}
    for key in df_xy_args:
        if key not in known:
            raise ConfigError(f"df_xy_args: unknown key {key!r}.{did_you_mean(key, known)} Allowed: {sorted(known)}")
    need = ["df", "x_label"]
    if targets:
        need += ["xp_label", "yp_label"] if opt_mode == "regression" else ["y_label"]
    missing = [k for k in need if df_xy_args.get(k) is None]
    if missing:
        raise ConfigError(f"df_xy_args lacks {missing} (needed for opt_mode={opt_mode!r})")
    a = dict(df_xy_args)
    size = a.get("resize_wh", (32, 32))
    return _Args(df=a["df"], x_label=a["x_label"], xp_label=a.get("xp_label"), yp_label=a.get("yp_label"),
                 y_label=a.get("y_label"), batch_size=int(a.get("batch_size", 5)),
                 size=(int(size[0]), int(size[1])), gray=bool(a.get("toGray", False)),
                 zip_file=a.get("zip_file"))  # fmt: skip


# -- training -------------------------------------------------------------------------


def _meta(table: AnnotationTable, args: _Args, opt_mode: str) -> CheckpointMeta:
    """Checkpoint metadata as training makes it (``CheckpointMeta.for_run``), plus the seed call's labels."""
    channels = 1 if args.gray else 3
    meta = CheckpointMeta.for_run(task=table.task, landmarks=table.landmarks, classes=table.classes, flip_pairs=(),
                                  normalisation=T.default_normalisation(channels), size=args.size, channels=channels,
                                  grayscale=args.gray, augment=Augment().to_dict())
    return meta.with_values(seed_api={"opt_mode": opt_mode, "x_label": str(args.x_label), "y_label": _names(args.y_label),
                                      "xp_label": _names(args.xp_label), "yp_label": _names(args.yp_label)})


def _names(labels: Any) -> list[str] | None:
    return None if labels is None else [str(c) for c in _as_list(labels)]


def _setup(meta: Mapping[str, Any], device: torch.device) -> StepSetup:
    norm = meta["normalisation"]
    return StepSetup(task=meta["task"], size=(int(meta["size"][0]), int(meta["size"][1])),
                     mean=tuple(norm["mean"]), std=tuple(norm["std"]), device=device,
                     crop=CropConfig.parse(meta.get("crop")))  # fmt: skip


def _crop_batch(net: nn.Module, setup: StepSetup, batch: Mapping[str, Any], frames: ViewDataset) -> Any:
    """A crop-trained model on a seed batch: two passes over the rows' frames (cnnkit.engine.two_pass), the
    points then placed in the batch's resized pixels, as the seed API reports them."""
    res = run_inference(validation_strategy(net, setup), [collate_frames([frames[int(i)] for i in batch["index"]])])
    res.pred_input_px = geometry.original_to_input(res.pred, batch["scale"].numpy().astype(np.float64),
                                                   batch["offset"].numpy().astype(np.float64))
    return res


def _loss(task: str, size: tuple[int, int]) -> LossFn:
    """Seed losses: MSE in RESIZED pixels (landmarks; the network works in normalised units) or cross-entropy."""
    if task == "classes":
        return make_loss("classes", "cross_entropy")
    mse = make_loss("landmarks", "mse")
    return lambda pred, target: mse(geometry.norm_to_input(pred, size), geometry.norm_to_input(target, size))


def _outputs(task: str, table: AnnotationTable) -> int:
    return 2 * len(table.landmarks) if task == "landmarks" else len(table.classes)


def _restore(name: Any, model: Any, meta: CheckpointMeta, device: torch.device) -> tuple[nn.Module, CheckpointMeta]:
    """Load ``name``'s checkpoint for training; it must match the data the dict describes."""
    if name is None:
        raise ConfigError("train(restore_model=True) needs restore_name, the save_name of an earlier run")
    path = checkpoint_path(name)
    net, saved = load_model(path, device=device)
    for key in ("task", "size", "channels", "landmarks", "classes"):
        if saved.get(key) != meta[key]:
            raise ConfigError(f"{path}: the checkpoint's {key} is {saved.get(key)!r} but df_xy_args gives "
                              f"{meta[key]!r}. Restore with the same columns, resize_wh, toGray and opt_mode.")  # fmt: skip
    if model is not None and json.loads(json.dumps(load_spec(model))) != saved["model"]["spec"]:
        raise ConfigError(f"{path}: the model list differs from the checkpoint's architecture; pass model=None "
                          "or the same list to continue from it.")  # fmt: skip
    return net, meta.with_values(normalisation=saved.normalisation)


def _printer(p: int, n_batches: int, sink: list[float]) -> Callable[[int, Mapping[str, float]], None]:
    def show(_n: int, _logs: Mapping[str, float]) -> None:
        print("Iter:", p, "batch", len(sink) - 1, "batches", n_batches, "Loss:", sink[-1])

    return show


def train(df_xy_args: Mapping[str, Any], model: Any = None, iters: int = 10, lr: float = 0.001,
          save_model: bool = True, save_name: str | None = None, restore_model: bool = False,
          restore_name: str | None = None, v: bool = False, opt_mode: str = "classification",
          *, seed: int = 0) -> list[float]:  # fmt: skip
    """Seed API: train ``model`` (a spec list) for ``iters`` passes over the DataFrame with Adam(lr).

    The seed's automatic final layer (``2 x landmarks`` or ``n_classes`` outputs) is added by
    ``build_model``; regression targets are ``[x0..xN, y0..yN]`` in resized pixels (MSE).

    Returns:
        The mean training loss of each pass (length ``iters``).
    """
    args = _read_args(df_xy_args, opt_mode, targets=True)
    table = args.table(opt_mode)
    if len(table) == 0:
        raise DataError("train: the DataFrame in df_xy_args has no rows")
    seed_global(seed)
    device, meta = resolve_device("auto"), _meta(table, args, opt_mode)
    if restore_model:
        net, meta = _restore(restore_name, model, meta, device)
    elif model is None:
        raise ConfigError("train needs model=[...], a layer list such as [['conv', {'layer_depth': 8}], ['relu']]")
    else:
        net = build_model(model, size=args.size, channels=meta["channels"], outputs=_outputs(table.task, table),
                          head="flatten").to(device)  # fmt: skip
    setup, loss_fn = _setup(meta, device), _loss(table.task, args.size)
    loader = make_loader(args.dataset(table), batch_size=args.batch_size, shuffle=False, seed=seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _step: 1.0)  # the seed's constant rate
    gen, means = make_generator(seed), []
    for p in range(int(iters)):
        sink: list[float] = []

        def recorded(pred: torch.Tensor, target: torch.Tensor, sink: list[float] = sink) -> torch.Tensor:
            loss = loss_fn(pred, target)
            sink.append(float(loss.detach()))
            return loss

        logs = train_one_epoch(net, loader, setup, opt, sched, recorded, generator=gen,
                               on_batch=_printer(p, len(loader), sink) if v else None)  # fmt: skip
        means.append(float(logs["train_loss"]))
    if save_model:
        _save(net, meta, save_name)
    return means


def _save(net: nn.Module, meta: Mapping[str, Any], save_name: str | None) -> None:
    if save_name is None:
        warnings.warn("train(save_model=True) without save_name: the model is not saved", stacklevel=3)
        return
    path = _save_checkpoint(checkpoint_path(save_name), net, meta)
    print(f"Model saved in file: {path}")


# -- prediction and testing -----------------------------------------------------------


def _load(args: _Args, name: Any, opt_mode: str, is_training: bool, what: str) -> tuple[nn.Module, CheckpointMeta]:
    if name is None:
        raise ConfigError(f"{what} needs the model name given to train(save_name=...)")
    if is_training:
        warnings.warn(f"{what}(is_training=True) is not supported; the model runs in evaluation mode", stacklevel=3)
    path = checkpoint_path(name)
    net, meta = load_model(path, device=resolve_device("auto"))
    if meta.get("task") != _TASK[opt_mode]:
        raise ConfigError(f"{path} is a {meta.get('task')!r} model but opt_mode={opt_mode!r}; use opt_mode="
                          f"{'regression' if meta.get('task') == 'landmarks' else 'classification'!r}")  # fmt: skip
    if list(meta["size"]) != list(args.size) or bool(meta.get("grayscale")) != args.gray:
        raise ConfigError(f"{path} was trained on resize_wh={tuple(meta['size'])}, toGray={bool(meta.get('grayscale'))}; "
                          f"df_xy_args gives resize_wh={args.size}, toGray={args.gray}. Use the training values.")  # fmt: skip
    return net, meta


def _batches(args: _Args, table: AnnotationTable) -> Any:
    return make_loader(args.dataset(table), batch_size=args.batch_size, shuffle=False)


def predict_model(df_xy_args: Mapping[str, Any], model_dir: str | None = None, opt_mode: str = "classification",
                  is_training: bool = False, v: bool = False) -> list[Any]:  # fmt: skip
    """Seed API: per batch, regression (B, 2N) ``[x.., y..]`` in resized pixels, or
    classification ``(softmax probabilities (B, C), predicted class index (B,))``."""
    args = _read_args(df_xy_args, opt_mode, targets=False)
    net, meta = _load(args, model_dir, opt_mode, is_training, "predict_model")
    setup, out = _setup(meta, next(net.parameters()).device), []
    table = args.table(opt_mode, targets=False)
    frames = None if setup.crop is None else ViewDataset(table, crop=setup.crop, grayscale=args.gray, mode="frames")
    for batch in _batches(args, table):
        res = (run_inference(validation_strategy(net, setup), [batch]) if frames is None
               else _crop_batch(net, setup, batch, frames))
        if setup.task == "landmarks":
            pts = res.pred_input_px if res.pred_input_px is not None else np.zeros((0, 0, 2))
            item: Any = np.concatenate([pts[:, :, 0], pts[:, :, 1]], axis=1)
        else:
            item = (res.pred, res.pred.argmax(axis=1))
        if v:
            print(item)
        out.append(item)
    return out


def _class_stats(pred: np.ndarray, true: np.ndarray, classes: Sequence[str], loss: float) -> dict[str, float]:
    m = class_metrics(pred, true, classes=classes)
    nan = float("nan")
    stats = {k: m.get(k, nan) for k in ("tp", "tn", "fp", "fn")}
    stats.update(spe=m.get("specificity", nan), sen=m.get("sensitivity", nan), acc=m["accuracy"], loss=loss)
    return stats


def test_model(df_xy_args: Mapping[str, Any], model_name: str | None = None, opt_mode: str = "regression",
               stats_list: Sequence[str] = STATS, is_training: bool = False) -> list[Any]:  # fmt: skip
    """Seed API: per-batch statistics. Regression: the batch MSE in resized pixels (float).
    Classification: a dict ``{name: value for name in stats_list}`` (tp, tn, fp, fn, spe, sen, acc, loss)."""
    args = _read_args(df_xy_args, opt_mode, targets=True)
    for s in stats_list:
        if s not in STATS:
            raise ConfigError(f"stats_list: unknown statistic {s!r}.{did_you_mean(s, STATS)} Known: {STATS}")
    net, meta = _load(args, model_name, opt_mode, is_training, "test_model")
    table = args.table(opt_mode)
    want, got = len(meta["landmarks"]) + len(meta["classes"]), len(table.landmarks) + len(table.classes)
    if want != got:
        raise ConfigError(f"{checkpoint_path(model_name or '')}: the model predicts {want} {table.task}, "
                          f"but df_xy_args gives {got}. Use the columns it was trained with.")  # fmt: skip
    setup = _setup(meta, next(net.parameters()).device)
    loss_fn, out = _loss(setup.task, setup.size), []
    frames = None if setup.crop is None else ViewDataset(table, crop=setup.crop, grayscale=args.gray, mode="frames")
    for batch in _batches(args, table):
        if frames is None:
            res = run_inference(validation_strategy(net, setup), [batch], loss_fn)
        else:  # the seed's loss: MSE in the batch's resized pixels
            res = _crop_batch(net, setup, batch, frames)
            pred = torch.from_numpy(geometry.input_to_norm(res.pred_input_px, setup.size)).float()
            res.loss = float(loss_fn(pred, geometry.input_to_norm(batch["points"].float(), setup.size)))
        if setup.task == "landmarks":
            item: Any = float(res.loss)
            print("Loss", item)
        else:
            stats = _class_stats(res.pred, np.asarray(res.true), table.classes, float(res.loss))
            item = {k: stats[k] for k in stats_list}
            print(item)
        out.append(item)
    return out


test_model.__test__ = False  # type: ignore[attr-defined]  # a seed name, not a pytest test
