"""Labelled videos: colours per landmark, faded or hidden below the threshold, frames and times kept."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cnnkit.data.video import iter_frames
from cnnkit.errors import DataError
from cnnkit.viz.video import LabeledVideoWriter, draw_points, landmark_colors, write_labeled_video

GREY = 60


def _frame(h=64, w=96):
    return np.full((h, w, 3), GREY, np.uint8)


def test_draw_points_colours_fade_hide_and_nan() -> None:
    pts = np.array([[20.0, 20.0], [60.0, 40.0], [np.nan, 5.0]])
    colors = landmark_colors(3)
    out = draw_points(_frame(), pts, np.array([0.9, 0.1, 0.9]), threshold=0.5, radius=4)
    assert out[19, 19].tolist() == colors[0].tolist()  # confident: the landmark's colour at its centre
    assert out[39, 59].tolist() == [GREY] * 3  # unsure: a ring, the centre untouched ...
    ring = out[39, 56]  # ... and the ring a faded blend of grey and the colour
    assert np.allclose(ring, GREY * 0.65 + colors[1] * 0.35, atol=1)
    hidden = draw_points(_frame(), pts, np.array([0.9, 0.1, 0.9]), threshold=0.5, below="hide", radius=4)
    assert (hidden[30:, 50:] == GREY).all()  # the unsure point is left out
    assert (np.count_nonzero((out != GREY).any(-1)) > np.count_nonzero((hidden != GREY).any(-1)))
    none = draw_points(_frame(), pts[:, :] * 0 + np.nan, None)
    assert (none == GREY).all()
    with pytest.raises(ValueError, match="below must be"):
        draw_points(_frame(), pts, below="dim")


@pytest.mark.parametrize("name", ["out.mp4", "out.avi"])
def test_writer_keeps_frames_and_times(tmp_path, name) -> None:
    times = [0.0, 0.01, 0.05, 0.06, 0.2]  # irregular: kept in .mp4; .avi gets a constant rate
    with LabeledVideoWriter(tmp_path / name, fps=25, names=["a", "b"], radius=6) as writer:
        for i, t in enumerate(times):
            writer.write(_frame(65, 95), np.array([[20.0 + i, 20.0], [70.0, 40.0]]), np.array([0.9, 0.9]), t)
    frames = list(iter_frames(tmp_path / name))
    assert len(frames) == 5 and frames[0].image.shape == (66, 96, 3)  # odd sizes padded to even for yuv420p
    expected = times if name.endswith(".mp4") else [i / 25 for i in range(5)]
    np.testing.assert_allclose([f.time_s for f in frames], expected, atol=2e-3)
    centre = frames[2].image[19, 21].astype(int)
    assert np.abs(centre - landmark_colors(2)[0]).max() < 30  # H.264 keeps the colour near the centre
    assert not list(tmp_path.glob(".*tmp*"))


def test_write_labeled_video_from_a_table(tmp_path, index_video) -> None:
    video = index_video(tmp_path / "clip.mp4", 6)
    preds = pd.DataFrame({"frame": [0, 1, 2, 4, 5], "p_x": [30.0] * 5, "p_y": [40.0] * 5,
                          "p_likelihood": [0.9] * 5})  # frame 3 has no row: drawn without points
    out = write_labeled_video(iter_frames(video), preds, tmp_path / "lab.mp4", fps=30, radius=6)
    frames = list(iter_frames(out))
    assert len(frames) == 6
    colour = landmark_colors(1)[0].astype(int)
    near = [np.abs(f.image[39, 29].astype(int) - colour).max() < 40 for f in frames]
    assert near == [True, True, True, False, True, True]


def test_failed_write_leaves_no_file(tmp_path) -> None:
    with pytest.raises(RuntimeError), LabeledVideoWriter(tmp_path / "x.mp4", fps=30, names=["a"]) as writer:
        writer.write(_frame(), np.array([[1.0, 1.0]]))
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DataError, match="no frames were written"), LabeledVideoWriter(
            tmp_path / "y.mp4", fps=30, names=["a"]):
        pass
