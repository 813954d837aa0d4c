"""``train.log: tensorboard``: watch a long run live in TensorBoard (``pip install 'cnnkit[tensorboard]'``).

Events go to ``<run>/tensorboard/``, written by the main process only (rank 0 under torchrun),
one step per epoch (the epoch number, 1-based like ``metrics.csv``):

- every value of the epoch's history row, as in ``metrics.csv``: ``train_loss`` -> ``train/loss``,
  ``val_error_px_mean`` -> ``val/error_px_mean``, other columns under ``run/`` (``run/time_s``);
- the learning rate of each parameter group: ``train/lr`` (``train/lr_1``, ... for more groups);
- landmark models with a validation split: the first ``IMAGES`` validation images as the network
  sees them, the true points as faded rings and the predicted points as discs, one colour per
  landmark (``val/predictions``).

The run folder stays the source of truth (``metrics.csv``, checkpoints, the report): these events
are a view of it. TensorBoard's writer appends to its event file as the run goes (that is what lets
it be watched), so this is the one file cnnkit does not write through ``cnnkit.atomic``.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from cnnkit.engine.step import StepSetup
from cnnkit.errors import ConfigError
from cnnkit.io.run_folder import TENSORBOARD
from cnnkit.train.plots import val_sample

FOLDER = TENSORBOARD
IMAGES = 4


class TensorBoardLog:
    """One run's TensorBoard events; ``on_epoch_end`` after every epoch (main process only)."""

    def __init__(self, out: Path, *, val_loader: Any = None, setup: StepSetup | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("train.log: tensorboard needs the tensorboard package: "
                              "pip install 'cnnkit[tensorboard]'") from None
        self.folder = Path(out) / FOLDER
        self.writer = SummaryWriter(log_dir=str(self.folder), flush_secs=10)
        self._close = weakref.finalize(self, self.writer.close)  # closed with the runner, or at exit
        self.val_loader, self.setup = val_loader, setup

    def on_epoch_end(self, epoch: int, row: Mapping[str, float], lrs: Sequence[float],
                     model: nn.Module | None = None) -> None:
        """Write the history ``row`` of ``epoch`` (1-based), the rates and (landmarks) a few drawn images."""
        for key, value in row.items():
            if key != "epoch":
                self.writer.add_scalar(tag_of(key), float(value), epoch)
        for i, lr in enumerate(lrs):
            self.writer.add_scalar("train/lr" if i == 0 else f"train/lr_{i}", float(lr), epoch)
        if model is not None and self.val_loader is not None and self.setup is not None \
                and self.setup.task == "landmarks":
            self.writer.add_images("val/predictions", val_pictures(model, self.val_loader, self.setup), epoch,
                                   dataformats="NHWC")
        self.writer.flush()

    def close(self) -> None:
        self._close()


def tag_of(key: str) -> str:
    """A history column's TensorBoard tag.

    Example:
        >>> tag_of("train_loss"), tag_of("val_error_px_mean"), tag_of("images_per_s")
        ('train/loss', 'val/error_px_mean', 'run/images_per_s')
    """
    for prefix in ("train_", "val_"):
        if key.startswith(prefix):
            return f"{prefix[:-1]}/{key[len(prefix):]}"
    return f"run/{key}"


def val_pictures(model: nn.Module, val_loader: Any, setup: StepSetup, n: int = IMAGES) -> np.ndarray:
    """``(N, H, W, 3)`` uint8: the first ``n`` validation images with true (rings) and predicted (discs) points."""
    from cnnkit.viz.video import draw_points

    sample = val_sample(model, val_loader, setup, n)
    pred_px = sample.outputs.pred_input_px
    pictures = []
    for k, image in enumerate(sample.images):
        image = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
        true = sample.batch["points"][k].numpy()
        ringed = draw_points(image, true, np.zeros(len(true)), threshold=1.0)  # below threshold: a faded ring
        pictures.append(draw_points(ringed, pred_px[k] if pred_px is not None else np.full_like(true, np.nan)))
    return np.stack(pictures)
