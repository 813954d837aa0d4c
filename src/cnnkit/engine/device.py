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


#: Training on a device whose bf16 is native runs under bf16 autocast by default. Measured on the
#: 2-core CPU with AVX512-BF16 (bench/perf/step_candidates.py, bench/perf/time_to_accuracy.py;
#: docs/PERFORMANCE.md): a ResNet-18 step at 1.7x the fp32 one, the validation error at the same
#: step within the seed spread. Without native bf16 (older CPUs emulate it, slower than fp32)
#: training stays fp32. Channels-last is on by default for fp32 training only (1.1x on the CPU):
#: bf16 autocast with channels-last was faster still (1.9x) but crashed the process (a segfault in
#: backward, torch 2.13 CPU) in 4 of 5 short runs of a small spec at 48x36, so it stays an option.
#: Validation and prediction always run fp32, so the figure a run prints is the one ``predict`` delivers.
CHANNELS_LAST_TRAINING = frozenset({"cpu", "cuda"})


def native_bf16(device: torch.device) -> str | None:
    """What computes bf16 natively on ``device`` (for the log), or None where it would be emulated."""
    if device.type == "cuda":
        return "a CUDA GPU with bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else None
    if device.type == "cpu":
        cpu = torch.cpu
        if getattr(cpu, "_is_amx_tile_supported", lambda: False)():
            return "a CPU with AMX"
        if getattr(cpu, "_is_avx512_bf16_supported", lambda: False)():
            return "a CPU with AVX512-BF16"
    return None


def training_arithmetic(device: torch.device, precision: str, channels_last: bool | None) -> tuple[str, bool, str | None]:
    """(precision, channels_last, the log line of what 'auto' chose or None) for training on ``device``:
    ``precision: auto`` -> bf16 where ``native_bf16``, else fp32; ``channels_last: None`` -> on for
    fp32 training on ``CHANNELS_LAST_TRAINING`` devices. Settings given are kept as given."""
    auto_precision, auto_layout = precision == "auto", channels_last is None
    why = native_bf16(device) if auto_precision else None
    if auto_precision:
        precision = "bf16" if why else "fp32"
    if auto_layout:
        channels_last = device.type in CHANNELS_LAST_TRAINING and precision == "fp32"
    if not (auto_precision or auto_layout):
        return precision, bool(channels_last), None
    said = []
    if auto_precision:
        said.append(f"precision: auto -> {precision} ({f'bf16 autocast: {why}' if why else 'no native bf16 here'}; "
                    "validation and predict run fp32)")
    if auto_layout:
        said.append(f"channels_last: auto -> {'on' if channels_last else 'off'}")
    return precision, bool(channels_last), (f"train.{'; train.'.join(said)} on {device.type} "
                                           "(measured, docs/PERFORMANCE.md; set either to override)")


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """bf16 autocast when asked for; a no-op for fp32."""
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield
