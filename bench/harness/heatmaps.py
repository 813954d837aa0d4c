"""A heatmap model's logit maps over a table, and point errors in original pixels from any decoder.

The network runs once per image (and, with ``mirror``, once on its mirror image); decoders and
likelihoods then read the same maps, so a comparison between them holds everything else fixed
(bench/accuracy/decoding.py, bench/accuracy/lips_likelihood.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

Decoder = Callable[[torch.Tensor], torch.Tensor]


@torch.inference_mode()
def maps_and_truth(predictor: Any, table: Any, batch_size: int = 16, mirror: bool = False) -> dict[str, torch.Tensor]:
    """Logit maps of every row of ``table`` (and of its mirror image), true points (input px), scale and offset."""
    from cnnkit.data.loader import make_loader
    from cnnkit.engine.readout import heatmap_logits as _maps
    from cnnkit.engine.tensors import normalise, to_unit_float
    from cnnkit.model.heads import soft_argmax

    net = predictor.net
    loader = make_loader(predictor.dataset(table), batch_size=batch_size, shuffle=False, workers=0)
    keys = ("maps", "mirror", "points", "scale", "offset") if mirror else ("maps", "points", "scale", "offset")
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    for batch in loader:
        images = normalise(to_unit_float(batch["image"]), predictor.setup.mean, predictor.setup.std)
        maps = _maps(net, images)
        if not parts["maps"]:  # the decoders read the maps the head itself averages
            assert torch.allclose(soft_argmax(maps), net(images).float(), atol=1e-5)
        parts["maps"].append(maps)
        if mirror:
            parts["mirror"].append(_maps(net, images.flip(-1)))
        for key in ("points", "scale", "offset"):
            parts[key].append(batch[key])
    return {k: torch.cat(v) for k, v in parts.items()}


def errors_px(data: dict[str, torch.Tensor], decoder: Decoder, size: tuple[int, int],
              perm: torch.Tensor | None = None, flip: bool = False) -> np.ndarray:
    """(N, K) distance in ORIGINAL pixels between decoded and true points (NaN where a point is missing);
    ``flip``: averaged with the mirror maps' points, mirrored back (``perm`` swaps left and right)."""
    from cnnkit import geometry
    from cnnkit.engine.readout import unmirror_points as unmirror

    points = geometry.flat_to_points(decoder(data["maps"]))
    if flip:
        points = (points + unmirror(geometry.flat_to_points(decoder(data["mirror"])), perm)) / 2
    pred = geometry.input_to_original(geometry.norm_to_input(points, size), data["scale"], data["offset"])
    true = geometry.input_to_original(data["points"], data["scale"], data["offset"])
    return (pred - true).norm(dim=-1).numpy()
