"""From a raw uncertainty to an expected error in pixels, fitted on a validation split.

A raw signal (the ensemble's spread or EKS's posterior sd in px, a heatmap likelihood, or both)
ranks points by doubt but is not an error: an ensemble's spread underestimates the error when the
members share their mistakes, and a likelihood has no unit. :func:`fit_calibration` fits a
monotone map from the signal to the mean error observed on validation points, and
:class:`ErrorCalibration` applies it. Two maps:

- ``"isotonic"``: the non-decreasing step function of the score that fits the mean error best
  (pool-adjacent-violators on at most 64 equal-count groups), interpolated between its knots;
  assumes nothing about the shape; needs a few hundred points.
- ``"rayleigh"``: the 2-D error is Gaussian with sd ``c * score`` per axis, so its length is
  Rayleigh and its mean ``c * score * sqrt(pi/2)``; ``c`` by the method of moments; for px-valued
  scores only; right when the error is proportional to the score, wrong when it has a floor.

Given each point's landmark, both first scale the score by a Rayleigh ``c`` per landmark (so a
landmark whose errors run larger than its spread says is put right), and the isotonic map is then
fitted on the scaled score. Measured on generated validation sets (``bench/accuracy/calibration_choice.py``,
docs/video.md): fitted on 1000 points, isotonic with landmarks is within 0.15 px of the observed
mean error in every scenario (0.3-0.5 px on 200 points); Rayleigh is better only when the error
is exactly proportional to the spread (0.05 px), and off by 0.5 px when the error has a floor.

The score: ``spread`` px as is; ``1 - likelihood``; or, for both, a px-valued score fitted by
least squares of log(error) on log(spread) and log(likelihood). A calibration is a few numbers
(:meth:`ErrorCalibration.to_dict` is JSON) so it can live in a checkpoint's metadata.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnkit.errors import DataError

METHODS = ("isotonic", "rayleigh")
SIGNALS = ("spread", "likelihood", "both")
MAX_KNOTS = 64
_EPS = 1e-3  # keeps logs finite at zero spread, zero likelihood or zero error
_ALL = "*"  # the scale used for a landmark without its own
FORMAT = 1


@dataclass(frozen=True)
class ErrorCalibration:
    """A fitted map from uncertainty signals to the expected distance error, px. See the module."""

    method: str
    signal: str
    weights: tuple[float, ...] = ()  # signal "both": log score = w0 + w1 log(spread) + w2 log(likelihood)
    knots: tuple[tuple[float, float], ...] = ()  # isotonic: (score, expected error px), increasing
    scales: Mapping[str, float] = field(default_factory=dict)  # landmark -> c; "*" for any other; {}: none

    def score(self, spread: np.ndarray | None = None, likelihood: np.ndarray | None = None) -> np.ndarray:
        """The 1-D score the map is a function of (higher = less sure)."""
        return _score(self.signal, spread, likelihood, self.weights)

    def expected_error(self, spread: np.ndarray | None = None, likelihood: np.ndarray | None = None, *,
                       landmarks: np.ndarray | Sequence[str] | None = None) -> np.ndarray:
        """Expected distance error, px, of each point (same shape as the signals).

        ``landmarks`` (one name per point) picks each point's scale when the map was fitted with
        landmarks; unknown names and None use the pooled scale.
        """
        s = self.score(spread, likelihood)
        if self.scales:
            s = s * self._scales_for(landmarks, s.shape)
        if self.method == "rayleigh":
            return s * math.sqrt(math.pi / 2.0)
        xs, ys = np.array(self.knots).T
        return np.where(np.isfinite(s), np.interp(s, xs, ys), np.nan)

    def _scales_for(self, landmarks: np.ndarray | Sequence[str] | None, shape: tuple[int, ...]) -> np.ndarray:
        pooled = self.scales[_ALL]
        if landmarks is None:
            return np.full(shape, pooled)
        names = np.broadcast_to(np.asarray(landmarks, dtype=object), shape)
        return np.vectorize(lambda n: self.scales.get(str(n), pooled), otypes=[float])(names)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` reads it back."""
        return {"format": FORMAT, "method": self.method, "signal": self.signal, "weights": list(self.weights),
                "knots": [list(k) for k in self.knots], "scales": dict(self.scales)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ErrorCalibration:
        """Read :meth:`to_dict`'s output (e.g. from checkpoint metadata); unknown formats are refused."""
        if data.get("format") != FORMAT or data.get("method") not in METHODS or data.get("signal") not in SIGNALS:
            raise DataError(f"not an error calibration of format {FORMAT}: format={data.get('format')!r}, "
                            f"method={data.get('method')!r}, signal={data.get('signal')!r}")
        return cls(data["method"], data["signal"], tuple(float(w) for w in data.get("weights", ())),
                   tuple((float(a), float(b)) for a, b in data.get("knots", ())),
                   {str(k): float(v) for k, v in (data.get("scales") or {}).items()})


def fit_calibration(error_px: np.ndarray, *, spread: np.ndarray | None = None, likelihood: np.ndarray | None = None,
                    method: str = "isotonic", landmarks: np.ndarray | Sequence[str] | None = None) -> ErrorCalibration:
    """Fit the map from signals to the mean observed error. Points with a NaN anywhere are left out.

    Args:
        error_px: distance between prediction and truth of each validation point, px.
        spread: a px-valued uncertainty per point (ensemble spread, EKS posterior sd), or None.
        likelihood: a likelihood per point in [0, 1], or None. At least one signal is needed.
        method: ``"isotonic"`` or ``"rayleigh"`` (px-valued scores only: spread, or both).
        landmarks: one name per point: a Rayleigh scale per landmark (plus the pooled one).
    """
    signal = "both" if spread is not None and likelihood is not None else "spread" if spread is not None \
        else "likelihood" if likelihood is not None else ""
    if not signal:
        raise DataError("fit_calibration needs an uncertainty signal: spread=..., likelihood=... or both")
    if method not in METHODS:
        raise DataError(f"calibration method must be one of {', '.join(METHODS)}. Received {method!r}")
    if method == "rayleigh" and signal == "likelihood":
        raise DataError("the rayleigh calibration needs a px-valued signal (spread); use method='isotonic' "
                        "for a likelihood alone")
    error = np.asarray(error_px, dtype=np.float64).ravel()
    weights = _fit_weights(error, spread, likelihood) if signal == "both" else ()
    score = _score(signal, spread, likelihood, weights).ravel()
    keep = np.isfinite(score) & np.isfinite(error)
    if keep.sum() < 2:
        raise DataError(f"fit_calibration needs 2 or more points with a finite error and signal; got {keep.sum()}")
    score, error = score[keep], error[keep]
    names = None if landmarks is None else np.asarray(landmarks, dtype=object).ravel()[keep]
    scales = _rayleigh_scales(score, error, names) if method == "rayleigh" or names is not None else {}
    if method == "rayleigh":
        return ErrorCalibration(method, signal, weights, scales=scales)
    scaled = score * ErrorCalibration(method, signal, scales=scales)._scales_for(names, score.shape) if scales else score
    return ErrorCalibration(method, signal, weights, knots=_isotonic_knots(scaled, error), scales=scales)


def _score(signal: str, spread: np.ndarray | None, likelihood: np.ndarray | None,
           weights: tuple[float, ...]) -> np.ndarray:
    if signal in ("spread", "both") and spread is None or signal in ("likelihood", "both") and likelihood is None:
        raise DataError(f"this calibration was fitted on the signal {signal!r}; pass "
                        + {"spread": "spread=", "likelihood": "likelihood=", "both": "spread= and likelihood="}[signal])
    if signal == "spread":
        return np.asarray(spread, dtype=np.float64)
    if signal == "likelihood":
        return 1.0 - np.asarray(likelihood, dtype=np.float64)
    log_terms = _log_terms(np.asarray(spread, dtype=np.float64), np.asarray(likelihood, dtype=np.float64))
    return np.exp(np.tensordot(log_terms, np.asarray(weights), axes=([-1], [0])))


def _log_terms(spread: np.ndarray, likelihood: np.ndarray) -> np.ndarray:
    """(..., 3): 1, log(spread), log(likelihood)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([np.ones_like(spread), np.log(np.clip(spread, 0, None) + _EPS),
                         np.log(np.clip(likelihood, 0, 1) + _EPS)], axis=-1)


def _fit_weights(error: np.ndarray, spread: np.ndarray | None, likelihood: np.ndarray | None) -> tuple[float, ...]:
    """Least squares of log(error) on (1, log spread, log likelihood): the combined score's weights."""
    terms = _log_terms(np.asarray(spread, dtype=np.float64), np.asarray(likelihood, dtype=np.float64)).reshape(-1, 3)
    target = np.log(np.clip(error, 0, None) + _EPS)
    keep = np.isfinite(terms).all(axis=1) & np.isfinite(target)
    if keep.sum() < 3:
        raise DataError(f"fit_calibration needs 3 or more points with a finite error and both signals; got {keep.sum()}")
    w, *_ = np.linalg.lstsq(terms[keep], target[keep], rcond=None)
    return tuple(float(v) for v in w)


def _isotonic_knots(score: np.ndarray, error: np.ndarray) -> tuple[tuple[float, float], ...]:
    """Non-decreasing least-squares fit of error on score, on equal-count groups of the sorted scores."""
    order = np.argsort(score, kind="stable")
    groups = np.array_split(order, min(MAX_KNOTS, len(order)))
    xs = np.array([score[g].mean() for g in groups])
    ys = pool_adjacent_violators(np.array([error[g].mean() for g in groups]), np.array([len(g) for g in groups]))
    return tuple((float(x), float(y)) for x, y in zip(xs, ys, strict=True))


def pool_adjacent_violators(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence closest to ``values`` in weighted least squares.

    Example:
        >>> pool_adjacent_violators(np.array([1.0, 3.0, 2.0, 4.0]), np.ones(4)).tolist()
        [1.0, 2.5, 2.5, 4.0]
    """
    means: list[float] = []
    sizes: list[float] = []
    counts: list[int] = []
    for v, w in zip(values.astype(float), weights.astype(float), strict=True):
        means.append(v)
        sizes.append(w)
        counts.append(1)
        while len(means) > 1 and means[-2] > means[-1]:  # merge the last two blocks into their weighted mean
            w_sum = sizes[-2] + sizes[-1]
            merged = (means[-2] * sizes[-2] + means[-1] * sizes[-1]) / w_sum
            means[-2:], sizes[-2:], counts[-2:] = [merged], [w_sum], [counts[-2] + counts[-1]]
    return np.repeat(means, counts)


def _rayleigh_scales(score: np.ndarray, error: np.ndarray, names: np.ndarray | None) -> dict[str, float]:
    """c of error ~ Rayleigh(c * score) by the method of moments: sum(error) = c sqrt(pi/2) sum(score).

    Not the maximum-likelihood c (mean(error² / score²) / 2): that one is ruled by the points with
    the smallest scores, and on generated data with a floor under the error it was off by 2x.
    """
    def scale(mask: np.ndarray) -> float:
        total = score[mask].sum()
        return float(error[mask].sum() / (total * math.sqrt(math.pi / 2.0))) if total > 0 else float("nan")

    scales = {_ALL: scale(np.ones(len(score), dtype=bool))}
    if not math.isfinite(scales[_ALL]):
        raise DataError("the rayleigh calibration needs points with a spread above 0")
    if names is not None:
        own = {str(n): scale(names == n) for n in dict.fromkeys(names)}
        scales.update({n: c for n, c in own.items() if math.isfinite(c)})  # the others use the pooled scale
    return scales
