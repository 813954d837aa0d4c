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


#: Devices whose inference runs the network in channels-last memory format by default. Measured on
#: the 2-core CPU (bench/perf/inference_cpu.py, docs/PERFORMANCE.md "Inference on the CPU"): 1.2-1.3x
#: (ResNet-18) and 1.3-2.0x (EfficientNet-Lite0) the frames/s of the default layout at 115x87 to
#: 459x349, predictions within 1e-4 px of it. bf16 autocast, faster still, moved points by up to
#: 0.11 px (ResNet-18) and 1.8 px (Lite0) and stays an option. GPUs keep the default layout: not
#: measured (no GPU was lent to the round that decided this).
CHANNELS_LAST_INFERENCE = frozenset({"cpu"})
_said: set[str] = set()


def inference_channels_last(device: torch.device, asked: bool | None = None) -> bool:
    """Whether inference on ``device`` runs channels-last: ``asked`` when given, else the measured default
    (``CHANNELS_LAST_INFERENCE``), said once per process with its reason."""
    if asked is not None:
        return asked
    chosen = device.type in CHANNELS_LAST_INFERENCE
    if chosen and device.type not in _said:
        _said.add(device.type)
        log.info(f"inference on {device.type}: channels-last memory format (measured faster on this device type, "
                  "predictions within 1e-4 px; docs/PERFORMANCE.md)")
    return chosen


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """bf16 autocast when asked for; a no-op for fp32."""
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield
