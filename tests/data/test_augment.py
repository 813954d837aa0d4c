"""Tests for cnnkit.data.augment: image and points move through the same matrix."""

from __future__ import annotations

import math

import pytest
import torch

from cnnkit.data.augment import Augment, augment_batch, flip_permutation
from cnnkit.errors import ConfigError

W, H = 64, 48  # deliberately not square: catches x/y or width/height mix-ups


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _blobs(points: torch.Tensor, channels: int = 1, sigma: float = 1.5) -> torch.Tensor:
    """(B, C, H, W) image with a Gaussian blob centred at each (B, 1, 2) corner-origin point."""
    xs = torch.arange(W, dtype=torch.float64) + 0.5  # pixel centres
    ys = torch.arange(H, dtype=torch.float64) + 0.5
    px, py = points[:, 0, 0, None, None].double(), points[:, 0, 1, None, None].double()
    d2 = (xs[None, None, :] - px) ** 2 + (ys[None, :, None] - py) ** 2
    img = torch.exp(-d2 / (2 * sigma**2)).float()
    return img[:, None].repeat(1, channels, 1, 1)


def _centroids(images: torch.Tensor) -> torch.Tensor:
    """(B, 2) intensity-weighted centroid of channel 0, corner-origin pixels."""
    img = images[:, 0].double()
    xs = torch.arange(W, dtype=torch.float64) + 0.5
    ys = torch.arange(H, dtype=torch.float64) + 0.5
    mass = img.sum(dim=(1, 2))
    cx = (img * xs[None, None, :]).sum(dim=(1, 2)) / mass
    cy = (img * ys[:, None]).sum(dim=(1, 2)) / mass
    return torch.stack([cx, cy], dim=-1)


def _dot_check(aug: Augment, channels: int = 1, b: int = 12) -> torch.Tensor:
    start = torch.tensor([[[25.3, 20.7]]]).repeat(b, 1, 1)
    images = _blobs(start, channels)
    out_img, out_pts = augment_batch(images, start, aug, generator=_gen(3))
    assert out_img.shape == images.shape and out_pts.shape == start.shape
    assert torch.isfinite(out_pts).all()
    torch.testing.assert_close(_centroids(out_img), out_pts[:, 0].double(), atol=0.06, rtol=0)
    return out_pts[:, 0]


def test_dot_lands_on_the_point_under_flip() -> None:
    moved = _dot_check(Augment(flip=True, force_flip=True))
    xs = moved[:, 0]
    assert ((xs - 25.3).abs() < 1e-4).any() and ((xs - (W - 25.3)).abs() < 1e-4).any()
    assert (((xs - 25.3).abs() < 1e-4) | ((xs - (W - 25.3)).abs() < 1e-4)).all()
    torch.testing.assert_close(moved[:, 1], torch.full((12,), 20.7))


def test_dot_lands_on_the_point_under_rotation() -> None:
    moved = _dot_check(Augment(rotate=40.0))
    radius = torch.hypot(moved[:, 0] - W / 2, moved[:, 1] - H / 2)
    torch.testing.assert_close(radius, torch.full((12,), math.hypot(25.3 - 32, 20.7 - 24)))
    assert (moved[:, 0] - 25.3).abs().max() > 1.0  # it did rotate


def test_dot_lands_on_the_point_under_scale() -> None:
    moved = _dot_check(Augment(scale=(0.7, 1.3)))
    ratio = (moved - torch.tensor([W / 2, H / 2])) / torch.tensor([25.3 - 32, 20.7 - 24])
    torch.testing.assert_close(ratio[:, 0], ratio[:, 1])  # isotropic, about the centre
    assert ratio.min() >= 0.7 - 1e-5 and ratio.max() <= 1.3 + 1e-5 and ratio.std() > 0.05


def test_dot_lands_on_the_point_under_shift() -> None:
    moved = _dot_check(Augment(shift=0.1))
    delta = moved - torch.tensor([25.3, 20.7])
    assert delta[:, 0].abs().max() <= 0.1 * W + 1e-4 and delta[:, 1].abs().max() <= 0.1 * H + 1e-4
    assert delta.abs().max() > 0.5


def test_dot_lands_on_the_point_under_all_ops_rgb() -> None:
    _dot_check(Augment(flip=True, force_flip=True, rotate=25, scale=(0.85, 1.15), shift=0.08), channels=3)


