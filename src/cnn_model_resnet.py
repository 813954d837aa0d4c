"""Import shim under the seed library's module name ``cnn_model_resnet``: re-exports ``cnnkit.compat.seed_api``.

A notebook written for the seed keeps working with ``import cnn_model_resnet`` / ``from cnn_model_resnet import *``.
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
