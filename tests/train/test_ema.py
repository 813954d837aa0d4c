"""The weight average (train.ema): its arithmetic and state. fit() with it: tests/train/test_fit.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnkit.config import TrainConfig
from cnnkit.errors import ConfigError
from cnnkit.train.ema import WeightAverage


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))


def test_average_follows_the_ramped_decay_and_copies_integer_buffers() -> None:
    net = _net()
    avg = WeightAverage(net, decay=0.9)
    start = net[0].weight.detach().clone()
    expected = start.clone()
    for t in range(1, 6):
        with torch.no_grad():
            net[0].weight.add_(1.0)
            net[1].running_mean.add_(2.0)
            net[1].num_batches_tracked.add_(1)
        d = min(0.9, (1 + t) / (10 + t))
        avg.update(net)
        expected = d * expected + (1 - d) * net[0].weight.detach()
    torch.testing.assert_close(avg.module[0].weight, expected)
    assert not torch.allclose(avg.module[0].weight, net[0].weight)  # lags behind the raw weights
    assert avg.module[1].num_batches_tracked.item() == 5  # copied, not averaged
    assert 0 < avg.module[1].running_mean.mean().item() < 10  # averaged like a weight
    assert not any(p.requires_grad for p in avg.module.parameters())


def test_state_round_trip_continues_identically() -> None:
    net = _net()
    a = WeightAverage(net, decay=0.99)
    for _ in range(3):
        a.update(net)
    b = WeightAverage(_net(), decay=0.99)
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        net[0].weight.mul_(3.0)
    a.update(net), b.update(net)
    assert b.updates == 4
    torch.testing.assert_close(a.module[0].weight, b.module[0].weight, rtol=0, atol=0)


@pytest.mark.parametrize("decay", [-0.1, 1.0, 1.5])
def test_out_of_range_decay_is_refused(decay) -> None:
    with pytest.raises(ConfigError, match="ema must be in"):
        TrainConfig(ema=decay)
