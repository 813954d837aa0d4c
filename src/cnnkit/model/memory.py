"""Will it fit? The memory a model needs for a training batch or for one image, known before it is built.

The network is built on PyTorch's ``meta`` device (shapes, no storage) and run once on a meta
input there: every layer's output is counted and nothing is allocated, so an input size of
100000x100000 costs milliseconds to refuse instead of tens of gigabytes to discover.

The rule (docs/training.md, "Memory"):

- training: ``4 x the weights`` (weights, gradients and Adam's two moments) plus, for each image of
  the batch, its input as float and the outputs of every layer (autograd keeps them for the backward
  pass), times ``ACTIVATION_FACTOR``;
- one prediction: the weights, the image as float, and the largest layer output twice (a layer's
  input and output are alive together).

Measured peaks (resident memory of a real Adam step on this CPU) were 0.91-1.49 x the batch term
for ResNet-18 and ResNet-50 from 160x120 to 640x480 at batches 8-16, so the estimate with a factor
of 1 is a floor, not a ceiling: a refused run could never have fitted, a run that passes may still
need up to half as much again.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnkit.errors import CnnkitError, ConfigError

#: Bytes of memory per byte of layer outputs in a training step, beyond the outputs themselves.
ACTIVATION_FACTOR = 1.0
#: Weights, gradients and Adam's two moments.
TRAINING_COPIES_OF_WEIGHTS = 4
FLOAT_BYTES = 4


@dataclass(frozen=True)
class Footprint:
    """What one image costs a network, measured on the meta device."""

    weight_bytes: int
    input_bytes: int  # one image as float
    output_bytes: int  # every layer's output for one image, summed
    largest_output_bytes: int

    def training(self, batch: int, *, half: bool = False) -> int:
        """Bytes one training step at ``batch`` images needs (see the module's rule); ``half``: the layer
        outputs are 16-bit (bf16/fp16 autocast), half the float32 count."""
        per_image = self.input_bytes + self.output_bytes * ACTIVATION_FACTOR * (0.5 if half else 1.0)
        return int(TRAINING_COPIES_OF_WEIGHTS * self.weight_bytes + batch * per_image)

    def inference(self) -> int:
        """Bytes one prediction needs: weights, the input, and a layer's input and output together."""
        return self.weight_bytes + self.input_bytes + 2 * self.largest_output_bytes


def on_meta(build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` with every tensor it makes on the meta device (no memory is allocated)."""
    with torch.device("meta"):
        return build()


def footprint(model: nn.Module, size: tuple[int, int], channels: int) -> Footprint:
    """Run ``model`` (on the meta device) on one ``size`` = (width, height) image; count what it holds."""
    outputs: list[int] = []

    def count(module: nn.Module, inputs: object, out: object) -> None:
        if isinstance(out, torch.Tensor):
            outputs.append(out.numel() * out.element_size())

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    hooks = [m.register_forward_hook(count) for m in leaves]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()  # one image through BatchNorm in training mode is an error; the shapes are the same
            model(torch.zeros(1, channels, size[1], size[0], device="meta"))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    weights = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    return Footprint(weight_bytes=weights, input_bytes=channels * size[0] * size[1] * FLOAT_BYTES,
                     output_bytes=sum(outputs), largest_output_bytes=max(outputs, default=0))


def available_bytes(device: torch.device | str = "cpu") -> int | None:
    """Memory free for this process on ``device``: a CUDA device's free memory; else the system's
    available memory (/proc/meminfo's MemAvailable, or free pages), capped by a cgroup limit. None
    where it cannot be known."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    system = _meminfo_available()
    if system is None:
        system = _sysconf_available()
    known = [n for n in (system, _cgroup_left()) if n is not None]
    return min(known) if known else None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _sysconf_available() -> int | None:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_left() -> int | None:
    """A container's memory limit less what it uses (cgroup v2), where one is set."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
    except OSError:
        return None
    return None if limit == "max" or not limit.isdigit() else max(0, int(limit) - int(used))


def check_fits(need: int, available: int | None, what: str, advice: str,
               error: type[CnnkitError] = ConfigError) -> None:
    """Raise ``error`` when ``need`` bytes exceed ``available`` (unknown: nothing to check)."""
    if available is not None and need > available:
        raise error(f"{what} needs about {gib(need)} of memory (estimated before building it: "
                          f"docs/training.md, 'Memory') and {gib(available)} is available. {advice}")


def gib(n: float) -> str:
    """Bytes in words: '3.2 GB', '640 MB'."""
    return f"{n / 1e9:,.1f} GB" if n >= 1e9 else f"{n / 1e6:,.0f} MB"
