"""Crop views: the view rule, exact geometry, cache == no cache, reproducible draws; crop config."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from cnnkit.config import CropConfig, DataConfig, from_mapping
from cnnkit.data.decode import Geometry
from cnnkit.data.views import (
    ViewDataset,
    ViewSampler,
    cut_view,
    points_box,
    subject_view,
    view_points,
    whole_view,
)
from cnnkit.errors import ConfigError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from crop_fixtures import small_subject_table  # noqa: E402


def test_crop_config_parses_shorthand_mapping_and_round_trips() -> None:
    data = DataConfig(crop="96x64")
    assert data.crop == CropConfig(size=(96, 64)) and data.size == (96, 64) and data.frame == (96, 64)
    again = from_mapping(DataConfig, data.to_dict())
    assert again == data and again.to_dict()["crop"]["size"] == [96, 64]
    mapped = DataConfig(crop={"size": [128, 128], "scale": 0.5, "whole": 0.5, "background": 0.0})
    assert mapped.crop is not None and (mapped.crop.scale, mapped.crop.whole) == (0.5, 0.5)
    assert DataConfig(crop=True).crop == CropConfig() and CropConfig().size == (160, 160)  # `crop: true`: defaults
    assert DataConfig(crop=False).crop is None
    with pytest.raises(ConfigError, match=r"data\.crop\.map_loss must be in \[0, 100\]"):
        DataConfig(crop={"map_loss": -1})


@pytest.mark.parametrize(("crop", "message"), [
    ({"size": "64x64", "scael": 1.0}, r"data\.crop\.scael: unknown key\. Did you mean 'scale'\?"),
    ({"scale": 0}, r"data\.crop\.scale must be in \(0, 8\]"),
    ({"whole": 0.8, "background": 0.5}, r"whole \+ data\.crop\.background must be <= 1"),
    ({"jitter": "a lot"}, r"data\.crop\.jitter: expected float"),
    (12, r"data\.crop: expected .auto., null/false, true, a size"),
])
def test_crop_config_errors_name_the_key(crop, message) -> None:
    with pytest.raises(ConfigError, match=message):
        DataConfig(crop=crop)


def test_data_size_conflicting_with_crop_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"data\.size \(160, 120\) conflicts with data\.crop\.size \(64, 64\)"):
        DataConfig(size="160x120", crop="64x64")
    assert DataConfig(size="64x64", crop="64x64").size == (64, 64)
    with pytest.raises(ConfigError, match="data.letterbox does not apply with data.crop"):
        DataConfig(letterbox=True, crop="64x64")


def test_subject_view_holds_the_points_and_maps_back_exactly() -> None:
    crop = CropConfig(size=(64, 64), margin=0.25)
    rng = np.random.default_rng(0)
    for _ in range(50):
        pts = rng.uniform([0, 0], [600, 440], (1, 2)) + rng.uniform(0, 40, (3, 2))
        view = subject_view(points_box(pts), (640, 480), crop, shift=rng.uniform(-0.25, 0.25, 2))
        in_view = view_points(pts, view, crop.size)
        assert np.isfinite(in_view).all()  # jitter never pushes the points out
        assert view.scale == 1.0  # a 40 px box plus margin fits 64 px at native scale
        np.testing.assert_allclose((in_view - view.offset) / view.scale, pts, atol=1e-9)
    big = subject_view((0, 0, 300, 100), (640, 480), crop)  # a box larger than the view: zoomed out to fit
    assert big.scale == pytest.approx(64 / (300 * 1.25))
    assert np.isfinite(view_points(np.array([[0.0, 0.0], [300.0, 100.0]]), big, crop.size)).all()


def test_whole_view_fits_the_frame_and_outside_points_are_nan() -> None:
    view = whole_view((640, 480), (64, 64))
    assert view.scale == 0.1 and view.offset == (0.0, 8.0)
    far = subject_view((10, 10, 20, 20), (640, 480), CropConfig(size=(64, 64)))
    out = view_points(np.array([[15.0, 15.0], [600.0, 400.0]]), far, (64, 64))
    assert np.isfinite(out[0]).all() and np.isnan(out[1]).all()


def test_cut_view_pixels_follow_the_geometry() -> None:
    base = np.zeros((100, 200, 1), np.uint8)
    base[40:50, 120:130] = 255  # a bright square at x 120..130, y 40..50
    geo = Geometry((200, 100), (1.0, 1.0))
    view = subject_view((120, 40, 130, 50), (200, 100), CropConfig(size=(32, 32)))
    out = cut_view(base, geo, view, (32, 32))
    ys, xs = np.nonzero(out[:, :, 0] > 128)
    assert (xs.min(), xs.max() + 1) == (int(120 + view.offset[0]), int(130 + view.offset[0]))
    assert (ys.min(), ys.max() + 1) == (int(40 + view.offset[1]), int(50 + view.offset[1]))
    padded = cut_view(base, geo, whole_view((200, 100), (32, 32)), (32, 32))
    assert padded.shape == (32, 32, 1) and padded[:8].max() == 0  # the letterbox rows are zeros


def test_cache_and_no_cache_give_the_same_views(tmp_path) -> None:
    table = small_subject_table(tmp_path / "img", 6, size=(160, 120))
    crop = CropConfig(size=(64, 64))  # the 40 px subject plus margin fits at native scale
    plain = ViewDataset(table, crop=crop, seed=3)
    cached = ViewDataset(table, crop=crop, seed=3, cache=tmp_path / "cache")
    native = 0
    for k in range(12):
        a, b = plain[k], cached[k]
        assert (a["scale"] == b["scale"]).all() and (a["offset"] == b["offset"]).all()
        np.testing.assert_array_equal(a["points"].numpy(), b["points"].numpy())
        if float(a["scale"][0]) == crop.scale:  # native views: the very same pixels
            native += 1
            np.testing.assert_array_equal(a["image"].numpy(), b["image"].numpy())
        else:  # whole views are resized from the same pixels too
            assert np.abs(a["image"].numpy().astype(int) - b["image"].numpy()).max() <= 1
    assert native >= 3


def test_subject_share_is_the_points_box_over_the_frame_on_its_larger_axis(tmp_path) -> None:
    # the fixture's points span a 40x40 box: 40/240 of a 320x240 frame's height, 40/120 of 160x120's
    # (one measurement, from the image headers, for data.crop: auto and the model's record)
    from cnnkit.data.sizing import table_subject_share
    from cnnkit.data.views import subject_share

    assert table_subject_share(small_subject_table(tmp_path / "big", 5, size=(320, 240))) == pytest.approx(40 / 240)
    small = small_subject_table(tmp_path / "small", 5, size=(160, 120))
    assert table_subject_share(small) == pytest.approx(40 / 120)
    assert subject_share(small.points(), lambda i: (160, 120), sample=2) == pytest.approx(40 / 120)
    table = small_subject_table(tmp_path / "none", 2, size=(160, 120))
    table.df.loc[:, [c for c in table.df.columns if c.endswith(("_x", "_y"))]] = np.nan
    assert table_subject_share(table) is None


@pytest.mark.parametrize("cached", [False, True])
def test_remembered_whole_views_are_the_same_pixels(tmp_path, cached) -> None:
    table = small_subject_table(tmp_path / "img", 4, size=(320, 240))
    crop = CropConfig(size=(64, 64), whole=0.5)
    cache = tmp_path / "cache" if cached else None
    plain = ViewDataset(table, crop=crop, seed=1, cache=cache)
    kept = ViewDataset(table, crop=crop, seed=1, cache=cache, remember_whole=True)
    for k in range(3 * len(table)):  # three epochs: the whole views come back
        np.testing.assert_array_equal(plain[k]["image"].numpy(), kept[k]["image"].numpy())
    assert 0 < len(kept._whole) <= len(table)
    frames = kept.with_mode("frames")
    item = frames[2]
    cut = cut_view(item["frame"], item["geometry"], whole_view(item["geometry"].orig_size, crop.size), crop.size)
    np.testing.assert_array_equal(item["whole"], cut)
    assert "whole" not in plain.with_mode("frames")[2]


@pytest.mark.parametrize(("size", "on"), [((640, 480), True), ((320, 240), True), ((160, 120), False)])
def test_auto_crop_is_on_for_small_subjects_in_large_frames(tmp_path, size, on) -> None:
    from cnnkit.data.sizing import auto_crop

    # a 40 px box: 0.08 of 640x480 and 0.17 of 320x240 (frames 2x the 160 px view: on); 0.33 of 160x120
    crop, why = auto_crop(small_subject_table(tmp_path / "img", 4, size=size))
    assert (crop == CropConfig()) if on else crop is None
    assert f"span {40 / size[1]:.2f} of {size[0]} px frames" in why


def test_auto_crop_leaves_broken_images_to_the_dataset(tmp_path) -> None:
    from cnnkit.data.sizing import auto_crop

    table = small_subject_table(tmp_path / "img", 4, size=(640, 480))
    Path(table.images[1]).write_bytes(b"not an image")
    assert auto_crop(table)[0] == CropConfig()  # decided on the three readable frames
    for name in table.images:
        Path(name).write_bytes(b"not an image")
    assert auto_crop(table) == (None, "no sampled image could be opened")


def test_data_crop_defaults_to_auto_and_refuses_what_it_cannot_read() -> None:
    assert DataConfig().crop == "auto" and DataConfig().to_dict()["crop"] == "auto"
    assert DataConfig(crop=False).crop is None and DataConfig(crop=False).crop_settings is None
    with pytest.raises(ConfigError, match="still 'auto'"):
        _ = DataConfig().crop_settings
    with pytest.raises(ConfigError, match=r"data\.crop"):
        DataConfig(crop="automatic")


def test_views_are_reproducible_per_seed_and_epoch(tmp_path) -> None:
    table = small_subject_table(tmp_path / "img", 8, size=(160, 120))
    crop = CropConfig(size=(48, 48), whole=0.3, background=0.2)
    ds = ViewDataset(table, crop=crop, seed=1)
    sampler = ViewSampler(len(ds), shuffle=True, seed=1)
    sampler.set_epoch(2)
    first = [(float(ds[k]["scale"][0]), tuple(ds[k]["offset"].tolist())) for k in sampler]
    again = [(float(ds[k]["scale"][0]), tuple(ds[k]["offset"].tolist())) for k in sampler]
    assert first == again
    other = ViewDataset(table, crop=crop, seed=2)
    assert [other.view_of(i, 2) for i in range(8)] != [ds.view_of(i, 2) for i in range(8)]
    assert [ds.view_of(i, 3) for i in range(8)] != [ds.view_of(i, 2) for i in range(8)]
    kinds = {ds.view_of(i, e).scale == crop.scale for i in range(8) for e in range(6)}
    assert kinds == {True, False}  # whole views and native views both occur
