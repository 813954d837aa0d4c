"""Filters for one model's trajectory: a running median and a Savitzky-Golay fit, NaN-aware.

Both run along the first axis (frames) of an array of any trailing shape, e.g. (T, K, 2) px,
and never modify their input. A window is ``window`` frames centred on the frame (odd; an even
number is rounded up). Missing values (NaN) are handled the same way by both:

- a frame's value comes from the finite values inside its window only;
- a run of missing frames no longer than ``max_gap`` (default: half the window) is filled from
  its neighbours; a longer run stays NaN: the filter does not invent a trajectory where the
  model saw nothing for that long (nor can it fill a frame whose whole window is missing);
- at the ends of the video the window is cut, not padded (never zeros, as scipy's ``medfilt`` pads).

On a straight line (constant speed) Savitzky-Golay is exact everywhere, across filled gaps and at
the ends; the median is exact where its window is whole, and elsewhere (ends, windows with a
missing frame) takes a neighbouring frame's value: off by up to a quarter window's motion.

The median is robust: a single-frame failure (a point that jumps to the wrong place for one
frame) is removed whole, and an edge stays sharp; it flattens motion that turns within a window.
Savitzky-Golay fits a polynomial (order 2 by default) by least squares in each window: it keeps
the shape of smooth motion, but a single-frame failure leaks into its neighbours.
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cnnkit.errors import DataError

#: defaults chosen on generated 30 frames/s trajectories (bench/accuracy/smoothing_defaults.py, docs/video.md)
DEFAULT_MEDIAN_WINDOW = 5
DEFAULT_SAVGOL_WINDOW = 11
DEFAULT_SAVGOL_ORDER = 2


def median_filter(values: np.ndarray, window: int = DEFAULT_MEDIAN_WINDOW, *, max_gap: int | None = None) -> np.ndarray:
    """Running median over ``window`` frames, ignoring NaN; see the module's rules for gaps.

    Example:
        >>> median_filter(np.array([0.0, 1.0, 50.0, 3.0, 4.0]), 3).tolist()
        [0.5, 1.0, 3.0, 4.0, 3.5]
    """
    half = _half_window(window)
    columns = _columns(values)
    out = np.empty_like(columns)
    with warnings.catch_warnings():  # windows with no finite value give NaN, as wanted
        warnings.simplefilter("ignore", RuntimeWarning)
        for c in range(columns.shape[1]):
            padded = np.pad(columns[:, c], half, constant_values=np.nan)
            out[:, c] = np.nanmedian(sliding_window_view(padded, 2 * half + 1), axis=-1)
    return _keep_long_gaps(out, columns, _max_gap(max_gap, half)).reshape(np.shape(values))


def savgol_filter(values: np.ndarray, window: int = DEFAULT_SAVGOL_WINDOW, order: int = DEFAULT_SAVGOL_ORDER, *,
                  max_gap: int | None = None) -> np.ndarray:
    """Savitzky-Golay: the value at the centre of a least-squares polynomial fit in each window.

    The fit uses the finite values only (weighted least squares with weights 0 and 1), so with no
    NaN it equals the classic filter, and near the ends it fits the frames there are. A window with
    fewer than ``order + 1`` finite values gives NaN.

    Example:
        >>> savgol_filter(np.arange(7.0) ** 2, 5, 2).round(6).tolist()  # a parabola is kept exactly
        [0.0, 1.0, 4.0, 9.0, 16.0, 25.0, 36.0]
    """
    half = _half_window(window)
    if not 0 <= order < 2 * half + 1:
        raise DataError(f"savgol order must be from 0 to window - 1 = {2 * half}. Received order={order}")
    columns = _columns(values)
    offsets = np.arange(-half, half + 1) / max(half, 1)  # scaled to [-1, 1] for a well-conditioned fit
    powers = offsets[:, None] ** np.arange(2 * order + 1)[None, :]  # (w, 2p+1)
    out = np.empty_like(columns)
    for c in range(columns.shape[1]):
        windows = sliding_window_view(np.pad(columns[:, c], half, constant_values=np.nan), 2 * half + 1)  # (T, w)
        seen = np.isfinite(windows)
        moments = seen.astype(np.float64) @ powers  # (T, 2p+1): sums of u^j over the finite values
        gram = moments[:, _hankel_index(order)]  # (T, p+1, p+1)
        rhs = np.where(seen, windows, 0.0) @ powers[:, : order + 1]  # (T, p+1)
        out[:, c] = _solve_centre(gram, rhs, seen.sum(axis=1) > order)
    return _keep_long_gaps(out, columns, _max_gap(max_gap, half)).reshape(np.shape(values))


def _solve_centre(gram: np.ndarray, rhs: np.ndarray, enough: np.ndarray) -> np.ndarray:
    """The constant term of each window's polynomial; NaN where the window has too few points.

    ``order + 1`` finite values at distinct frames make the normal equations regular (a Vandermonde
    system), so no window that passes ``enough`` is singular.
    """
    centre = np.full(len(gram), np.nan)
    if enough.any():
        centre[enough] = np.linalg.solve(gram[enough], rhs[enough][..., None])[:, 0, 0]
    return centre


def _hankel_index(order: int) -> np.ndarray:
    i = np.arange(order + 1)
    return i[:, None] + i[None, :]


def _half_window(window: int) -> int:
    if int(window) != window or window < 1:
        raise DataError(f"the filter window is a number of frames >= 1. Received window={window!r}")
    return int(window) // 2  # an even window is rounded up to the next odd one


def _max_gap(max_gap: int | None, half: int) -> int:
    if max_gap is None:
        return half
    if max_gap < 0:
        raise DataError(f"max_gap must be >= 0 frames. Received max_gap={max_gap}")
    return int(max_gap)


def _columns(values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0 or len(arr) == 0:
        raise DataError(f"a trajectory needs frames along its first axis. Received shape {arr.shape}")
    return arr.reshape(len(arr), -1)


def _keep_long_gaps(filtered: np.ndarray, raw: np.ndarray, max_gap: int) -> np.ndarray:
    """NaN wherever ``raw`` is missing for a run of more than ``max_gap`` frames. (T, C) -> (T, C)."""
    return np.where(long_gaps(raw, max_gap), np.nan, filtered)


def long_gaps(values: np.ndarray, max_gap: int) -> np.ndarray:
    """True on the frames of each run of NaN longer than ``max_gap`` frames; same shape as ``values``.

    Example:
        >>> long_gaps(np.array([1.0, np.nan, 2.0, np.nan, np.nan, 3.0]), 1).tolist()
        [False, False, False, True, True, False]
    """
    arr = np.asarray(values, dtype=np.float64)
    columns = arr.reshape(len(arr), -1)
    out = np.zeros(columns.shape, dtype=bool)
    for c in range(columns.shape[1]):
        missing = np.concatenate([[False], ~np.isfinite(columns[:, c]), [False]])
        edges = np.flatnonzero(np.diff(missing.astype(np.int8)))
        for start, stop in zip(edges[::2], edges[1::2], strict=True):
            if stop - start > max_gap:
                out[start:stop, c] = True
    return out.reshape(arr.shape)
