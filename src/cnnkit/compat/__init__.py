"""Seed compatibility: the seed library's functions under their seed names (see ``seed_api``).

Nothing in the core imports this package. The top-level modules ``cnn_model_resnet`` and
``dl_utils`` re-export the same names, so ``from cnn_model_resnet import *`` works.
"""

from __future__ import annotations

from cnnkit.compat.seed_api import (
    batch_params,
    checkpoint_path,
    df_x_y,
    df_xy,
    plot_image_points,
    plot_prediction_points,
    predict_model,
    test_model,
    train,
)

__all__ = [
    "batch_params",
    "checkpoint_path",
    "df_x_y",
    "df_xy",
    "plot_image_points",
    "plot_prediction_points",
    "predict_model",
    "test_model",
    "train",
]
