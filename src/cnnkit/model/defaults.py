"""The one rule for what a model gets when the user does not say: head, loss and start.

Every build path asks here — a preset name, the identical list saved by ``cnnkit spec``, a
YAML/JSON file, an experiment file, ``summary`` and the compat layer — so one list can never
become two models. A spec "is a preset" when it is a preset name or equals a preset's list.

- Head: landmarks on a preset backbone get the heatmap head (the measured best,
  docs/ACCURACY.md); classes on a preset get global average pooling ('gap', as torchvision);
  a user's own list keeps the seed's automatic ``fc`` on the flattened features ('flatten').
- Loss: L1 for the heatmap head (lowest error on lips-via's `extra` split), MSE (the seed's)
  for direct landmark heads, cross-entropy for classes.
- Start: a direct landmark head starts at the image centre (``start_at_centre``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnkit.spec.parse import PRESET_NAMES, load_spec, preset_name_of

TASKS = ("landmarks", "classes")


def preset_of(spec: str | Path | Sequence[Any]) -> str | None:
    """The preset a spec is (by name, or by an identical list / file), else None."""
    if isinstance(spec, str) and spec in PRESET_NAMES:
        return spec
    return preset_name_of(load_spec(spec))


def default_head(spec: str | Path | Sequence[Any], task: str | None = None) -> str:
    """'heatmap' for landmarks on a preset, 'gap' for any other preset use, 'flatten' for own lists.

    Example:
        >>> default_head('resnet18', 'landmarks'), default_head('resnet18', 'classes')
        ('heatmap', 'gap')
        >>> default_head([['conv', {'filter_size': 3, 'layer_depth': 8}]], 'landmarks')
        'flatten'
    """
    if preset_of(spec) is None:
        return "flatten"
    return "heatmap" if task == "landmarks" else "gap"


def default_loss(task: str, head: str | None) -> str:
    """The loss name ``make_loss`` gets when the user names none.

    Example:
        >>> default_loss('landmarks', 'heatmap'), default_loss('landmarks', 'gap'), default_loss('classes', 'gap')
        ('l1', 'mse', 'cross_entropy')
    """
    if task == "classes":
        return "cross_entropy"
    return "l1" if head == "heatmap" else "mse"


def prepare_for_task(net: nn.Module, task: str) -> None:
    """The initial state every fresh model of ``task`` gets (after any pretrained weights)."""
    if task == "landmarks":
        start_at_centre(net)


def start_at_centre(net: nn.Module) -> None:
    """Make a fresh direct head predict (about) the image centre for every landmark.

    Targets are normalised to [0, 1], so an output layer with zero bias and default-scale weights
    starts far off (errors of hundreds of pixels in the first epoch) and spends epochs just moving
    towards the middle. A 0.5 bias and 10x smaller weights start training near the mean-shape
    baseline instead. The heatmap head already starts at the centre (see model/heads.py).
    """
    head = getattr(net, "head_net", None)
    fc = getattr(head, "fc", None)
    if isinstance(fc, nn.Linear):
        with torch.no_grad():
            fc.weight.mul_(0.1)
            fc.bias.fill_(0.5)
