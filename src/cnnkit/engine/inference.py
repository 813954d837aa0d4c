"""One inference pipeline: uint8 frames -> network -> points in original pixels with a likelihood.

Every path that scores images goes through here: validation during training, ``Predictor`` (and
so ``predict``, ``evaluate``, ``suggest`` and the run report), videos, the seed API and the
plots at the end of a run. A **strategy** scores one batch and returns
:class:`cnnkit.engine.scored.Scored`:

- :class:`cnnkit.engine.whole_frame.WholeFrame`: the image resized to the network input (every
  model not trained on views, landmarks and classes);
- :class:`cnnkit.engine.two_pass.TwoPass`: crop-trained models, the whole view then a view around
  the points found;
- :class:`cnnkit.engine.full_frame.FullFrame`: crop-trained heatmap models, the network over the
  whole frame finds the subject, a training view around it gives the points.

Which one: :func:`resolve_views`, the one place that decides. The network is read through
:class:`cnnkit.engine.readout.PointReader` / ``ClassReader`` (test-time flip lives there).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from torch import nn

from cnnkit.config import CropConfig
from cnnkit.engine.full_frame import FullFrame
from cnnkit.engine.readout import ClassReader, PointReader, is_heatmap
from cnnkit.engine.scored import INFERENCE_BATCH, LossFn, Outputs, Scored
from cnnkit.engine.step import StepSetup
from cnnkit.engine.two_pass import TwoPass
from cnnkit.engine.whole_frame import WholeFrame
from cnnkit.errors import ConfigError

__all__ = ["INFERENCE_BATCH", "VIEWS", "Outputs", "Strategy", "make_strategy", "resolve_views", "run_inference",
           "validation_strategy"]

log = logging.getLogger("cnnkit")

#: What ``views`` accepts (crop-trained models; the others always score the whole frame).
VIEWS = ("auto", "two-pass", "full-frame")
#: ``views='auto'`` for a crop-trained heatmap model whose checkpoint records no measured choice (files
#: written before cnnkit measured it): full-frame where the training subject spanned under this share
#: of the frame (``subject_share``), else two-pass. Chosen on two sets (docs/resolution.md).
LEGACY_TWO_PASS_SHARE = 0.25


class Strategy(Protocol):
    """Scores one loader batch (see the module docstring)."""

    name: str

    def eval(self) -> None: ...

    def score(self, batch: Mapping[str, Any], loss_fn: LossFn | None = None) -> Scored: ...


def run_inference(strategy: Strategy, loader: Iterable[Mapping[str, Any]], loss_fn: LossFn | None = None) -> Outputs:
    """Every batch of ``loader`` through ``strategy`` (networks in eval mode); optional mean loss."""
    strategy.eval()
    return Outputs.join([strategy.score(batch, loss_fn) for batch in loader])


def resolve_views(views: str, *, crop: CropConfig | None, heatmap: bool,
                  chosen: Mapping[str, Any] | None = None, subject_share: float | None = None) -> str:
    """The strategy a model is scored with: 'whole-frame', 'two-pass' or 'full-frame'.

    Models not trained on views (``crop`` None) score the whole frame, whatever ``views`` says.
    For crop-trained models ``views='auto'`` takes what the run measured on its validation split
    (``chosen``: the checkpoint's ``views_measured`` record, :mod:`cnnkit.train.choose_views`), else the
    legacy rule on ``subject_share``; 'two-pass' works with every head, 'full-frame' needs a heatmap.
    """
    if views not in VIEWS:
        raise ConfigError(f"views: expected one of {', '.join(VIEWS)}. Received: {views!r}")
    if crop is None:
        return "whole-frame"
    if views == "auto":
        measured = (chosen or {}).get("views")
        if measured in ("two-pass", "full-frame") and (heatmap or measured == "two-pass"):
            return str(measured)
        small = subject_share is None or subject_share < LEGACY_TWO_PASS_SHARE
        return "full-frame" if heatmap and small else "two-pass"
    if views == "full-frame" and not heatmap:
        raise ConfigError("views='full-frame' needs a crop-trained model (data.crop) with a heatmap head; this one "
                          "is a direct-head model. Use views='two-pass' (the default for it).")
    return views


def describe_auto(resolved: str, chosen: Mapping[str, Any] | None, subject_share: float | None) -> str:
    """Why ``views: auto`` resolved as it did, for the log."""
    figures = (chosen or {}).get("val_error_px") or {}
    if figures:
        measured = ", ".join(f"{k} {v:.3g} px" for k, v in figures.items())
        return f"views: auto -> {resolved} (measured on the run's validation split: {measured})"
    share = "not recorded" if subject_share is None else f"{subject_share:.2f} of the frame in training"
    return f"views: auto -> {resolved} (no measured choice in the model; subject span {share}; docs/resolution.md)"


def make_strategy(kind: str, net: nn.Module, setup: StepSetup, *, perm: Sequence[int] | None = None,
                  tta_flip: bool = False, likelihood: bool = True) -> Strategy:
    """The strategy ``kind`` (from :func:`resolve_views`) over ``net``.

    ``perm``: the model's flip permutation (landmarks with left/right pairs), used for the flip
    likelihood of direct heads and by ``tta_flip``; ``likelihood``: read one (False: validation).
    """
    if setup.task == "classes":
        return WholeFrame(ClassReader(net, tta_flip=tta_flip), setup)
    reader = PointReader(net, perm=None if perm is None else list(perm), tta_flip=tta_flip, size=setup.size,
                         likelihood=likelihood)
    if kind == "whole-frame":
        return WholeFrame(reader, setup)
    crop = _crop(setup)
    if kind == "two-pass":
        return TwoPass(reader, setup, crop)
    if kind == "full-frame":
        return FullFrame(reader, net, setup, crop, perm=perm if tta_flip else None)
    raise ConfigError(f"unknown inference strategy {kind!r}")


def validation_strategy(net: nn.Module, setup: StepSetup) -> Strategy:
    """How validation scores during training: the network's own output (no likelihood pass); crop
    models in two passes (one full-frame pass per validation frame costs more than an epoch)."""
    return make_strategy("whole-frame" if setup.crop is None else "two-pass", net, setup, likelihood=False)


def _crop(setup: StepSetup) -> CropConfig:
    if setup.crop is None:
        raise ConfigError("views two-pass/full-frame need a crop-trained model (data.crop)")
    return setup.crop


def heatmap_model(net: nn.Module) -> bool:
    return is_heatmap(net)
