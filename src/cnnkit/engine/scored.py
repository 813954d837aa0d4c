"""What inference hands back: one scored batch (``Scored``), a whole run of them (``Outputs``), and the
one way network points become original-image pixels (``points_to_original``).

Every inference strategy (:mod:`cnnkit.engine.whole_frame`, :mod:`cnnkit.engine.two_pass`,
:mod:`cnnkit.engine.full_frame`) returns ``Scored``; :func:`cnnkit.engine.inference.run_inference`
concatenates them into ``Outputs``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cnnkit import geometry

#: Images per forward pass at inference (predict, evaluate, suggest, reports, the seed API) unless set.
INFERENCE_BATCH = 32

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Scored:
    """One batch through a strategy, as numpy arrays in the batch's row order.

    ``scale``/``offset`` place the frame the mean-shape baseline is drawn in (the network input of
    a whole-frame model, the whole view of a crop model): ``frame_px = original_px * scale + offset``.
    """

    index: np.ndarray  # (B,) table rows (or video frame numbers)
    pred: np.ndarray  # landmarks: (B, K, 2) ORIGINAL pixels, NaN where not predicted; classes: (B, C) probabilities
    true: np.ndarray | None  # landmarks: (B, K, 2) original pixels; classes: (B,) label index; None: unlabelled
    scale: np.ndarray  # (B, 2)
    offset: np.ndarray  # (B, 2)
    likelihood: np.ndarray | None = None  # landmarks: (B, K) in [0, 1] (cnnkit.engine.readout)
    pred_input_px: np.ndarray | None = None  # landmarks in the frame of ``scale``/``offset`` (plots)
    spread: np.ndarray | None = None  # ensembles: (B, K) members' sd per axis, px (cnnkit.engine.ensemble)
    uncertainty: np.ndarray | None = None  # (B, K) calibrated expected error, px (cnnkit.engine.uncertainty)
    loss_sum: float = 0.0  # the loss summed over the batch's rows (when a loss was asked for)
    loss_rows: int = 0


@dataclass
class Outputs:
    """Everything one inference run produced, in row order of the loader (see ``Scored``)."""

    index: np.ndarray
    pred: np.ndarray
    true: np.ndarray | None
    scale: np.ndarray
    offset: np.ndarray
    pred_input_px: np.ndarray | None = None
    loss: float = float("nan")
    likelihood: np.ndarray | None = None
    spread: np.ndarray | None = None
    uncertainty: np.ndarray | None = None

    @classmethod
    def join(cls, parts: Sequence[Scored]) -> Outputs:
        """Concatenate scored batches; the loss is the row-weighted mean over the batches that had one."""
        if not parts:
            empty = np.zeros((0,))
            return cls(index=empty.astype(np.int64), pred=empty, true=empty, scale=empty, offset=empty)

        def cat(name: str) -> np.ndarray | None:
            values = [getattr(p, name) for p in parts]
            return None if any(v is None for v in values) else np.concatenate(values)

        rows = sum(p.loss_rows for p in parts)
        return cls(index=np.concatenate([p.index for p in parts]), pred=np.concatenate([p.pred for p in parts]),
                   true=cat("true"), scale=np.concatenate([p.scale for p in parts]),
                   offset=np.concatenate([p.offset for p in parts]), pred_input_px=cat("pred_input_px"),
                   loss=sum(p.loss_sum for p in parts) / rows if rows else float("nan"),
                   likelihood=cat("likelihood"), spread=cat("spread"), uncertainty=cat("uncertainty"))


def points_to_original(points_norm: torch.Tensor, size: tuple[int, int], scale: torch.Tensor,
                       offset: torch.Tensor, likelihood: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Points normalised to a frame of ``size`` (W, H) -> (ORIGINAL px, frame px, likelihood), NaN masked.

    A point (both coordinates) and its likelihood become NaN where either is not finite, so a
    diverged output never passes for a prediction.

    Shapes:
        points_norm ``[B, K, 2]``; scale, offset ``[B, 2]`` (``frame_px = original_px * scale + offset``);
        likelihood ``[B, K]`` or None.
    """
    in_px = geometry.norm_to_input(points_norm, size)
    points = geometry.input_to_original(in_px, scale.to(in_px.device), offset.to(in_px.device))
    bad = ~torch.isfinite(points).all(dim=-1)
    if likelihood is not None:
        bad = bad | ~torch.isfinite(likelihood)
        likelihood = likelihood.float().masked_fill(bad, float("nan"))
    points[bad] = float("nan")
    return points, in_px, likelihood
