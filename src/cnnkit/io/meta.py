"""``CheckpointMeta``: what a model file says about its model, written and read in one place.

A model file's safetensors metadata holds one key, ``'cnnkit'``: the JSON of this record
(``io/checkpoint.py`` writes and reads it). Everything ``predict`` needs beside the weights is
here: the architecture (``model``: ``model.config()``, enough to rebuild the network), the task
and names, the input (size, channels, normalisation, grayscale, letterbox, crop), and what the run
learnt about the model (the epoch, the mean training shape, the strategy measured at the end).

Keys this version does not know (written by a later cnnkit, or added by a caller) are kept in
``extra`` and written back unchanged. The record is also a read-only mapping (``meta["task"]``,
``meta.get("crop")``, ``dict(meta)``) for code that treats it as the JSON object it is stored as.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cnnkit.errors import CheckpointError

#: The version of the model file's layout (and of the training state's); a reader refuses others.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class CheckpointMeta(Mapping[str, Any]):
    """The metadata of one model file. Built by ``for_run`` (training, the seed API) or ``from_dict`` (reading).

    Attributes:
        task: 'landmarks' or 'classes'.
        landmarks, classes: names in output order.
        flip_pairs: left/right landmark name pairs (lists of two names).
        normalisation: {'mean': [...], 'std': [...]} per channel.
        size: [width, height] of the network input; channels: its channels.
        grayscale, letterbox: how images were read.
        augment: the training augmentation (``Augment.to_dict``), for the record.
        crop: the crop settings (``CropConfig.to_dict``) of a crop-trained model, else None.
        subject_share: the share of the frame the training subject spanned (crop models).
        model: the network's rebuild config (``model.config()``); set when the file is written.
        epoch: the epochs done when written (-1: interrupted mid-epoch).
        mean_shape_norm: the mean training shape, (K, 2) normalised to the input (the baseline).
        selected_by: the history column that chose this file (best.safetensors).
        views_measured: a crop model's strategies scored on validation at the end of its run.
        error_calibration: the map from the likelihood to an expected error in px, fitted on validation at
            the end of the run (``ErrorCalibration.to_dict``; ``cnnkit.train.uncertainty``), else None.
        uncertainty_measured: how that calibration scored on validation (its signal, ROC AUC, errors).
        extra: keys this version does not know, kept as read.
    """

    task: str
    landmarks: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    flip_pairs: tuple[tuple[str, str], ...] = ()
    normalisation: Mapping[str, Sequence[float]] = field(default_factory=dict)
    size: tuple[int, int] | None = None
    channels: int | None = None
    grayscale: bool = False
    letterbox: bool = False
    augment: Mapping[str, Any] | None = None
    crop: Mapping[str, Any] | None = None
    subject_share: float | None = None
    model: Mapping[str, Any] | None = None
    epoch: int | None = None
    mean_shape_norm: Sequence[Sequence[float]] | None = None
    selected_by: str | None = None
    views_measured: Mapping[str, Any] | None = None
    error_calibration: Mapping[str, Any] | None = None
    uncertainty_measured: Mapping[str, Any] | None = None
    format_version: int = FORMAT_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)

    # -- made in one place ----------------------------------------------------
    @classmethod
    def for_run(cls, *, task: str, landmarks: Sequence[str], classes: Sequence[str],
                flip_pairs: Sequence[Sequence[str]], normalisation: Mapping[str, Sequence[float]],
                size: Sequence[int], channels: int, grayscale: bool = False, letterbox: bool = False,
                augment: Mapping[str, Any] | None = None, crop: Mapping[str, Any] | None = None,
                subject_share: float | None = None) -> CheckpointMeta:
        """The record a run starts with (training, the seed API); the epoch and shape follow at each commit."""
        return cls(task=task, landmarks=tuple(landmarks), classes=tuple(classes),
                   flip_pairs=tuple((str(a), str(b)) for a, b in flip_pairs),
                   normalisation={k: [float(x) for x in v] for k, v in normalisation.items()},
                   size=(int(size[0]), int(size[1])), channels=int(channels), grayscale=bool(grayscale),
                   letterbox=bool(letterbox), augment=augment, crop=crop,
                   subject_share=None if subject_share is None else round(float(subject_share), 4))

    def with_values(self, **values: Any) -> CheckpointMeta:
        """A copy with some keys set (known keys as fields, others into ``extra``)."""
        known = {f.name for f in dataclasses.fields(self)} - {"extra"}
        fields = {k: v for k, v in values.items() if k in known}
        other = {k: v for k, v in values.items() if k not in known}
        return dataclasses.replace(self, **fields, extra={**self.extra, **other})

    def identity(self) -> dict[str, Any]:
        """The keys that make two runs' models the same model (a resume must keep them)."""
        keys = ("task", "landmarks", "classes", "flip_pairs", "normalisation", "size", "channels", "grayscale",
                "letterbox", "augment", "crop")
        stored = self.to_dict()
        found = {k: stored[k] for k in keys}
        return found if self.subject_share is None else {**found, "subject_share": self.subject_share}

    # -- JSON, written and read here only ------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON object stored in the model file (``extra`` merged in at the top level)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out["landmarks"], out["classes"] = list(self.landmarks), list(self.classes)
        out["flip_pairs"] = [list(p) for p in self.flip_pairs]
        out["size"] = None if self.size is None else list(self.size)
        return {**dict(self.extra), **out}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "model file") -> CheckpointMeta:
        """Read the stored JSON object; refuses another ``format_version`` and a missing ``task``."""
        found = data.get("format_version")
        if found != FORMAT_VERSION:
            raise CheckpointError(f"{where}: format_version {found!r}; this cnnkit reads format_version "
                                  f"{FORMAT_VERSION}. Load it with the cnnkit version that wrote it, or retrain.")
        if data.get("task") not in ("landmarks", "classes"):
            raise CheckpointError(f"{where}: metadata 'task' must be 'landmarks' or 'classes'; found {data.get('task')!r}")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        size = values.get("size")
        return cls(**{**values, "landmarks": tuple(values.get("landmarks") or ()),
                      "classes": tuple(values.get("classes") or ()),
                      "flip_pairs": tuple((str(a), str(b)) for a, b in values.get("flip_pairs") or ()),
                      "normalisation": dict(values.get("normalisation") or {}),
                      "size": None if size is None else (int(size[0]), int(size[1]))},
                   extra=MappingProxyType({k: v for k, v in data.items() if k not in known}))

    # -- a read-only mapping over the stored keys ----------------------------
    def __getitem__(self, key: str) -> Any:
        stored = self.to_dict()
        if key not in stored:
            raise KeyError(key)
        return stored[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())
