"""Plots from arrays and DataFrames (never from other cnnkit modules); matplotlib loaded lazily."""

from __future__ import annotations

from cnnkit.viz.plots import plot_classes, plot_history, plot_landmarks, show_image_points

__all__ = ["plot_classes", "plot_history", "plot_landmarks", "show_image_points"]
