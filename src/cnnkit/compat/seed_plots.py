"""The seed's plots (``plot_image_points``, ``plot_prediction_points``); re-exported by ``seed_api``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cnnkit import geometry
from cnnkit.compat.seed_data import _need_columns
from cnnkit.data.decode import decode_image
from cnnkit.data.images import FileImages


def _show(plt: Any) -> None:
    if "agg" not in str(plt.get_backend()).lower():  # scripts with a window; notebooks show the figure anyway
        plt.show()


def plot_image_points(df: pd.DataFrame, _index_: Any, fullname: str, max_point: int = 11,
                      figsize: tuple[float, float] = (8, 8)) -> Any:  # fmt: skip
    """Seed API: the image of row label ``_index_`` (path in column ``fullname``) with points
    ``x0..``/``y0..`` (original pixels) as crosses."""
    import matplotlib.pyplot as plt

    from cnnkit.viz.plots import show_image_points

    _need_columns(df, [fullname], "fullname")
    file = str(df[fullname].loc[_index_])
    xs = df[[f"x{i}" for i in range(max_point)]].loc[_index_].to_numpy(dtype=np.float64)
    ys = df[[f"y{i}" for i in range(max_point)]].loc[_index_].to_numpy(dtype=np.float64)
    print(file)
    image, _ = decode_image(FileImages().read(file), name=file)
    _, ax = plt.subplots(figsize=figsize)
    show_image_points(image, np.stack([xs, ys], axis=1), ax=ax)
    _show(plt)
    return ax


def plot_prediction_points(imgs_array: np.ndarray, predicted_points: Any, _index_: int = 0,
                           figsize: tuple[float, float] = (8, 8)) -> Any:  # fmt: skip
    """Seed API: resized image ``_index_`` (NHWC) with its predicted ``[x.., y..]`` points."""
    import matplotlib.pyplot as plt

    from cnnkit.viz.plots import show_image_points

    flat = np.asarray(predicted_points[_index_], dtype=np.float64).reshape(-1)
    _, ax = plt.subplots(figsize=figsize)
    show_image_points(np.asarray(imgs_array)[_index_], geometry.flat_to_points(flat), ax=ax)
    _show(plt)
    return ax