def test_flip_swaps_left_right_labels() -> None:
    perm = flip_permutation(["l", "c", "r"], [("l", "r")])
    assert perm == [2, 1, 0]
    pts = torch.tensor([[[10.0, 20.0], [32.0, 5.0], [50.0, 30.0]]]).repeat(16, 1, 1)
    _, out = augment_batch(
        torch.zeros(16, 1, H, W), pts, Augment(flip=True), generator=_gen(), flip_perm=perm
    )
    flipped = torch.tensor([[W - 50.0, 30.0], [32.0, 5.0], [W - 10.0, 20.0]])
    is_flipped = torch.tensor([torch.allclose(o, flipped) for o in out])
    is_same = torch.tensor([torch.allclose(o, pts[0]) for o in out])
    assert is_flipped.any() and is_same.any() and (is_flipped | is_same).all()


def test_flip_permutation_rejects_bad_pairs() -> None:
    with pytest.raises(ConfigError, match=r"unknown landmark 'rigth'\. Did you mean 'right'\?"):
        flip_permutation(["left", "right"], [("left", "rigth")])
    with pytest.raises(ConfigError, match="more than one pair"):
        flip_permutation(["a", "b", "c"], [("a", "b"), ("b", "c")])


def test_flip_without_pairs_is_refused_unless_forced() -> None:
    with pytest.raises(ConfigError, match=r"no left/right pairs.*flip_pairs=.*force_flip=True"):
        flip_permutation(["a", "b"], [])
    assert flip_permutation(["a", "b"], [], force=True) == [0, 1]
    images, pts = torch.zeros(2, 1, H, W), torch.full((2, 2, 2), 10.0)
    with pytest.raises(ConfigError, match="no left/right pairs"):
        augment_batch(images, pts, Augment(flip=True), generator=_gen())
    _, out = augment_batch(images, pts, Augment(flip=True, force_flip=True), generator=_gen())
    assert out.shape == pts.shape
    _, none = augment_batch(images, torch.zeros(2, 0, 2), Augment(flip=True), generator=_gen())
    assert none.shape == (2, 0, 2)


def test_points_leaving_the_frame_become_nan_not_clamped() -> None:
    b = 64
    pts = torch.tensor([[[2.0, 2.0], [W / 2, H / 2]]]).repeat(b, 1, 1)
    _, out = augment_batch(torch.zeros(b, 1, H, W), pts, Augment(shift=0.3), generator=_gen())
    corner, centre = out[:, 0], out[:, 1]
    assert torch.isfinite(centre).all()
    gone = corner.isnan().all(dim=-1)
    assert gone.any() and (~gone).any()
    assert corner.isnan().any(dim=-1).eq(gone).all()  # both coordinates masked together
    kept = corner[~gone]
    assert (kept > 0).all() and (kept[:, 0] < W).all() and (kept[:, 1] < H).all()  # no clamping to edges


def test_nan_input_stays_nan() -> None:
    pts = torch.tensor([[[float("nan"), float("nan")], [float("nan"), 5.0], [10.0, 10.0]]])
    _, out = augment_batch(torch.zeros(1, 1, H, W), pts, Augment(rotate=10), generator=_gen())
    assert out[0, :2].isnan().all() and torch.isfinite(out[0, 2]).all()


def test_same_seed_same_batch_and_inputs_untouched() -> None:
    aug = Augment(flip=True, force_flip=True, rotate=20, scale=(0.9, 1.1), shift=0.1, brightness=0.3,
                  contrast=0.3, saturation=0.3, blur=0.5, noise=0.05)  # fmt: skip
    images = torch.rand(4, 3, H, W, generator=_gen(9))
    pts = torch.rand(4, 5, 2, generator=_gen(8)) * torch.tensor([W, H])
    before_img, before_pts = images.clone(), pts.clone()
    a = augment_batch(images, pts, aug, generator=_gen(1))
    b = augment_batch(images, pts, aug, generator=_gen(1))
    c = augment_batch(images, pts, aug, generator=_gen(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1].nan_to_num(-1), b[1].nan_to_num(-1))
    assert not torch.equal(a[0], c[0])
    assert torch.equal(images, before_img) and torch.equal(pts, before_pts)


def test_identity_augment_leaves_batch_unchanged() -> None:
    images, pts = torch.rand(3, 3, H, W), torch.rand(3, 4, 2) * 10
    pts[0, 1] = float("nan")
    out_img, out_pts = augment_batch(images, pts, Augment(), generator=_gen())
    assert not Augment().enabled and out_img is not images and out_pts is not pts
    assert torch.equal(out_img, images) and torch.equal(out_pts.nan_to_num(-1), pts.nan_to_num(-1))


