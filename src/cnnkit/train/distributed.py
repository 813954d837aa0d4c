"""Training's side of scale-out: the ranks' validation outputs merged into one.

The process group itself (``DistContext``, ``distributed``) lives in :mod:`cnnkit.engine.distributed`,
shared with prediction over a video archive; it is re-exported here for the training code.
"""

from __future__ import annotations

import numpy as np

from cnnkit.engine.distributed import SINGLE, DistContext, distributed
from cnnkit.engine.scored import Outputs

__all__ = ["SINGLE", "DistContext", "distributed", "merge_outputs"]


def merge_outputs(parts: list[Outputs]) -> Outputs:
    """The ranks' inference outputs as one, in table-row order, as a single process would see them.

    Every array is concatenated and sorted by ``index``; the loss is the row-weighted mean of
    the parts' mean losses (the sum over rows divided by the number of rows). Each row must
    come from exactly one part (validation shards are unpadded).
    """
    parts = [p for p in parts if len(p.index)]
    if len(parts) <= 1:
        return parts[0] if parts else Outputs(*(np.zeros((0,)),) * 5)
    order = np.argsort(np.concatenate([p.index for p in parts]), kind="stable")

    def cat(arrays: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(arrays)[order]

    n = np.array([len(p.index) for p in parts], dtype=np.float64)
    losses = np.array([p.loss for p in parts], dtype=np.float64)
    px, lik = [p.pred_input_px for p in parts], [p.likelihood for p in parts]
    return Outputs(
        index=cat([p.index for p in parts]), pred=cat([p.pred for p in parts]),
        true=None if any(p.true is None for p in parts) else cat([p.true for p in parts]),  # type: ignore[misc]
        scale=cat([p.scale for p in parts]), offset=cat([p.offset for p in parts]),
        pred_input_px=None if any(x is None for x in px) else cat(px),  # type: ignore[arg-type]
        loss=float((losses * n).sum() / n.sum()),
        likelihood=None if any(x is None for x in lik) else cat(lik),  # type: ignore[arg-type]
    )
