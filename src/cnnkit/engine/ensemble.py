"""The ensemble strategy: several models score the same batch; one answer with their spread.

An ensemble (``cnnkit train`` with ``train.ensemble: N``, :mod:`cnnkit.train.ensemble`) is scored by
:class:`EnsembleStrategy`, which wraps each member's own strategy (whole frame, two-pass or
full-frame, as that member resolved it) and combines their :class:`cnnkit.engine.scored.Scored`:

- landmarks: the members' **median** point per landmark (NaN-aware), the **mean likelihood**,
  and the **spread**: the members' standard deviation per axis in px (the root mean square of
  the x and y sd), the same statistic as ``cnnkit smooth``'s ``<name>_spread``
  (:func:`cnnkit.trajectories.eks.ensemble_statistics`); NaN where fewer than 2 members have the point;
- classes: the mean of the members' probabilities.

The members must read images the same way (task, landmark or class names, input size, crop,
normalisation, colour, letterbox): :func:`check_members` refuses others, naming the difference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cnnkit import geometry
from cnnkit.engine.inference import Strategy
from cnnkit.engine.scored import LossFn, Scored
from cnnkit.errors import ConfigError
from cnnkit.trajectories.eks import ensemble_statistics

#: Metadata keys that must be equal in every member: they decide what the members are shown and say.
SHARED_KEYS = ("task", "landmarks", "classes", "size", "channels", "grayscale", "letterbox", "crop", "normalisation")


def check_members(metas: Sequence[Mapping[str, Any]], names: Sequence[str]) -> None:
    """Refuse members that do not read the same images the same way or predict different things.

    Args:
        metas: each member's model metadata (:func:`cnnkit.io.checkpoint.read_meta`).
        names: how to name each member in the message (its file).
    """
    if not metas:
        raise ConfigError("an ensemble needs at least one member model")
    first = metas[0]
    for meta, name in zip(metas[1:], names[1:], strict=True):
        for key in SHARED_KEYS:
            if meta.get(key) != first.get(key):
                raise ConfigError(f"{name}: {key} {_short(meta.get(key))} differs from {names[0]}'s "
                                  f"{_short(first.get(key))}; the members of an ensemble must share the task, the "
                                  f"names and how images are read. Train them with one experiment file "
                                  f"(train.ensemble: N)")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class EnsembleStrategy:
    """Score a batch with every member's strategy and combine them (module docstring).

    ``loss``: the mean of the members' losses (each measured on its own output).
    """

    def __init__(self, members: Sequence[Strategy]) -> None:
        if not members:
            raise ConfigError("an ensemble needs at least one member")
        self.members = list(members)
        kinds = sorted({m.name for m in self.members})
        self.name = f"ensemble of {len(self.members)} ({', '.join(kinds)})"

    def eval(self) -> None:
        for member in self.members:
            member.eval()

    def score(self, batch: Mapping[str, Any], loss_fn: LossFn | None = None) -> Scored:
        parts = [m.score(batch, loss_fn) for m in self.members]
        return combine(parts)


def combine(parts: Sequence[Scored]) -> Scored:
    """The members' scores of one batch -> the ensemble's (module docstring). Rows must be the same."""
    first = parts[0]
    for part in parts[1:]:
        if not np.array_equal(part.index, first.index):
            raise ConfigError("ensemble members scored different rows of a batch; this is a bug, please report it")
    loss_sum = float(np.mean([p.loss_sum for p in parts]))
    if first.pred.ndim == 2:  # classes: (B, C) probabilities
        return Scored(index=first.index, pred=np.mean([p.pred for p in parts], axis=0), true=first.true,
                      scale=first.scale, offset=first.offset, loss_sum=loss_sum, loss_rows=first.loss_rows)
    points = np.stack([p.pred for p in parts])  # (M, B, K, 2)
    liks = [p.likelihood for p in parts]
    lik = None if any(v is None for v in liks) else np.stack(liks)  # type: ignore[arg-type]
    centre, _, spread, mean_lik = ensemble_statistics(points, lik)
    in_px = geometry.original_to_input(centre, first.scale.astype(np.float64), first.offset.astype(np.float64))
    return Scored(index=first.index, pred=centre, true=first.true, scale=first.scale, offset=first.offset,
                  likelihood=mean_lik, pred_input_px=in_px, spread=spread if len(parts) > 1 else None,
                  loss_sum=loss_sum, loss_rows=first.loss_rows)
