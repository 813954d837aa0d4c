"""The small-subject demo set: frame size, subject span, determinism, annotations, and the default set untouched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.cli import main
from cnnkit.data.sources import read_annotations
from cnnkit.demo.synth import (
    IMAGES_FOLDER,
    LANDMARK_PARTS,
    LANDMARKS,
    MANIFEST,
    SmallSubject,
    is_demo_dataset,
    make_demo_dataset,
    render_sample,
)
from cnnkit.errors import DataError

SMALL = SmallSubject(frame=(640, 480))  # a smaller frame keeps the tests fast; the span is the default


def _span(points: np.ndarray) -> float:
    """The largest distance between two visible landmarks, px."""
    p = points[~np.isnan(points[:, 0])]
    return float(np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1)).max())


def test_frames_have_the_frame_size_and_faces_span_60_to_200_px() -> None:
    spans = []
    for i in range(25):
        s = render_sample(np.random.default_rng([5, i]), small_subject=SMALL)
        assert s.image.shape == (480, 640, 3) and s.parts.shape == (480, 640)
        visible = ~np.isnan(s.points[:, 0])
        assert (s.points[visible] >= 0).all() and (s.points[visible, 0] < 640).all()
        for k in np.flatnonzero(visible):  # every visible landmark lies on its drawn part
            x, y = s.points[k]
            assert s.parts[int(y), int(x)] == LANDMARK_PARTS[k], (i, LANDMARKS[k])
        if visible[6] and visible[7]:  # both ears: the span is exactly the drawn one
            spans.append(_span(s.points))
    assert len(spans) >= 20
    assert 60 <= min(spans) and max(spans) <= 200
    assert max(spans) - min(spans) > 90  # spread over the range, not a constant size


def test_default_frame_is_1280x960() -> None:
    s = render_sample(np.random.default_rng([0, 0]), small_subject=SmallSubject())
    assert s.image.shape == (960, 1280, 3)


def test_default_mode_draws_what_it_drew_before() -> None:
    """The default set is unchanged by the small-subject mode: same RNG draws, same points."""
    s = render_sample(np.random.default_rng([0, 0]))
    assert s.image.shape == (364, 433, 3)
    assert s.points.round(4).tolist() == [
        [128.0274, 173.4915], [187.9685, 142.8445], [173.3063, 188.1091], [162.6995, 233.5219],
        [216.331, 206.1009], [206.6246, 253.2749], [77.5444, 214.8542], [251.0583, 126.1392]]


def test_same_seed_same_bytes_annotations_load_and_manifest_tells_the_sets_apart(tmp_path: Path) -> None:
    a = make_demo_dataset(tmp_path / "a", n_images=3, seed=1, small_subject=SMALL)
    make_demo_dataset(tmp_path / "b", n_images=3, seed=1, small_subject=SMALL)
    make_demo_dataset(tmp_path / "c", n_images=3, seed=2, small_subject=SMALL)
    for i in range(3):
        name = f"{IMAGES_FOLDER}/demo_{i:04d}.jpg"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()
        assert Image.open(tmp_path / "a" / name).size == (640, 480)
    table = read_annotations(a, flip_pairs="auto")
    assert len(table.df) == 3 and list(table.landmarks) == list(LANDMARKS)
    assert table.flip_pairs  # the left/right pairs are found as in the default set
    xs = table.df[[f"{n}_x" for n in LANDMARKS]].to_numpy()
    ys = table.df[[f"{n}_y" for n in LANDMARKS]].to_numpy()
    for row in range(3):
        points = np.stack([xs[row], ys[row]], axis=-1)
        assert _span(points) <= 200
    manifest = json.loads((tmp_path / "a" / MANIFEST).read_text())
    assert manifest["small_subject"] == {"frame": [640, 480], "span": [60.0, 200.0]}
    assert is_demo_dataset(tmp_path / "a", n_images=3, seed=1, small_subject=SMALL)
    assert not is_demo_dataset(tmp_path / "a", n_images=3, seed=1)  # not the default set
    assert not is_demo_dataset(tmp_path / "a", n_images=3, seed=1, small_subject=True)  # other frame


def test_default_set_manifest_has_no_small_subject_key(tmp_path: Path) -> None:
    make_demo_dataset(tmp_path, n_images=1, seed=0)
    assert "small_subject" not in json.loads((tmp_path / MANIFEST).read_text())
    assert is_demo_dataset(tmp_path, n_images=1, seed=0)
    assert not is_demo_dataset(tmp_path, n_images=1, seed=0, small_subject=True)


def test_a_face_that_cannot_fit_is_refused() -> None:
    with pytest.raises(DataError, match="face inside the frame"):
        SmallSubject(frame=(200, 150))
    with pytest.raises(DataError, match="span min <= span max"):
        SmallSubject(span=(120.0, 60.0))


def test_cli_writes_the_small_subject_set_without_training(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "small"
    assert main(["--quiet", "demo", "--small-subject", "--out", str(out), "--images", "2", "--frame", "640x480",
                 "--seed", "1"]) == 0
    assert capsys.readouterr().out.strip().endswith("demo_via.json")
    assert is_demo_dataset(out, n_images=2, seed=1, small_subject=SMALL)
    assert not (out / "run").exists()
