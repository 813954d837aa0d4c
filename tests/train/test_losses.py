"""Tests for cnnkit.train.losses: masking, known values, option checking."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cnnkit import geometry
from cnnkit.errors import ConfigError
from cnnkit.geometry import points_to_flat
from cnnkit.train.losses import LOSS_NAMES, make_loss, soft_wing, wing

LANDMARK_LOSSES = LOSS_NAMES["landmarks"]


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, 4, 2, generator=g), torch.rand(3, 4, 2, generator=g)


def test_mse_equals_seed_loss_without_missing_points() -> None:
    pred, true = _batch()
    loss = make_loss("landmarks", "mse")(pred, true)
    assert torch.allclose(loss, F.mse_loss(points_to_flat(pred), points_to_flat(true)))
    # the flat model layout is accepted too and gives the same value
    assert torch.allclose(make_loss("landmarks")(points_to_flat(pred), points_to_flat(true)), loss)


@pytest.mark.parametrize("name", LANDMARK_LOSSES)
def test_missing_point_equals_removing_it(name: str) -> None:
    pred, true = _batch(1)
    true_nan = true.clone()
    true_nan[1, 2] = float("nan")
    true_nan[0, 3, 1] = float("nan")  # one NaN coordinate makes the whole point missing
    loss_fn = make_loss("landmarks", name)
    pred_a = pred.clone().requires_grad_(True)
    loss_a = loss_fn(pred_a, true_nan)
    loss_a.backward()
    # reference: the same mean computed over the present points only
    keep = torch.ones(3, 4, dtype=torch.bool)
    keep[1, 2] = keep[0, 3] = False
    pred_b = pred.clone().requires_grad_(True)
    penalty = {"mse": lambda d: d * d, "l1": torch.abs, "smooth_l1": lambda d: F.smooth_l1_loss(
        d, torch.zeros_like(d), beta=0.02, reduction="none"), "wing": wing, "soft_wing": soft_wing}[name]
    loss_b = penalty(pred_b[keep] - true[keep]).mean()
    loss_b.backward()
    assert torch.allclose(loss_a, loss_b)
    assert torch.isfinite(pred_a.grad).all()
    assert torch.allclose(pred_a.grad, pred_b.grad)
    assert pred_a.grad[1, 2].abs().sum() == 0 and pred_a.grad[0, 3].abs().sum() == 0
    assert torch.isnan(true_nan).sum() == 3  # the caller's target was not modified


@pytest.mark.parametrize("name", LANDMARK_LOSSES)
def test_all_missing_gives_zero_with_gradient(name: str) -> None:
    pred = torch.rand(2, 3, 2, requires_grad=True)
    loss = make_loss("landmarks", name)(pred, torch.full((2, 3, 2), float("nan")))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_wing_values_at_known_points() -> None:
    w, eps = 0.1, 0.02
    c = w - w * math.log(1 + w / eps)
    d = torch.tensor([0.0, 0.02, -0.05, 0.1, 0.3])
    expected = [0.0, w * math.log(2.0), w * math.log(1 + 0.05 / eps), 0.1 - c, 0.3 - c]
    assert torch.allclose(wing(d), torch.tensor(expected))
    # continuity at |d| = w
    assert abs(float(wing(torch.tensor(w - 1e-6))) - float(wing(torch.tensor(w)))) < 1e-5
    # the paper's pixel settings give the same shape, scaled: loss(s*x; s*p) = s*loss(x; p)
    assert torch.allclose(wing(d * 100, w=10.0, epsilon=2.0), wing(d) * 100, atol=1e-4)


def test_soft_wing_values_at_known_points() -> None:
    o1, o2, eps = 0.02, 0.2, 0.005
    b = o1 - o2 * math.log(1 + o1 / eps)
    d = torch.tensor([0.0, -0.01, 0.02, 0.1])
    expected = [0.0, 0.01, o2 * math.log(1 + 0.02 / eps) + b, o2 * math.log(1 + 0.1 / eps) + b]
    assert torch.allclose(soft_wing(d), torch.tensor(expected))
    assert abs(expected[2] - 0.02) < 1e-7  # continuous at omega1


def test_wing_option_changes_value() -> None:
    pred, true = torch.full((1, 1, 2), 0.5), torch.zeros(1, 1, 2)
    default = make_loss("landmarks", "wing")(pred, true)
    wide = make_loss("landmarks", "wing", w=1.0, epsilon=0.2)(pred, true)
    assert math.isclose(float(default), 0.5 - (0.1 - 0.1 * math.log(6)), rel_tol=1e-5)
    assert math.isclose(float(wide), math.log(1 + 0.5 / 0.2), rel_tol=1e-5)


def test_cross_entropy_with_label_smoothing() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    target = torch.tensor([0, 2])
    plain = make_loss("classes")(logits, target)
    assert torch.allclose(plain, F.cross_entropy(logits, target))
    smooth = make_loss("classes", "cross_entropy", label_smoothing=0.1)(logits, target)
    assert torch.allclose(smooth, F.cross_entropy(logits, target, label_smoothing=0.1))
    assert not torch.allclose(plain, smooth)
    with pytest.raises(ValueError, match="int64"):
        make_loss("classes")(logits, target.float())


def test_unknown_names_and_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown loss 'wng' .*Did you mean 'wing'\?"):
        make_loss("landmarks", "wng")
    with pytest.raises(ConfigError, match=r"unknown loss 'mse' for task 'classes'"):
        make_loss("classes", "mse")
    with pytest.raises(ConfigError, match=r"unknown option 'omega'.*Did you mean 'omega[12]'\?"):
        make_loss("landmarks", "soft_wing", omega=1.0)
    with pytest.raises(ConfigError, match=r"unknown task 'landmark'.*Did you mean 'landmarks'\?"):
        make_loss("landmark")
    with pytest.raises(ConfigError, match="must be > 0"):
        make_loss("landmarks", "wing", epsilon=0)
    with pytest.raises(ConfigError, match="label_smoothing"):
        make_loss("classes", label_smoothing=1.5)
    with pytest.raises(ConfigError, match="takes no options"):
        make_loss("landmarks", "mse", beta=1.0)


def test_map_loss_adds_the_maps_cross_entropy_only_while_training() -> None:
    from cnnkit.model.heads import HeatmapHead
    from cnnkit.train.losses import MapLoss, point_blobs

    head = HeatmapHead([8], width=8, landmarks=2)
    feats = [torch.randn(3, 8, 6, 6)]
    target = torch.tensor([[[0.3, 0.6], [float("nan"), float("nan")]]] * 3)  # 2nd point outside the view
    base = make_loss("landmarks", "l1")
    loss = MapLoss(base, head, weight=2.0)
    head.train()
    pred = geometry.flat_to_points(head(feats))
    maps = head.last_maps.detach()
    expected = base(pred, target) + 2.0 * torch.nn.functional.binary_cross_entropy_with_logits(
        maps, point_blobs(target, (6, 6)))
    assert float(loss(pred, target).detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    assert head.last_maps is None  # used once
    head.eval()
    with torch.no_grad():
        pred = geometry.flat_to_points(head(feats))
    assert head.last_maps is None and float(loss(pred, target)) == pytest.approx(float(base(pred, target)))


def test_point_blobs_peak_at_the_point_and_vanish_for_missing_points() -> None:
    from cnnkit.train.losses import point_blobs

    blobs = point_blobs(torch.tensor([[[0.25, 0.75], [float("nan"), 0.5]]]), (8, 8))
    assert divmod(int(blobs[0, 0].argmax()), 8) in {(5, 1), (5, 2), (6, 1), (6, 2)}  # around cell (x 2, y 6)
    assert float(blobs[0, 1].abs().sum()) == 0.0
