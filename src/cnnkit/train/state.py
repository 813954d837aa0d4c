"""``RunState``: what survives between epochs, and across a resume (it is saved with every commit)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class RunState:
    """The epochs done, their history, the best selected value and the mean-shape sums."""

    epochs_done: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_value: float = math.inf
    shape_sum: np.ndarray | None = None  # (K, 2) sums of training points, normalised
    shape_count: np.ndarray | None = None
    interrupted: bool = False

    def history_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.history)

    def mean_shape_norm(self) -> np.ndarray | None:
        if self.shape_sum is None or self.shape_count is None:
            return None
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.shape_sum / self.shape_count

    def to_extra(self) -> dict[str, Any]:
        """The state's part of a commit (``extra`` of ``last.state.pt``)."""
        return {"history": self.history, "best_value": self.best_value,
                "shape_sum": None if self.shape_sum is None else self.shape_sum.tolist(),
                "shape_count": None if self.shape_count is None else self.shape_count.tolist()}

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any], epochs_done: int) -> RunState:
        """The state a commit saved (``to_extra``) after ``epochs_done`` epochs."""
        state = cls(epochs_done=epochs_done, history=list(extra["history"]), best_value=float(extra["best_value"]))
        if extra.get("shape_sum") is not None:
            state.shape_sum = np.asarray(extra["shape_sum"], dtype=np.float64)
            state.shape_count = np.asarray(extra["shape_count"], dtype=np.float64)
        return state
