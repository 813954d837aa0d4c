"""Tests for cnnkit.viz.plots: the PNGs exist, have the promised size, and marks land where asked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cnnkit.errors import DataError
from cnnkit.viz import plot_classes, plot_history, plot_landmarks, show_image_points

W, H = 64, 48
GREY = 40  # image value that appears nowhere else in the figure


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB")).astype(int)


def _images(n: int, channels: int = 3) -> np.ndarray:
    shape = (n, H, W, channels) if channels else (n, H, W)
    return np.full(shape, GREY, dtype=np.uint8)


def _image_box(rgb: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) PNG pixel box of the drawn GREY image (first image only if several)."""
    mask = (np.abs(rgb - GREY) <= 2).all(axis=-1)
    ys = np.nonzero(mask.sum(axis=1) > 50)[0]  # whole rows/columns of image, not anti-aliased text
    xs = np.nonzero(mask.sum(axis=0) > 50)[0]
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def _colour_centroid(rgb: np.ndarray, want: tuple[int, int, int], tol: int = 60) -> tuple[float, float, int]:
    mask = (np.abs(rgb - np.array(want)) <= tol).all(axis=-1)
    ys, xs = np.nonzero(mask)
    return (xs.mean() if len(xs) else np.nan), (ys.mean() if len(ys) else np.nan), int(mask.sum())


def test_red_cross_lands_on_the_predicted_pixel(tmp_path: Path) -> None:
    pred = np.array([[[16.0, 36.0]]])  # x = W/4, y = 3H/4
    images = _images(1)
    images[0, 10, 40] = (0, 0, 255)  # pixel row 10, column 40 covers [40, 41] x [10, 11]
    out = plot_landmarks(images, None, pred, tmp_path / "one.png")
    rgb = _read(out)
    assert rgb.shape == (300, 300, 3)
    x0, y0, x1, y1 = _image_box(rgb)
    assert x1 - x0 > 200  # the image fills most of the cell
    cx, cy, count = _colour_centroid(rgb, (255, 0, 0))
    assert count > 10
    scale = (x1 - x0) / W
    assert abs(cx - (x0 + 16.0 * scale)) < 1.5 and abs(cy - (y0 + 36.0 * scale)) < 1.5
    assert abs((y1 - y0) / H - scale) < 0.05  # aspect ratio kept
    bx, by, blue = _colour_centroid(rgb, (0, 0, 255), tol=30)
    assert blue > 9 and abs(bx - (x0 + 40.5 * scale)) < 1 and abs(by - (y0 + 10.5 * scale)) < 1


def test_true_circle_and_prediction_in_a_grid(tmp_path: Path) -> None:
    true = np.array([[[48.0, 12.0], [np.nan, np.nan]]] * 2)
    pred = np.array([[[10.0, 40.0], [np.nan, 5.0]]] * 2)
    out = plot_landmarks(
        _images(2), true, pred, tmp_path / "sub" / "grid.png", names=["a", "b"], titles=["x", "y"]
    )
    rgb = _read(out)
    assert rgb.shape == (300, 600, 3)  # two cells side by side
    left = rgb[:, :300]
    x0, y0, x1, _ = _image_box(left)
    scale = (x1 - x0) / W
    gx, gy, green = _colour_centroid(left, (0, 255, 0), tol=70)
    assert green > 10 and abs(gx - (x0 + 48 * scale)) < 2.5 and abs(gy - (y0 + 12 * scale)) < 2.5
    rx, ry, _ = _colour_centroid(left, (255, 0, 0))
    assert abs(rx - (x0 + 10 * scale)) < 2 and abs(ry - (y0 + 40 * scale)) < 2  # NaN point not drawn
    assert _colour_centroid(left, (255, 255, 0), tol=40)[2] > 10  # the yellow link is drawn


def test_all_nan_predictions_draw_nothing_red(tmp_path: Path) -> None:
    pred = np.full((1, 3, 2), np.nan)
    rgb = _read(plot_landmarks(_images(1, channels=0), None, pred, tmp_path / "nan.png"))
    assert _colour_centroid(rgb, (255, 0, 0))[2] == 0


def test_grid_size_and_max_images(tmp_path: Path) -> None:
    assert _read(plot_landmarks(_images(5), None, None, tmp_path / "five.png")).shape == (600, 900, 3)
    assert _read(plot_landmarks(_images(10), None, None, tmp_path / "ten.png", max_images=4)).shape == (
        600,
        600,
        3,
    )


def test_plot_landmarks_rejects_mismatched_points(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"pred_px must be \(N, K, 2\) with N=2"):
        plot_landmarks(_images(2), None, np.zeros((3, 1, 2)), tmp_path / "bad.png")
    with pytest.raises(DataError, match="names has 1 entries"):
        plot_landmarks(_images(1), np.zeros((1, 2, 2)), None, tmp_path / "bad.png", names=["a"])
    assert not (tmp_path / "bad.png").exists()


def test_plot_history_writes_curves(tmp_path: Path) -> None:
    history = pd.DataFrame(
        {"epoch": [1, 2, 3, 4], "train_loss": [1.0, 0.5, 0.3, 0.2], "val_loss": [1.1, 0.7, 0.5, 0.6],
         "val_error_px_mean": [20.0, 12.0, 9.0, 9.5]}
    )  # fmt: skip
    target = tmp_path / "history.png"
    target.write_bytes(b"old")  # overwritten atomically
    out = plot_history(history, target)
    rgb = _read(out)
    assert out == target and rgb.shape == (400, 1000, 3)
    assert (
        _colour_centroid(rgb[:, 500:], (44, 160, 44), tol=20)[2] > 50
    )  # metric curve (tab:green), right panel
    assert _colour_centroid(rgb[:, :500], (31, 119, 180), tol=20)[2] > 50  # first loss curve, left panel
    assert [p.name for p in tmp_path.iterdir()] == ["history.png"]  # no temporary file left


def test_plot_history_needs_epochs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="'epoch' column"):
        plot_history(pd.DataFrame({"loss": [1.0]}), tmp_path / "h.png")


def test_plot_classes_colours_titles(tmp_path: Path) -> None:
    out = plot_classes(_images(2), ["ant", "bee"], ["ant", "ant"], tmp_path / "c.png", probs=[0.9, 0.6])
    rgb = _read(out)
    assert rgb.shape == (300, 600, 3)
    top = rgb[: _image_box(rgb[:, :300])[1]]  # the title band above the images
    right_green = _colour_centroid(top[:, :300], (0, 128, 0), tol=40)[2]
    right_red = _colour_centroid(top[:, :300], (255, 0, 0), tol=60)[2]
    wrong_red = _colour_centroid(top[:, 300:], (255, 0, 0), tol=60)[2]
    assert right_green > 5 and right_red == 0 and wrong_red > 5
    with pytest.raises(DataError, match="one label per image"):
        plot_classes(_images(2), None, ["ant"], tmp_path / "d.png")


def test_show_image_points_uses_corner_origin_pixels() -> None:
    import matplotlib.pyplot as plt

    ax = show_image_points(
        _images(1)[0], np.array([[3.0, 4.0], [np.nan, 1.0], [60.0, 40.0]]), names=["a", "b", "c"]
    )
    try:
        assert ax.images[0].get_extent() == [0, W, H, 0]
        np.testing.assert_allclose(ax.collections[0].get_offsets(), [[3.0, 4.0], [60.0, 40.0]])
        assert [t.get_text() for t in ax.texts] == ["a", "c"]
    finally:
        plt.close(ax.figure)
