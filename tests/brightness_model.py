"""A model whose answer is known: one landmark at (mean red level, mean green level) of the frame.

Every index frame (conftest ``index_video``) differs in its red texture, so a row that holds a
neighbour's frame, or a frame predicted twice or not at all, shows in the points.
"""

from __future__ import annotations

from pathlib import Path

import torch

from cnnkit.io.checkpoint import save_model
from cnnkit.model.builder import build_model


def colour_model(fc_weight: torch.Tensor, fc_bias: float = 0.0) -> torch.nn.Module:
    """48x32 input; its two outputs are ``fc_weight`` (2x3) times the frame's mean (red, green, blue)
    plus ``fc_bias``: an identity 1x1 conv, global average pooling, then the given linear layer."""
    model = build_model([["conv", {"filter_size": 1, "layer_depth": 3}]], size=(48, 32), channels=3,
                        outputs=2, head="gap")
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        conv.bias.zero_()
        model.head_net.fc.weight.copy_(fc_weight)
        model.head_net.fc.bias.fill_(fc_bias)
    return model


def brightness_model(path: Path, bias: float = 0.0) -> Path:
    """Saved at ``path``: x = mean red, y = mean green (fractions of the 48x32 input), plus ``bias``."""
    model = colour_model(torch.eye(3)[:2], bias)
    meta = {"task": "landmarks", "landmarks": ["p"], "classes": [], "size": [48, 32], "channels": 3,
            "normalisation": {"mean": [0.0] * 3, "std": [1.0] * 3}, "grayscale": False, "letterbox": False,
            "flip_pairs": []}
    return save_model(path, model, meta)
