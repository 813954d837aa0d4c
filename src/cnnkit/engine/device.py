"""Device choice and the precision context, in one place."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch

from cnnkit.errors import ConfigError

log = logging.getLogger("cnnkit")


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks cuda > mps > cpu; anything else is passed to ``torch.device`` after a check."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device: unknown device {name!r}. Use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' was asked for but no CUDA GPU is visible. Use device='auto' or 'cpu'.")
    return device


def describe_device(device: torch.device) -> str:
    """One line for the log: what will run the model."""
    if device.type == "cuda":
        return f"device: {device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"device: cpu ({torch.get_num_threads()} threads)"
    return f"device: {device}"


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """bf16 autocast when asked for; a no-op for fp32."""
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield
