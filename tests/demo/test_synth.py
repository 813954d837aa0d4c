"""The demo data generator: determinism, points on the drawn parts, occlusion -> NaN, VIA round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.data.sources import read_annotations
from cnnkit.demo.synth import (
    IMAGES_FOLDER,
    LANDMARK_PARTS,
    LANDMARKS,
    PARTS,
    is_demo_dataset,
    make_demo_dataset,
    render_sample,
)
from cnnkit.errors import DataError

OCCLUDER = PARTS.index("occluder")
SEED_WITH_OCCLUSION = 3  # images 1 and 3 of seed 3 have an occluder (checked below, not assumed)


def _files(folder: Path) -> dict[str, bytes]:
    """Every file's bytes; the VIA project's image folder (an absolute URI, for VIA) made relative."""
    uri = folder.resolve().as_uri().encode()
    return {p.relative_to(folder).as_posix(): p.read_bytes().replace(uri, b"<folder>")
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_same_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    make_demo_dataset(tmp_path / "a", n_images=4, seed=7)
    make_demo_dataset(tmp_path / "b", n_images=4, seed=7)
    make_demo_dataset(tmp_path / "c", n_images=4, seed=8)
    a, b, c = (_files(tmp_path / x) for x in "abc")
    assert a == b
    jpgs = [k for k in a if k.endswith(".jpg")]
    assert len(jpgs) == 4
    assert all(a[k] != c[k] for k in jpgs)
    assert a["demo_via.json"] != c["demo_via.json"]


def test_landmarks_lie_on_their_parts_and_hidden_ones_under_the_occluder() -> None:
    hidden_seen = 0
    for i in range(60):
        s = render_sample(np.random.default_rng([11, i]))
        h, w = s.parts.shape
        assert s.image.shape == (h, w, 3) and 160 <= h <= 480 and 160 <= w <= 480
        for k, (x, y) in enumerate(s.points):
            if np.isnan(x):
                hidden_seen += 1
                continue
            assert 0 <= x < w and 0 <= y < h
            part = s.parts[int(y), int(x)]
            assert part == LANDMARK_PARTS[k], (i, LANDMARKS[k], PARTS[part])
        assert (np.isnan(s.points[:, 0]) == np.isnan(s.points[:, 1])).all()
    assert 1 <= hidden_seen <= 60  # ~10% of images have one or two hidden points


def test_hidden_points_are_where_an_occluder_was_drawn() -> None:
    rng_sample = render_sample(np.random.default_rng([SEED_WITH_OCCLUSION, 1]))
    visible = render_sample(np.random.default_rng([SEED_WITH_OCCLUSION, 0]))
    assert np.isnan(rng_sample.points).any() and (rng_sample.parts == OCCLUDER).sum() > 20
    assert not np.isnan(visible.points).any() and (visible.parts == OCCLUDER).sum() == 0


def test_landmark_colours_differ_from_the_background(tmp_path: Path) -> None:
    """On the saved JPEG, the eyes' pixels are the drawn eye colour, not the surrounding background."""
    make_demo_dataset(tmp_path, n_images=3, seed=5)
    for i in range(3):
        s = render_sample(np.random.default_rng([5, i]))
        jpeg = np.asarray(Image.open(tmp_path / IMAGES_FOLDER / f"demo_{i:04d}.jpg").convert("RGB"), dtype=float)
        assert np.abs(jpeg - s.image).mean() < 6  # the file is the rendered image (JPEG q90)
        eye = s.parts == PARTS.index("eye")
        background = jpeg[s.parts == 0].mean(axis=0)
        for x, y in s.points[:2]:
            if np.isnan(x):
                continue
            patch = jpeg[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2].reshape(-1, 3).mean(axis=0)
            assert np.linalg.norm(patch - jpeg[eye].mean(axis=0)) < 25
            assert np.linalg.norm(patch - background) > np.linalg.norm(patch - jpeg[eye].mean(axis=0))


def test_via_project_reads_back_with_counts_points_and_nan(tmp_path: Path) -> None:
    n = 5
    project = make_demo_dataset(tmp_path, n_images=n, seed=SEED_WITH_OCCLUSION)
    table = read_annotations(project, flip_pairs="auto")
    assert len(table) == n and table.landmarks == LANDMARKS
    assert set(table.flip_pairs) == {("left_eye", "right_eye"), ("mouth_left", "mouth_right"),
                                     ("left_ear", "right_ear")}
    expected = np.stack([render_sample(np.random.default_rng([SEED_WITH_OCCLUSION, i])).points for i in range(n)])
    order = [int(Path(p).stem.split("_")[1]) for p in table.images]
    got = table.points()
    np.testing.assert_allclose(got, expected[order], atol=1e-6)  # NaN in the same places
    assert np.isnan(got[order.index(1)]).any() and np.isnan(got[order.index(3)]).any()
    data = json.loads(project.read_text(encoding="utf-8"))
    meta = data["_via_img_metadata"]
    assert sorted(v["filename"] for v in meta.values()) == [f"demo_{i:04d}.jpg" for i in range(n)]  # bare, for VIA
    assert data["_via_settings"]["core"]["default_filepath"] == (tmp_path / "images").resolve().as_uri() + "/"
    assert sum(len(v["regions"]) for v in meta.values()) == int(np.isfinite(expected[..., 0]).sum())


def test_is_demo_dataset_checks_settings_and_files(tmp_path: Path) -> None:
    assert not is_demo_dataset(tmp_path, n_images=3, seed=0)
    make_demo_dataset(tmp_path, n_images=3, seed=0)
    assert is_demo_dataset(tmp_path, n_images=3, seed=0)
    assert not is_demo_dataset(tmp_path, n_images=3, seed=1)
    assert not is_demo_dataset(tmp_path, n_images=4, seed=0)
    (tmp_path / IMAGES_FOLDER / "demo_0002.jpg").unlink()
    assert not is_demo_dataset(tmp_path, n_images=3, seed=0)
    make_demo_dataset(tmp_path, n_images=2, seed=0)  # a smaller set leaves no stale images behind
    assert sorted(p.name for p in (tmp_path / IMAGES_FOLDER).iterdir()) == ["demo_0000.jpg", "demo_0001.jpg"]
    assert is_demo_dataset(tmp_path, n_images=2, seed=0)


def test_rejects_no_images(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="n_images must be >= 1"):
        make_demo_dataset(tmp_path, n_images=0)
