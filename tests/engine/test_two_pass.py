"""TwoPass.score's validation loss: measured only where a true point falls in a pass-2 view."""

from __future__ import annotations

import math

import numpy as np
import torch

from cnnkit.config import CropConfig
from cnnkit.data.decode import Geometry
from cnnkit.engine.scored import Outputs
from cnnkit.engine.step import StepSetup
from cnnkit.engine.two_pass import TwoPass


def _centre(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A stand-in network: one landmark, always at the view's centre."""
    b = images.shape[0]
    return torch.full((b, 1, 2), 0.5), torch.ones(b, 1)


def _batch(points: list[list[float]]) -> dict:
    frames = [np.zeros((200, 200, 3), dtype=np.uint8) for _ in points]
    geos = [Geometry(scale=(1.0, 1.0), offset=(0.0, 0.0), orig_size=(200, 200)) for _ in points]
    return {"frame": frames, "geometry": geos, "points": [np.array([p], dtype=np.float64) for p in points],
            "index": list(range(len(points)))}


def test_a_batch_with_no_true_point_in_its_views_adds_no_loss_and_a_run_of_them_has_none() -> None:
    setup = StepSetup(task="landmarks", size=(32, 32), mean=(0.5,) * 3, std=(0.25,) * 3, device=torch.device("cpu"))
    strategy = TwoPass(_centre, setup, CropConfig(size=(32, 32)))
    l1 = lambda pred, target: torch.nanmean((pred - target).abs())  # noqa: E731
    far = strategy.score(_batch([[5.0, 5.0], [195.0, 195.0]]), l1)  # both far outside the centre's view
    assert far.loss_rows == 0 and far.loss_sum == 0.0
    assert math.isnan(Outputs.join([far]).loss)  # not a loss of 0
    near = strategy.score(_batch([[104.0, 100.0]]), l1)  # 4 px right of the centre: inside the view
    assert near.loss_rows == 1 and near.loss_sum > 0
    assert Outputs.join([far, near]).loss == near.loss_sum  # the batch without a point does not dilute it
    np.testing.assert_allclose(near.pred[0, 0], [100.0, 100.0], atol=1.0)  # the frame's centre, original px
