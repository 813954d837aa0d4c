"""What one run is made of, built once from a ``TrainingJob`` (``assemble_parts``): the model for the
table (``build_for_table``), the loaders, the step setup, the loss and the checkpoint metadata.

``fit`` builds them for the run and ``train.time`` (cnnkit.train.budget) for its speed probe, so
what is timed is what trains.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from cnnkit.config import CropConfig, DataConfig, TrainConfig
from cnnkit.data.augment import Augment, flip_permutation
from cnnkit.data.dataset import TableDataset
from cnnkit.data.loader import EpochSampler, make_loader
from cnnkit.data.memo import MEMORY
from cnnkit.data.sizing import table_subject_share
from cnnkit.data.table import AnnotationTable
from cnnkit.data.views import ViewDataset, ViewSampler, collate_frames
from cnnkit.engine import tensors as T
from cnnkit.engine.step import StepSetup
from cnnkit.errors import ConfigError
from cnnkit.io.meta import CheckpointMeta
from cnnkit.model.builder import build_model
from cnnkit.model.defaults import default_loss, prepare_for_task
from cnnkit.train.budget import TimePlan
from cnnkit.train.distributed import DistContext
from cnnkit.train.losses import MapLoss, make_loss

if TYPE_CHECKING:
    from cnnkit.train.job import TrainingJob


@dataclass(frozen=True)
class RunParts:
    """What one run is made of, built once by ``fit`` and handed down whole."""

    model: nn.Module
    setup: StepSetup
    loaders: dict[str, Any]  # 'train', and 'val' when there is a validation table
    loss_fn: Any
    meta: CheckpointMeta  # the model files' record: task, names, input, normalisation, ...
    freeze_bn: bool = False  # keep the backbone's BatchNorm statistics (pretrained weights)
    time_plan: TimePlan | None = None  # train.time's plan: its epochs replace the length rule
    started_s: float = 0.0  # time.monotonic() at the run's start, where train.time counts from


def make_loss_for(train: AnnotationTable, cfg: TrainConfig, net: nn.Module | None = None,
                  crop: CropConfig | None = None) -> Any:
    """The configured loss, or the default for the task and head (``model.defaults.default_loss``);
    crop training of a heatmap head adds the map loss (``data.crop.map_loss``, ``losses.MapLoss``)."""
    name = cfg.loss or default_loss(train.task, getattr(net, "head", None))
    opts = {"label_smoothing": cfg.label_smoothing} if train.task == "classes" and cfg.label_smoothing else {}
    loss = make_loss(train.task, name, **opts)
    if crop is not None and crop.map_loss > 0 and getattr(net, "head", None) == "heatmap":
        return MapLoss(loss, getattr(net, "head_net"), crop.map_loss)  # noqa: B009 - the HeatmapHead
    return loss


def _n_outputs(train: AnnotationTable) -> int:
    return 2 * len(train.landmarks) if train.task == "landmarks" else len(train.classes)


def build_for_table(model: Any, train: AnnotationTable, data_cfg: DataConfig, head: Any = None,
                    pretrained: Any = None) -> tuple[nn.Module, Mapping[str, list[float]] | None]:
    """A module as given (outputs checked), or built from a spec with the table's output count.

    Head, loss and initial state follow ``cnnkit.model.defaults``, the same for a preset name, its
    list and a file holding it. Returns the module and, with ``pretrained`` weights, the input
    normalisation they expect (else None).
    """
    n_out = _n_outputs(train)
    if isinstance(model, nn.Module):
        outputs = getattr(model, "outputs", None)
        if outputs is not None and outputs != n_out:
            raise ConfigError(f"the model has {outputs} outputs but the table needs {n_out} "
                              f"({'2 x landmarks' if train.task == 'landmarks' else 'one per class'})")
        return model, None
    net = build_model(model, size=data_cfg.frame, channels=data_cfg.channels, outputs=n_out, head=head,
                      task=train.task)
    weights_norm = None
    if pretrained is not None:
        from cnnkit.model.pretrained import load_pretrained

        weights_norm = load_pretrained(net, pretrained).normalisation
    prepare_for_task(net, train.task)
    return net, weights_norm


def assemble_parts(net: nn.Module, job: TrainingJob, device: torch.device, dist: DistContext) -> RunParts:
    """The model and everything each step needs, built once for the run."""
    train, aug = job.train, job.augment
    norm = dict(job.normalisation) if job.normalisation else T.default_normalisation(job.data.channels)
    setup = StepSetup(
        task=train.task, size=job.data.frame, mean=tuple(norm["mean"]), std=tuple(norm["std"]),
        device=device, precision=job.cfg.precision, channels_last=bool(job.cfg.channels_last), augment=aug,
        flip_perm=flip_permutation(train.landmarks, train.flip_pairs, force=aug.force_flip) if aug.flip else None,
        crop=job.data.crop_settings,
    )
    freeze_bn = job.cfg.freeze_bn if job.cfg.freeze_bn is not None else job.pretrained is not None
    loaders = _loaders(train, job.val, job.data, job.cfg, dist)
    share = table_subject_share(train) if job.data.crop_settings is not None else None
    meta = _checkpoint_meta(train, job.data, norm, aug, share)
    return RunParts(model=net, setup=setup, loaders=loaders, loss_fn=make_loss_for(train, job.cfg, net, job.data.crop_settings),
                    meta=meta, freeze_bn=freeze_bn, time_plan=job.time_plan)


def _loaders(train: AnnotationTable, val: AnnotationTable | None, data_cfg: DataConfig,
             cfg: TrainConfig, dist: DistContext) -> dict[str, Any]:
    """Train loader (shuffled, padded shard per rank) and val loader (in order, unpadded shard)."""
    def dataset(table: AnnotationTable, mode: str) -> ViewDataset | TableDataset:
        crop = data_cfg.crop_settings
        if crop is not None:  # views of the frames; validation scores whole frames in two passes
            return ViewDataset(table, crop=crop, grayscale=data_cfg.grayscale, cache=data_cfg.cache,
                               seed=cfg.seed, mode=mode, remember_whole=True)
        return TableDataset(table, size=data_cfg.frame, grayscale=data_cfg.grayscale, letterbox=data_cfg.letterbox,
                            cache=data_cfg.cache)

    with dist.main_first(enabled=data_cfg.cache not in (None, MEMORY)):  # rank 0 builds the on-disk cache
        sets = {"train": dataset(train, "train")}
        if val is not None and len(val):
            sets["val"] = dataset(val, "frames")
    shard = {"rank": dist.rank, "world_size": dist.world_size}
    crop = data_cfg.crop_settings is not None
    return {name: make_loader(ds, batch_size=cfg.resolved_batch_size, shuffle=name == "train", seed=cfg.seed,
                              workers=data_cfg.workers, collate_fn=collate_frames if crop and name == "val" else None,
                              sampler=(ViewSampler if crop else EpochSampler)(
                                  len(ds), shuffle=name == "train", seed=cfg.seed, pad=name == "train", **shard))
            for name, ds in sets.items()}


def _checkpoint_meta(train: AnnotationTable, data_cfg: DataConfig, norm: Mapping[str, Any], aug: Augment,
                     subject_share: float | None) -> CheckpointMeta:
    """The model files' record (``subject_share``: crop models; ``views='auto'`` falls back on it)."""
    crop = data_cfg.crop_settings
    return CheckpointMeta.for_run(task=train.task, landmarks=train.landmarks, classes=train.classes,
                                  flip_pairs=train.flip_pairs, normalisation=norm, size=data_cfg.frame,
                                  channels=data_cfg.channels, grayscale=data_cfg.grayscale,
                                  letterbox=data_cfg.letterbox, augment=aug.to_dict(),
                                  crop=None if crop is None else crop.to_dict(), subject_share=subject_share)
