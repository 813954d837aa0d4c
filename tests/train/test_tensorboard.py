"""train.log: tensorboard: the events hold metrics.csv's values, the rates and drawn validation images."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cnnkit.config import TrainConfig
from cnnkit.data.sources import read_annotations
from cnnkit.errors import ConfigError
from cnnkit.train.distributed import DistContext
from cnnkit.train.epochs import _tensorboard
from cnnkit.train.fit import fit
from cnnkit.train.tensorboard import IMAGES, tag_of

pytest.importorskip("tensorboard")

TINY = [["conv", {"filter_size": 3, "layer_depth": 8, "strides": [1, 2, 2, 1]}], ["relu"], ["global_avg_pool"]]


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


def test_two_epochs_of_events_match_metrics_csv(lips_dir, tmp_path) -> None:
    table = read_annotations(lips_dir / "via_project.json").subset(range(0, 700, 50))  # 14 images
    train, val = table.split((0.7, 0.3), seed=0)
    fit(TINY, train, val, out_dir=tmp_path, epochs=2, size=(32, 24), batch_size=4, quiet=True, plots=False,
        augment=None, log="tensorboard", lr=1e-2, schedule="cosine")
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    acc = _events(tmp_path / "tensorboard")
    tags = set(acc.Tags()["scalars"])
    for key in metrics.columns.drop("epoch"):
        events = acc.Scalars(tag_of(key))
        assert [e.step for e in events] == [1, 2]
        np.testing.assert_allclose([e.value for e in events], metrics[key], rtol=1e-6, equal_nan=True)
    assert {"train/loss", "val/error_px_mean", "run/time_s", "train/lr"} <= tags
    lrs = [e.value for e in acc.Scalars("train/lr")]
    assert 1e-2 > lrs[0] > lrs[1] >= 0  # the cosine's rate after each epoch (0 after the last)
    assert acc.Tags()["images"] == ["val/predictions"]
    pictures = acc.Images("val/predictions")  # one strip of the first validation images per epoch
    assert [p.step for p in pictures] == [1, 2]
    assert (pictures[0].width, pictures[0].height) == (32 * min(IMAGES, len(val.df)), 24)
    strip = np.asarray(Image.open(io.BytesIO(pictures[-1].encoded_image_string)).convert("RGB")).astype(int)
    coloured = np.ptp(strip, axis=2) > 60  # lips frames are grey: colour is a drawn point
    assert coloured.sum() > 20


def test_log_setting_is_checked_and_only_the_main_process_writes(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"log: unknown value 'tensorbord'\. Did you mean 'tensorboard'\?"):
        TrainConfig(log="tensorbord")
    cfg = TrainConfig(log="tensorboard")
    assert _tensorboard(cfg, tmp_path, DistContext(rank=1, world_size=2), parts=None) is None
    assert _tensorboard(TrainConfig(), tmp_path, DistContext(), parts=None) is None
    assert not (tmp_path / "tensorboard").exists()


def test_a_missing_tensorboard_is_named_before_training(tmp_path, monkeypatch) -> None:
    import builtins

    from cnnkit.train.tensorboard import TensorBoardLog

    real = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(ConfigError, match=r"pip install 'cnnkit\[tensorboard\]'"):
        TensorBoardLog(tmp_path)
