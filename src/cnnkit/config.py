"""Frozen, validated settings for data and training, built once at the API/CLI boundary.

``from_mapping`` rejects unknown keys with a suggestion, so a typo in an experiment file or a
keyword argument never silently falls back to a default.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, TypeVar

from cnnkit.errors import ConfigError, check_keys, did_you_mean

T = TypeVar("T")

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "cosine", "onecycle", "warmup_cosine")
PRECISIONS = ("fp32", "bf16")


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
            raise ConfigError(f"{section}.{f.name}: expected {kind}. Received: {value!r} ({type(value).__name__})")
        if kind.startswith(("int", "float")):  # numpy numbers -> plain python ones, ints -> floats
            object.__setattr__(config, f.name, int(value) if kind.startswith("int") else float(value))


@dataclass(frozen=True)
class DataConfig:
    """How images become tensors. ``size`` is (width, height) as users write image sizes."""

    SECTION: ClassVar[str] = "data"  # its section in an experiment file, named in messages

    size: tuple[int, int] = (64, 64)
    grayscale: bool = False
    letterbox: bool = False
    cache: str | None = None
    workers: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", _parse_size(self.size, "size"))
        _check_types(self)
        _check(self.workers >= 0, f"workers must be >= 0. Received: workers={self.workers}")

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = list(self.size)
        return d


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. ``epochs`` are full passes over the training table (the seed's ``iters``)."""

    SECTION: ClassVar[str] = "train"

    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "none"
    warmup_epochs: int = 0
    loss: str | None = None
    label_smoothing: float = 0.0
    backbone_lr: float | None = None
    freeze_backbone: bool = False
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False  # under DDP: BatchNorm statistics over the global batch (CUDA only)
    ema: float = 0.0  # > 0: validate and save a moving average of the weights with this decay
    seed: int = 0
    select: str = "auto"
    quiet: bool = False
    plots: bool = True

    def __post_init__(self) -> None:
        _check_types(self)
        _check(self.epochs >= 1, f"epochs must be >= 1. Received: epochs={self.epochs}")
        _check(self.batch_size >= 1, f"batch_size must be >= 1. Received: batch_size={self.batch_size}")
        _check(self.lr > 0, f"lr must be > 0. Received: lr={self.lr}")
        _check(self.weight_decay >= 0, f"weight_decay must be >= 0. Received: {self.weight_decay}")
        _check(0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1). Received: {self.label_smoothing}")
        _check(0 <= self.ema < 1, f"ema must be in [0, 1) (0 = off; e.g. 0.99). Received: ema={self.ema}")
        _check(self.warmup_epochs >= 0, f"warmup_epochs must be >= 0. Received: {self.warmup_epochs}")
        _check(self.select in ("auto", "last") or self.select.startswith(("val_", "train_")),
               f"select: expected 'auto', 'last' or a recorded metric such as 'val_nme'. Received: {self.select!r}")
        for key, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("precision", PRECISIONS)):
            value = getattr(self, key)
            _check(value in allowed, f"{key}: unknown value {value!r}.{did_you_mean(value, allowed)} "
                   f"Allowed: {', '.join(allowed)}.")

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
