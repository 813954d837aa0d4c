"""An exponential moving average of the weights (``train.ema``), the copy that is validated and saved.

Why: with a few hundred images every step moves the weights by a noisy amount; the average
over the last ~1/(1 - decay) steps sits nearer the minimum than any single step does. It
costs one extra copy of the weights and one in-place lerp per step.

The decay ramps up as ``min(decay, (1 + t) / (10 + t))`` over the first updates, so the
average is not dominated by the random initial weights in short runs. BatchNorm running
statistics are averaged like the weights; integer buffers (``num_batches_tracked``) are copied.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class WeightAverage:
    """``module`` holds the averaged weights; call ``update(model)`` after each optimizer step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1). Received: {decay!r}")
        self.decay = float(decay)
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        weight = 1.0 - self.current_decay()
        for avg, new in zip(self.module.state_dict().values(), model.state_dict().values(), strict=True):
            if avg.is_floating_point():
                avg.lerp_(new.detach(), weight)
            else:
                avg.copy_(new)

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "weights": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        self.module.load_state_dict(state["weights"])
