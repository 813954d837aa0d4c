"""Median and Savitzky-Golay filters: lines, steps, spikes, gaps, and the classic filter's coefficients."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import DataError
from cnnkit.trajectories.filters import DEFAULT_MEDIAN_WINDOW, long_gaps, median_filter, savgol_filter

T = np.arange(100, dtype=float)


def test_savgol_keeps_a_straight_line_straight_even_across_short_gaps_and_at_the_ends() -> None:
    line = np.stack([2.0 * T + 3.0, -0.5 * T], axis=1)[:, None, :]  # (T, K=1, 2)
    holed = line.copy()
    holed[[0, 20, 21, 60, 99]] = np.nan  # gaps of 1 and 2 frames, both ends
    np.testing.assert_allclose(savgol_filter(holed, 11), line, atol=1e-9)


def test_median_keeps_a_straight_line_straight_away_from_the_ends() -> None:
    line = 2.0 * T + 3.0
    out = median_filter(line, 5)
    np.testing.assert_allclose(out[2:-2], line[2:-2])
    # at an end the window is cut, so the median lags by up to a quarter window: stated in the docstring
    assert out[0] == line[1] and out[-1] == line[-2]


def test_a_steps_edge_stays_sharp_with_the_median_and_within_the_window_with_savgol() -> None:
    step = np.where(T >= 50, 10.0, 0.0)
    np.testing.assert_array_equal(median_filter(step, 11), step)
    for window in (5, 11, 21):
        out = savgol_filter(step, window)
        far = np.abs(T - 49.5) > window / 2
        np.testing.assert_allclose(out[far], step[far], atol=1e-9)  # untouched beyond half a window
        assert np.interp(5.0, out[40:60], T[40:60]) == pytest.approx(49.5)  # the edge does not move
        assert out.max() - 10.0 < 0.1 * 10.0  # order 2 rings by at most 9 % of the step (measured 8.6 %)


def test_a_single_frame_failure_is_removed_by_the_median_and_spread_by_savgol() -> None:
    flat = np.zeros(60)
    spiked = flat.copy()
    spiked[30] = 40.0
    np.testing.assert_array_equal(median_filter(spiked, 5), flat)
    leaked = savgol_filter(spiked, 11)
    assert 0 < np.abs(leaked[25:36]).max() < 40.0 / 2 and np.count_nonzero(np.abs(leaked) > 1e-9) == 11


def test_savgol_equals_the_classic_coefficients_without_gaps() -> None:
    rng = np.random.default_rng(0)
    signal = rng.normal(size=200)
    window, order, half = 9, 3, 4
    vander = np.vander(np.arange(-half, half + 1), order + 1, increasing=True)
    coeffs = np.linalg.pinv(vander)[0]  # the weights that give the fitted value at the window's centre
    classic = np.convolve(signal, coeffs[::-1], mode="valid")
    np.testing.assert_allclose(savgol_filter(signal, window, order)[half:-half], classic, atol=1e-10)


@pytest.mark.parametrize("smoother", [median_filter, savgol_filter])
def test_gaps_up_to_max_gap_are_filled_and_longer_ones_kept(smoother) -> None:
    line = 0.5 * T
    holed = line.copy()
    holed[10:12] = np.nan  # 2 frames: filled (default max_gap = half the window)
    holed[40:48] = np.nan  # 8 frames: kept missing
    out = smoother(holed, 5)
    assert np.isfinite(out[10:12]).all() and np.isnan(out[40:48]).all()
    # savgol fits the line through the gap; the median takes a neighbouring frame's value (one frame's motion off)
    np.testing.assert_allclose(out[10:12], line[10:12], atol=1e-9 if smoother is savgol_filter else 0.5)
    assert np.isnan(smoother(holed, 5, max_gap=0)[10:12]).all()
    wide = smoother(holed, 21, max_gap=8)  # a window that reaches across the long gap, and the limit raised
    assert np.isfinite(wide[40:48]).all()


def test_filters_keep_the_shape_and_leave_the_input_alone() -> None:
    rng = np.random.default_rng(1)
    points = rng.normal(size=(50, 3, 2))
    points[5, 1] = np.nan
    before = points.copy()
    for out in (median_filter(points), savgol_filter(points)):
        assert out.shape == points.shape
    np.testing.assert_array_equal(points, before)
    np.testing.assert_array_equal(median_filter(points, 4), median_filter(points, 5))  # even -> next odd
    assert DEFAULT_MEDIAN_WINDOW == 5


def test_long_gaps_marks_runs_longer_than_the_limit_per_column() -> None:
    values = np.array([[1.0, np.nan], [np.nan, np.nan], [np.nan, np.nan], [2.0, 3.0]])
    np.testing.assert_array_equal(long_gaps(values, 1), [[False, True], [True, True], [True, True], [False, False]])


@pytest.mark.parametrize(("call", "message"), [
    (lambda: median_filter(np.zeros(10), 0), "window is a number of frames >= 1"),
    (lambda: savgol_filter(np.zeros(10), 5, 5), "savgol order must be from 0 to window - 1 = 4"),
    (lambda: median_filter(np.zeros(10), 5, max_gap=-1), "max_gap must be >= 0"),
    (lambda: median_filter(np.zeros(0)), "a trajectory needs frames"),
])
def test_bad_settings_are_refused_in_one_line(call, message: str) -> None:
    with pytest.raises(DataError, match=message):
        call()
