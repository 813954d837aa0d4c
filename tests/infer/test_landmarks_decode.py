"""PointReader's ``decode``: the named decoder places the points; the default is the head's own output."""

from __future__ import annotations

import pytest
import torch

from cnnkit import geometry
from cnnkit.engine.readout import PointReader, heatmap_logits, unmirror_points
from cnnkit.errors import ConfigError
from cnnkit.model.builder import build_model
from cnnkit.model.heads import DECODERS

PYRAMID = [["conv", {"layer_depth": 8, "strides": 2}], ["relu"], ["res_33", {"depths": 8, "stride": 2}]]


def _heatmap_net() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(PYRAMID, size=(32, 24), channels=3, outputs=4, head={"type": "heatmap", "width": 8, "stride": 2})
    with torch.no_grad():
        model.head_net.to_maps.weight.normal_(std=1.0)  # maps that depend on the image
    return model.eval()


@torch.no_grad()
def test_scorer_points_come_from_the_named_decoder() -> None:
    net, images = _heatmap_net(), torch.randn(2, 3, 24, 32)
    maps = heatmap_logits(net, images)
    default, _ = PointReader(net, perm=None, tta_flip=False, size=(32, 24))(images)
    assert torch.allclose(default, geometry.flat_to_points(net(images)), atol=1e-6)  # the head's own output
    for name, decoder in DECODERS.items():
        points, lik = PointReader(net, perm=None, tta_flip=False, size=(32, 24), decode=name)(images)
        assert torch.allclose(points, geometry.flat_to_points(decoder(maps)), atol=1e-6), name
        assert lik.shape == (2, 2)


@torch.no_grad()
def test_flip_averages_the_decoded_points_of_both_passes() -> None:
    net, images = _heatmap_net(), torch.randn(2, 3, 24, 32)
    perm = torch.tensor([1, 0])
    points, _ = PointReader(net, perm=[1, 0], tta_flip=True, size=(32, 24), decode="dark")(images)
    one = geometry.flat_to_points(DECODERS["dark"](heatmap_logits(net, images)))
    mirrored = unmirror_points(geometry.flat_to_points(DECODERS["dark"](heatmap_logits(net, images.flip(-1)))), perm)
    assert torch.allclose(points, (one + mirrored) / 2, atol=1e-6)


def test_unknown_decoder_is_refused_when_the_scorer_is_made() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'local'"):
        PointReader(_heatmap_net(), perm=None, tta_flip=False, size=(32, 24), decode="locall")
