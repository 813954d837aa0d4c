"""Frozen, validated settings for data and training, built once at the API/CLI boundary.

``from_mapping`` rejects unknown keys with a suggestion, so a typo in an experiment file or a
keyword argument never silently falls back to a default.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, TypeVar

from cnnkit.errors import ConfigError, check_keys, did_you_mean

T = TypeVar("T")

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "cosine", "onecycle")
#: Earlier names of a schedule, read as the schedule they always were (warmup is ``warmup_epochs``, for every schedule).
SCHEDULE_ALIASES = {"warmup_cosine": "cosine"}
#: ``auto``: bf16 autocast where the device computes bf16 natively, else fp32 (cnnkit.engine.device.training_arithmetic)
PRECISIONS = ("auto", "fp32", "bf16")


# The training-length rule (docs/training.md, "How long"): at least DEFAULT_MIN_STEPS optimizer steps,
# so a set of 50 images gets as much optimisation as one of 500, and at least DEFAULT_MIN_EPOCHS passes
# over large sets. On a 93-frame set 360 steps ended at 8.85 px and 1,400 steps at 3.14 px.
DEFAULT_MIN_STEPS = 2000
DEFAULT_MIN_EPOCHS = 30
# ``train.batch_size`` when not given (``train.time`` may choose a smaller one: train/budget.py).
DEFAULT_BATCH_SIZE = 16

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(h|min|s)")
_SECONDS = {"h": 3600.0, "min": 60.0, "s": 1.0}


def parse_duration(value: Any, key: str = "train.time") -> float:
    """Seconds from a number of seconds or text such as ``'90s'``, ``'10min'``, ``'1.5h'``, ``'1h30min'``.

    Example:
        >>> parse_duration("1h30min"), parse_duration("90s"), parse_duration(45)
        (5400.0, 90.0, 45.0)
    """
    seconds = None
    if _is_real(value):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        parts = _DURATION_PART.findall(text)
        if parts and "".join(_DURATION_PART.sub("", text).split()) == "":
            seconds = sum(float(n) * _SECONDS[unit] for n, unit in parts)
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{key}: expected a duration such as '90s', '10min', '1.5h' or '1h30min' (or a number of "
                          f"seconds), above zero. Received: {value!r}")
    return seconds


def _parse_size(value: Any, key: str) -> tuple[int, int]:
    """``(w, h)``, ``[w, h]`` or ``'WxH'`` -> (w, h)."""
    if isinstance(value, str) and "x" in value.lower():
        parts = value.lower().split("x")
        value = parts if len(parts) == 2 else value
    try:
        w, h = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected a size as (width, height) or 'WxH'. Received: {value!r}") from None
    if w < 1 or h < 1:
        raise ConfigError(f"{key}: width and height must be >= 1. Received: {value!r}")
    return w, h


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


# Checks per field annotation. A float field takes an int (``lr: 1``) and stores it as a float.
_TYPE_CHECKS: dict[str, Any] = {"int": _is_int, "float": _is_real, "bool": lambda v: isinstance(v, bool),
                                "str": lambda v: isinstance(v, str)}


def _check_types(config: Any) -> None:
    """Every field against its annotation: ``epochs="3"`` or ``batch_size=2.7`` fail here, where the
    value is made, instead of deep inside training (string repetition in the scheduler, say)."""
    section = getattr(config, "SECTION", type(config).__name__)
    for f in fields(config):
        kind, value = str(f.type), getattr(config, f.name)
        optional = kind.endswith(" | None")
        check = _TYPE_CHECKS.get(kind.removesuffix(" | None"))
        if check is None or (optional and value is None):
            continue
        if not check(value):
            expected = f"{kind.removesuffix(' | None')} or null" if optional else kind
            raise ConfigError(f"{section}.{f.name}: expected {expected}. Received: {value!r} ({type(value).__name__})")
        if kind.startswith(("int", "float")):  # numpy numbers -> plain python ones, ints -> floats
            object.__setattr__(config, f.name, int(value) if kind.startswith("int") else float(value))


@dataclass(frozen=True)
class CropConfig:
    """Crop training (docs/resolution.md): the network sees views of the frame, not the whole frame shrunk.

    A view is a window of the original frame scaled isotropically by ``s`` and placed at an
    offset, so ``view_px = original_px * s + offset`` (the geometry of every dataset item).

    Attributes:
        size: (width, height) of a view = the network input.
        scale: view pixels per original pixel of the fine (subject) view; 1.0 = native.
        whole: share of training views that are the whole frame fitted into ``size`` (padded);
            they teach the coarse pass of two-pass inference.
        background: share of training views that are random windows at ``scale`` anywhere.
        jitter: random shift of the subject view's centre, as a fraction of the view.
        margin: context added around the points' bounding box, as a fraction of its size.
        map_loss: weight of the per-cell loss on the heatmap head's logit maps (sigmoid cross-entropy
            against a blob at each point inside the view, zero elsewhere; 0 turns it off). The
            integral loss alone only ranks cells WITHIN a view; finding the subject in a whole frame
            needs logits that mean "a point is here" in every view (docs/resolution.md).
    """

    SECTION: ClassVar[str] = "data.crop"

    size: tuple[int, int] = (160, 160)  # about the pixels of the whole-frame default (160x120): the same cost per step
    scale: float = 1.0
    whole: float = 0.25
    background: float = 0.1
    jitter: float = 0.25
    margin: float = 0.25
    map_loss: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", _parse_size(self.size, "data.crop.size"))
        _check_types(self)
        _check(0 < self.scale <= 8, f"data.crop.scale must be in (0, 8]. Received: scale={self.scale}")
        for key in ("whole", "background"):
            _check(0 <= getattr(self, key) <= 1, f"data.crop.{key} must be in [0, 1]. Received: {getattr(self, key)}")
        _check(self.whole + self.background <= 1,
               f"data.crop.whole + data.crop.background must be <= 1. Received: {self.whole} + {self.background}")
        _check(0 <= self.jitter <= 1, f"data.crop.jitter must be in [0, 1]. Received: jitter={self.jitter}")
        _check(0 <= self.margin <= 4, f"data.crop.margin must be in [0, 4]. Received: margin={self.margin}")
        _check(0 <= self.map_loss <= 100, f"data.crop.map_loss must be in [0, 100]. Received: map_loss={self.map_loss}")

    @classmethod
    def parse(cls, value: Any) -> CropConfig | None:
        """None, a ``CropConfig``, ``'160x160'`` / ``(160, 160)`` (the size, other fields default), ``True``
        (every field at its default) or a mapping."""
        if value is None or isinstance(value, CropConfig):
            return value
        if isinstance(value, bool):  # `crop: true` = every default; `crop: false` = off
            return cls() if value else None
        if isinstance(value, Mapping):
            return from_mapping(cls, value)
        if isinstance(value, (str, tuple, list)):
            return cls(size=_parse_size(value, "data.crop"))
        raise ConfigError(f"data.crop: expected 'auto', null/false, true, a size such as '160x160' or a mapping with keys "
                          f"{', '.join(f.name for f in fields(cls))}. Received: {value!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = list(self.size)
        return d


@dataclass(frozen=True)
class DataConfig:
    """How images become tensors. ``size`` is (width, height) as users write image sizes."""

    SECTION: ClassVar[str] = "data"  # its section in an experiment file, named in messages

    size: tuple[int, int] | None = None  # None (or 'auto'): chosen from the training images at fit time
    grayscale: bool = False
    letterbox: bool = False
    # 'auto': 'memory' (each image decoded once, kept in memory up to a budget; cnnkit.data.memo) without
    # loader workers, none with them; a folder: the on-disk decoded cache; None: decode every epoch
    cache: str | None = "auto"
    workers: int = 0
    # crop training (docs/resolution.md): 'auto' (fit decides from the table: on for small subjects in
    # large frames, data/sizing.auto_crop), None/false: the whole frame resized, true/'WxH'/mapping: on
    crop: CropConfig | str | None = "auto"

    def __post_init__(self) -> None:
        if self.size is not None and self.size != "auto":
            object.__setattr__(self, "size", _parse_size(self.size, "size"))
        else:
            object.__setattr__(self, "size", None)
        crop = self.crop if isinstance(self.crop, str) and self.crop == "auto" else CropConfig.parse(self.crop)
        object.__setattr__(self, "crop", crop)
        if isinstance(crop, CropConfig):  # the network input is the view
            _check(self.size is None or self.size == crop.size,
                   f"data.size {self.size} conflicts with data.crop.size {crop.size}: with crop training the "
                   f"network input is the crop. Leave data.size unset (auto) or equal to data.crop.size.")
            _check(not self.letterbox, "data.letterbox does not apply with data.crop (views are padded as needed); "
                   "remove one of them")
            object.__setattr__(self, "size", crop.size)
        _check_types(self)
        _check(self.workers >= 0, f"workers must be >= 0. Received: workers={self.workers}")

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3

    @property
    def crop_settings(self) -> CropConfig | None:
        """``crop`` once resolved: fit turns 'auto' into settings or None from the training table."""
        if isinstance(self.crop, str):
            raise ConfigError("data.crop is still 'auto': fit resolves it from the training table "
                              "(cnnkit.data.sizing.auto_crop) before anything reads it")
        return self.crop

    @property
    def frame(self) -> tuple[int, int]:
        """The (width, height) of the network input; only once ``size`` is set (fit sets 'auto')."""
        if self.size is None:
            raise ConfigError("data.size is 'auto' and has not been chosen yet (fit chooses it from the images)")
        return self.size

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = None if self.size is None else list(self.size)
        d["crop"] = self.crop.to_dict() if isinstance(self.crop, CropConfig) else self.crop
        return d


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings.

    Training length: ``epochs`` (full passes over the training table, the seed's ``iters``), or
    ``steps`` (optimizer steps in all, rounded up to whole epochs), or ``time`` (a wall-time budget
    such as ``'10min'``: the run measures its speed and plans the steps that fit, train/budget.py),
    or none: then the default rule, at least ``DEFAULT_MIN_STEPS`` steps and ``DEFAULT_MIN_EPOCHS``
    epochs (``epochs_for``).
    """

    SECTION: ClassVar[str] = "train"

    epochs: int | None = None
    steps: int | None = None
    time: str | float | None = None
    batch_size: int | None = None  # None: DEFAULT_BATCH_SIZE, or the short-budget batch under a short ``time``
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"  # no schedule swung between the last epochs on small sets (docs/ACCURACY.md)
    warmup_epochs: int = 0
    loss: str | None = None
    label_smoothing: float = 0.0
    backbone_lr: float | None = None
    freeze_backbone: bool = False
    # BatchNorm of the backbone in eval mode (running statistics kept, scale/shift still trained).
    # None: on when training from pretrained weights (hymenoptera, Lite0: 0.93 val vs <= 0.80 with
    # the statistics re-estimated from batches of 16; docs/ACCURACY.md), off from scratch.
    freeze_bn: bool | None = None
    device: str = "auto"
    precision: str = "auto"  # resolved per device when the run starts (engine/device.training_arithmetic)
    channels_last: bool | None = None  # None: the device's measured default (the same place)
    compile: bool = False
    sync_bn: bool = False  # under DDP: BatchNorm statistics over the global batch (CUDA only)
    ema: float = 0.0  # > 0: validate and save a moving average of the weights with this decay
    seed: int = 0
    select: str = "auto"
    quiet: bool = False
    plots: bool = True
    checkpoint_every: int | str = 1  # commit the resume state every N epochs, or every 'Mmin' minutes
    log: str = "none"  # 'tensorboard': also write <run>/tensorboard/ events (train/tensorboard.py); the CSV always
    # > 1: train this many models (seeds seed, seed + 1, ...) into one folder: an ensemble (train/ensemble.py)
    ensemble: int = 1

    def __post_init__(self) -> None:
        _check_types(self)
        _check(self.epochs is None or self.epochs >= 1, f"epochs must be >= 1. Received: epochs={self.epochs}")
        _check(self.steps is None or self.steps >= 1, f"steps must be >= 1. Received: steps={self.steps}")
        given = {k: v for k, v in (("epochs", self.epochs), ("steps", self.steps), ("time", self.time)) if v is not None}
        _check(len(given) <= 1, "give one of epochs, steps or time (the training length), not "
               f"{' and '.join(given)}. Received: {', '.join(f'{k}={v!r}' for k, v in given.items())}")
        if self.time is not None:
            parse_duration(self.time)
        _check(self.batch_size is None or self.batch_size >= 1,
               f"batch_size must be >= 1. Received: batch_size={self.batch_size}")
        _check(self.lr > 0, f"lr must be > 0. Received: lr={self.lr}")
        _check(self.weight_decay >= 0, f"weight_decay must be >= 0. Received: {self.weight_decay}")
        _check(0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1). Received: {self.label_smoothing}")
        _check(0 <= self.ema < 1, f"ema must be in [0, 1) (0 = off; e.g. 0.99). Received: ema={self.ema}")
        every = self.checkpoint_every
        _check(isinstance(every, int) and not isinstance(every, bool) and every >= 1
               or isinstance(every, str) and re.fullmatch(r"\d+(\.\d+)?min", every) is not None,
               f"checkpoint_every: expected epochs (an integer >= 1) or minutes such as '10min'. Received: {every!r}")
        _check(self.warmup_epochs >= 0, f"warmup_epochs must be >= 0. Received: {self.warmup_epochs}")
        _check(self.ensemble >= 1, f"ensemble must be >= 1 (the number of models). Received: ensemble={self.ensemble}")
        _check(self.select in ("auto", "last") or self.select.startswith(("val_", "train_")),
               f"select: expected 'auto', 'last' or a recorded metric such as 'val_nme'. Received: {self.select!r}")
        if self.schedule in SCHEDULE_ALIASES:  # frozen: the one place a value is rewritten, as it is made
            object.__setattr__(self, "schedule", SCHEDULE_ALIASES[self.schedule])
        for key, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("precision", PRECISIONS),
                             ("log", ("none", "tensorboard"))):
            value = getattr(self, key)
            _check(value in allowed, f"{key}: unknown value {value!r}.{did_you_mean(value, allowed)} "
                   f"Allowed: {', '.join(allowed)}.")

    def epochs_for(self, steps_per_epoch: int) -> int:
        """How many epochs this run trains, with ``steps_per_epoch`` optimizer steps each.

        Example:
            >>> TrainConfig().epochs_for(13), TrainConfig().epochs_for(1000), TrainConfig(steps=100).epochs_for(13)
            (154, 30, 8)
        """
        if self.time is not None:
            raise ConfigError("train.time: the length is planned from the measured speed (cnnkit.train.budget), "
                              "not by this rule")
        if self.epochs is not None:
            return self.epochs
        per_epoch = max(1, steps_per_epoch)
        if self.steps is not None:
            return math.ceil(self.steps / per_epoch)
        return max(DEFAULT_MIN_EPOCHS, math.ceil(DEFAULT_MIN_STEPS / per_epoch))

    @property
    def resolved_batch_size(self) -> int:
        """``batch_size``, or ``DEFAULT_BATCH_SIZE`` when not given."""
        return DEFAULT_BATCH_SIZE if self.batch_size is None else self.batch_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def from_mapping(cls: type[T], data: Mapping[str, Any], *, where: str = "") -> T:
    """Build a config dataclass from a mapping; unknown keys -> ConfigError with a suggestion."""
    prefix = f"{where}: " if where else ""
    check_keys(data, [f.name for f in fields(cls)], where=where,  # type: ignore[arg-type]
               section=getattr(cls, "SECTION", cls.__name__))
    try:
        return cls(**dict(data))
    except ConfigError as exc:
        raise ConfigError(f"{prefix}{exc}") from None


def split_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Sort keyword options into (DataConfig keys, TrainConfig keys, the rest)."""
    data_keys = {f.name for f in fields(DataConfig)}
    train_keys = {f.name for f in fields(TrainConfig)}
    data = {k: v for k, v in options.items() if k in data_keys}
    train = {k: v for k, v in options.items() if k in train_keys}
    rest = {k: v for k, v in options.items() if k not in data_keys | train_keys}
    return data, train, rest
