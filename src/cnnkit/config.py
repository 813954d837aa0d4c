"""Frozen, validated settings for data and training, built once at the API/CLI boundary.

``from_mapping`` rejects unknown keys with a suggestion, so a typo in an experiment file or a
keyword argument never silently falls back to a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

from cnnkit.errors import ConfigError, did_you_mean

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


@dataclass(frozen=True)
class DataConfig:
    """How images become tensors. ``size`` is (width, height) as users write image sizes."""

    size: tuple[int, int] = (64, 64)
    grayscale: bool = False
    letterbox: bool = False
    cache: str | None = None
    workers: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", _parse_size(self.size, "size"))
        _check(int(self.workers) >= 0, f"workers must be >= 0. Received: workers={self.workers}")

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
        _check(int(self.epochs) >= 1, f"epochs must be >= 1. Received: epochs={self.epochs}")
        _check(int(self.batch_size) >= 1, f"batch_size must be >= 1. Received: batch_size={self.batch_size}")
        _check(float(self.lr) > 0, f"lr must be > 0. Received: lr={self.lr}")
        _check(float(self.weight_decay) >= 0, f"weight_decay must be >= 0. Received: {self.weight_decay}")
        _check(0 <= float(self.label_smoothing) < 1, f"label_smoothing must be in [0, 1). Received: {self.label_smoothing}")
        _check(0 <= float(self.ema) < 1, f"ema must be in [0, 1) (0 = off; e.g. 0.99). Received: ema={self.ema}")
        _check(int(self.warmup_epochs) >= 0, f"warmup_epochs must be >= 0. Received: {self.warmup_epochs}")
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
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    prefix = f"{where}: " if where else ""
    for key in data:
        if key not in names:
            raise ConfigError(f"{prefix}unknown {cls.__name__} key {key!r}.{did_you_mean(key, names)} "
                              f"Allowed: {', '.join(names)}.")
    try:
        return cls(**dict(data))
    except TypeError as exc:
        raise ConfigError(f"{prefix}{exc}") from None


def split_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Sort keyword options into (DataConfig keys, TrainConfig keys, the rest)."""
    data_keys = {f.name for f in fields(DataConfig)}
    train_keys = {f.name for f in fields(TrainConfig)}
    data = {k: v for k, v in options.items() if k in data_keys}
    train = {k: v for k, v in options.items() if k in train_keys}
    rest = {k: v for k, v in options.items() if k not in data_keys | train_keys}
    return data, train, rest