@pytest.mark.parametrize("channels", [1, 3])
def test_colour_ops_keep_range_and_leave_points(channels: int) -> None:
    aug = Augment(brightness=0.9, contrast=0.9, saturation=0.9, blur=1.0, noise=0.3)
    images = torch.rand(6, channels, H, W, generator=_gen(4))
    pts = torch.tensor([[[3.0, 4.0]]]).repeat(6, 1, 1)
    out_img, out_pts = augment_batch(images, pts, aug, generator=_gen())
    assert out_img.min() >= 0.0 and out_img.max() <= 1.0 and out_img.shape == images.shape
    assert (out_img - images).abs().mean() > 0.05
    assert torch.equal(out_pts, pts)


def test_blur_smooths_and_keeps_flat_images_flat() -> None:
    noise = torch.rand(4, 3, H, W, generator=_gen(5))
    blurred, _ = augment_batch(noise, torch.zeros(4, 0, 2), Augment(blur=1.0), generator=_gen())
    assert blurred.std() < 0.7 * noise.std()
    flat = torch.full((2, 1, H, W), 0.4)
    out, _ = augment_batch(flat, torch.zeros(2, 0, 2), Augment(blur=1.0), generator=_gen())
    torch.testing.assert_close(out, flat)


def test_brightness_scales_intensity() -> None:
    flat = torch.full((32, 1, 8, 8), 0.5)
    out, _ = augment_batch(flat, torch.zeros(32, 0, 2), Augment(brightness=0.2), generator=_gen())
    per_image = out[:, 0, 0, 0]
    assert per_image.min() >= 0.4 - 1e-6 and per_image.max() <= 0.6 + 1e-6 and per_image.std() > 0.02
    assert torch.equal(out, per_image[:, None, None, None].expand_as(out))


def test_config_validation_and_round_trip() -> None:
    with pytest.raises(ConfigError, match=r"unknown augment key 'rotation'\. Did you mean 'rotate'\?"):
        Augment.from_mapping({"rotation": 10})
    with pytest.raises(ConfigError, match=r"augment\.rotate must be in \[0, 180\]"):
        Augment(rotate=-5)
    with pytest.raises(ConfigError, match="0 < low <= high"):
        Augment(scale=(1.2, 0.9))
    with pytest.raises(ConfigError, match="augment.flip must be true or false"):
        Augment(flip="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="finite number"):
        Augment(noise=float("nan"))
    preset = Augment.default_landmarks()
    assert (preset.rotate, preset.scale, preset.shift, preset.brightness, preset.contrast, preset.flip) == (
        15.0, (0.9, 1.1), 0.08, 0.2, 0.2, False)  # fmt: skip
    assert preset.enabled and Augment.from_mapping(preset.to_dict()) == preset
    assert Augment.from_mapping({"scale": [0.8, 1.0]}).scale == (0.8, 1.0)


def test_bad_shapes_are_reported() -> None:
    with pytest.raises(ValueError, match=r"points must be \(B, K, 2\)"):
        augment_batch(torch.zeros(2, 1, 4, 4), torch.zeros(3, 1, 2), Augment(), generator=_gen())
    with pytest.raises(ConfigError, match="permutation"):
        augment_batch(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 2), Augment(flip=True), generator=_gen(),
                      flip_perm=[0, 0])  # fmt: skip


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda_and_matches_the_point_there() -> None:
    start = torch.tensor([[[25.3, 20.7]]]).repeat(8, 1, 1)
    aug = Augment(rotate=25, scale=(0.85, 1.15), shift=0.08, brightness=0.2)
    img, pts = augment_batch(_blobs(start).cuda(), start.cuda(), aug, generator=_gen())
    assert img.is_cuda and pts.is_cuda
    torch.testing.assert_close(_centroids(img.cpu()), pts[:, 0].cpu().double(), atol=0.06, rtol=0)
    # Noise is drawn on the GPU from a seed taken from the CPU generator: same seed, same batch.
    # (Not in the centroid check: clamping noise at 0 lifts the dark background and moves the centroid.)
    noisy = Augment(rotate=25, noise=0.01)
    first = augment_batch(_blobs(start).cuda(), start.cuda(), noisy, generator=_gen())[0]
    again = augment_batch(_blobs(start).cuda(), start.cuda(), noisy, generator=_gen())[0]
    assert torch.equal(first, again)
    assert not torch.equal(first, augment_batch(_blobs(start).cuda(), start.cuda(), noisy, generator=_gen(1))[0])
