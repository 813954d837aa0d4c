"""Trajectories: smoothing and calibrated uncertainty of per-frame video predictions.

The bottom of the layering beside ``errors`` and ``atomic``: numpy and pandas only (no torch, no
scipy), arrays in and out, so training, inference, evaluation and reports can all call it.

- :mod:`.kalman`: the random-walk Kalman filter and smoother; the strength by maximum likelihood;
- :mod:`.eks`: the ensemble Kalman smoother (the package ``ensemble-kalman-smoother``'s single-camera model);
- :mod:`.filters`: NaN-aware running median and Savitzky-Golay filters for one model;
- :mod:`.outliers`: DeepLabCut's ``jump``, ``uncertain`` and ``fitting`` scores per frame;
- :mod:`.calibrate`: a monotone map from an uncertainty signal to the expected error in px;
- :mod:`.reliability`: ROC AUC and the reliability table;
- :mod:`.tables`, :mod:`.smoothing`: prediction CSVs in, smoothed CSV out (``cnnkit smooth``);
- :mod:`.synth`: generated trajectories with known noise (tests, figures, defaults).
"""

from __future__ import annotations

from cnnkit.trajectories.calibrate import ErrorCalibration, fit_calibration
from cnnkit.trajectories.eks import EnsembleSmoothing, ensemble_kalman_smoother
from cnnkit.trajectories.filters import median_filter, savgol_filter
from cnnkit.trajectories.outliers import OutlierScores, frame_flags, outlier_scores
from cnnkit.trajectories.reliability import calibration_error, error_auc, reliability_table, roc_auc
from cnnkit.trajectories.smoothing import Smoothed, smooth

__all__ = [
    "EnsembleSmoothing", "ErrorCalibration", "OutlierScores", "Smoothed", "calibration_error",
    "ensemble_kalman_smoother", "error_auc", "fit_calibration", "frame_flags", "median_filter",
    "outlier_scores", "reliability_table", "roc_auc", "savgol_filter", "smooth",
]
