"""A point's uncertainty in pixels: a raw signal mapped to the error it predicts.

A model file (``error_calibration`` in its metadata) or an ensemble manifest (``calibration``)
holds an :class:`cnnkit.trajectories.calibrate.ErrorCalibration` fitted on the run's validation
split at the end of training (:mod:`cnnkit.train.uncertainty`, :mod:`cnnkit.train.ensemble`): a
monotone map from the signal it was fitted on (``likelihood``, the ensemble's ``spread``, or
``both``) to the mean distance error in original pixels. :class:`Calibrated` wraps a strategy and
fills ``Scored.uncertainty`` with it, so every caller of the pipeline (predict, evaluate, videos,
suggest) gets the same figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cnnkit.engine.inference import Strategy
from cnnkit.engine.scored import LossFn, Scored
from cnnkit.errors import ConfigError
from cnnkit.trajectories.calibrate import ErrorCalibration


def expected_error(calibration: ErrorCalibration, scored: Scored, landmarks: Sequence[str]) -> np.ndarray:
    """(B, K) expected error px of each point of ``scored`` (NaN where the point or its signal is missing)."""
    names = np.broadcast_to(np.asarray(list(landmarks), dtype=object), scored.pred.shape[:2])
    spread = scored.spread if calibration.signal in ("spread", "both") else None
    likelihood = scored.likelihood if calibration.signal in ("likelihood", "both") else None
    return calibration.expected_error(spread=spread, likelihood=likelihood, landmarks=names)


class Calibrated:
    """``inner``'s scores plus ``uncertainty`` from ``calibration`` (see the module docstring).

    Raises:
        ConfigError: the calibration needs the ensemble spread and ``inner`` is one model.
    """

    def __init__(self, inner: Strategy, calibration: ErrorCalibration, landmarks: Sequence[str], *,
                 has_spread: bool) -> None:
        if calibration.signal in ("spread", "both") and not has_spread:
            raise ConfigError(f"this uncertainty calibration maps the ensemble spread ({calibration.signal}); a single "
                              "model has none. Predict with the ensemble (its folder or ensemble.json)")
        self.inner, self.calibration, self.landmarks = inner, calibration, list(landmarks)
        self.name = inner.name

    def eval(self) -> None:
        self.inner.eval()

    def score(self, batch: Mapping[str, Any], loss_fn: LossFn | None = None) -> Scored:
        scored = self.inner.score(batch, loss_fn)
        scored.uncertainty = expected_error(self.calibration, scored, self.landmarks)
        return scored
