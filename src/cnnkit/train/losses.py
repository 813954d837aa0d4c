"""Training losses: masked landmark regression losses and cross-entropy for classes.

Convention (landmarks):
    Points travel as ``(B, K, 2)`` tensors in ``(x, y)`` order, in NORMALISED input
    coordinates: ``x = x_px_resized / input_width``, ``y = y_px_resized / input_height``,
    origin at the top-left corner, so a point inside the frame lies in ``[0, 1]``.
    NaN in the target marks a missing point. The model's flat output layout
    ``[x0..xK-1, y0..yK-1]`` is converted by ``cnnkit.geometry.flat_to_points``.

Masking:
    Every landmark loss is the mean of an element-wise penalty over the PRESENT
    coordinates only. A point is missing when either of its coordinates is NaN. A missing
    point changes neither the loss value nor the gradient of any other point, and a batch
    with no present point gives a loss of 0 that still carries a (zero) gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from cnnkit import geometry
from cnnkit.errors import ConfigError, did_you_mean

LossFn = Callable[[Tensor, Tensor], Tensor]

# Wing / soft-wing defaults for NORMALISED coordinates. Both losses satisfy
# loss(s*x; s*params) = s*loss(x; params), so the papers' pixel settings carry over by
# scaling every parameter by 1/width. These are the papers' settings on a 100-px-wide input:
# wing (Feng et al. 2018) w=10 px, epsilon=2 px; soft-wing (Lin et al. 2021, as in mmpose)
# omega1=2 px, omega2=20 px, epsilon=0.5 px.
WING_DEFAULTS = {"w": 0.1, "epsilon": 0.02}
SOFT_WING_DEFAULTS = {"omega1": 0.02, "omega2": 0.2, "epsilon": 0.005}
SMOOTH_L1_DEFAULTS = {"beta": 0.02}  # torch's beta=1.0 would be plain MSE/2 on [0, 1] coordinates


def _as_points(t: Tensor, name: str) -> Tensor:
    if t.dim() == 2:  # the flat model layout (B, 2K) is accepted for convenience
        return geometry.flat_to_points(t)
    if t.dim() != 3 or t.shape[-1] != 2:
        raise ValueError(f"{name}: expected (B, K, 2) points or (B, 2K) flat. Received shape {tuple(t.shape)}")
    return t


def masked_mean(penalty: Callable[[Tensor], Tensor], pred: Tensor, target: Tensor) -> Tensor:
    """Mean of ``penalty(pred - target)`` over the coordinates of present target points.

    Args:
        penalty: element-wise function of the signed difference.
        pred: (B, K, 2) or (B, 2K); must be finite.
        target: same shape as ``pred``; NaN marks a missing point.

    Returns:
        A scalar tensor; 0 (with a zero gradient) when no point is present.
    """
    pred_pts, true_pts = _as_points(pred, "pred"), _as_points(target, "target")
    if pred_pts.shape != true_pts.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    present = ~torch.isnan(true_pts).any(dim=-1, keepdim=True).expand_as(true_pts)
    # Replace missing targets by 0 BEFORE the penalty so no NaN ever enters the graph
    # (a NaN times a zero gradient is still NaN).
    safe_target = torch.where(present, true_pts, torch.zeros_like(true_pts))
    values = torch.where(present, penalty(pred_pts - safe_target), torch.zeros_like(pred_pts))
    count = present.sum().clamp(min=1)
    return values.sum() / count


def _squared(d: Tensor) -> Tensor:
    return d * d


def _absolute(d: Tensor) -> Tensor:
    return d.abs()


def _smooth_l1(d: Tensor, *, beta: float) -> Tensor:
    a = d.abs()
    return torch.where(a < beta, 0.5 * a * a / beta, a - 0.5 * beta)


def wing(d: Tensor, *, w: float = WING_DEFAULTS["w"], epsilon: float = WING_DEFAULTS["epsilon"]) -> Tensor:
    """Wing penalty (Feng et al. 2018), element-wise on the difference ``d``.

    ``w * ln(1 + |d| / epsilon)`` for ``|d| < w``, else ``|d| - C`` with
    ``C = w - w * ln(1 + w / epsilon)`` (continuous at ``|d| = w``).

    Example:
        >>> round(float(wing(torch.tensor(0.02))), 6)  # 0.1 * ln(2)
        0.069315
    """
    a = d.abs()
    c = w - w * math.log(1.0 + w / epsilon)
    return torch.where(a < w, w * torch.log1p(a / epsilon), a - c)


def soft_wing(
    d: Tensor,
    *,
    omega1: float = SOFT_WING_DEFAULTS["omega1"],
    omega2: float = SOFT_WING_DEFAULTS["omega2"],
    epsilon: float = SOFT_WING_DEFAULTS["epsilon"],
) -> Tensor:
    """Soft-wing penalty (Lin et al. 2021), element-wise on the difference ``d``.

    ``|d|`` for ``|d| < omega1``, else ``omega2 * ln(1 + |d| / epsilon) + B`` with
    ``B = omega1 - omega2 * ln(1 + omega1 / epsilon)`` (continuous at ``|d| = omega1``).

    Example:
        >>> round(float(soft_wing(torch.tensor(0.01))), 6)
        0.01
    """
    a = d.abs()
    b = omega1 - omega2 * math.log(1.0 + omega1 / epsilon)
    return torch.where(a < omega1, a, omega2 * torch.log1p(a / epsilon) + b)


def _cross_entropy(logits: Tensor, target: Tensor, *, label_smoothing: float = 0.0) -> Tensor:
    if logits.dim() != 2 or target.dim() != 1 or target.dtype != torch.int64:
        raise ValueError(
            "cross_entropy: expected logits (B, C) and int64 class indices (B,). "
            f"Received {tuple(logits.shape)} and {tuple(target.shape)} {target.dtype}"
        )
    return F.cross_entropy(logits, target, label_smoothing=label_smoothing)


# name -> (penalty or loss, allowed options with defaults)
_LANDMARK: Mapping[str, tuple[Callable[..., Tensor], Mapping[str, float]]] = {
    "mse": (_squared, {}),
    "l1": (_absolute, {}),
    "smooth_l1": (_smooth_l1, SMOOTH_L1_DEFAULTS),
    "wing": (wing, WING_DEFAULTS),
    "soft_wing": (soft_wing, SOFT_WING_DEFAULTS),
}
_CLASSES: Mapping[str, tuple[Callable[..., Tensor], Mapping[str, float]]] = {
    "cross_entropy": (_cross_entropy, {"label_smoothing": 0.0}),
}
_BY_TASK = {"landmarks": _LANDMARK, "classes": _CLASSES}
_DEFAULT_NAME = {"landmarks": "mse", "classes": "cross_entropy"}
LOSS_NAMES: dict[str, tuple[str, ...]] = {task: tuple(table) for task, table in _BY_TASK.items()}


def _check_options(task: str, name: str, opts: Mapping[str, Any], allowed: Mapping[str, float]) -> dict[str, float]:
    for key in opts:
        if key not in allowed:
            hint = f" Allowed: {', '.join(allowed)}." if allowed else " It takes no options."
            raise ConfigError(f"loss {name!r} ({task}): unknown option {key!r}.{did_you_mean(key, allowed)}{hint}")
    merged = {**allowed, **opts}
    for key, value in merged.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"loss {name!r}: option {key!r} must be a finite number. Received: {value!r}")
        if key != "label_smoothing" and value <= 0:
            raise ConfigError(f"loss {name!r}: option {key!r} must be > 0. Received: {value!r}")
    if not 0.0 <= merged.get("label_smoothing", 0.0) < 1.0:
        raise ConfigError(f"loss {name!r}: label_smoothing must be in [0, 1). Received: {merged['label_smoothing']!r}")
    return {k: float(v) for k, v in merged.items()}


def make_loss(task: str, name: str | None = None, **opts: Any) -> LossFn:
    """Build a loss ``(pred, target) -> scalar tensor`` for a task.

    Args:
        task: ``'landmarks'`` or ``'classes'``.
        name: landmarks: ``'mse'`` (the seed's loss, the default), ``'l1'``, ``'smooth_l1'``
            (option ``beta``), ``'wing'`` (``w``, ``epsilon``), ``'soft_wing'``
            (``omega1``, ``omega2``, ``epsilon``); classes: ``'cross_entropy'`` (the default;
            option ``label_smoothing``). Defaults are for normalised coordinates (module
            constants ``WING_DEFAULTS`` etc.).
        **opts: options of the chosen loss.

    Shapes:
        landmarks: pred (B, K, 2) or flat (B, 2K); target the same, NaN = missing (masked).
        classes: pred logits (B, C); target int64 class indices (B,).

    Raises:
        ConfigError: unknown task, loss name or option, or an invalid option value.
    """
    if task not in _BY_TASK:
        raise ConfigError(f"unknown task {task!r} for a loss.{did_you_mean(task, _BY_TASK)} Expected one of: {', '.join(_BY_TASK)}.")
    table = _BY_TASK[task]
    name = _DEFAULT_NAME[task] if name is None else name
    if name not in table:
        raise ConfigError(
            f"unknown loss {name!r} for task {task!r}.{did_you_mean(name, table)} Expected one of: {', '.join(table)}."
        )
    fn, allowed = table[name]
    options = _check_options(task, name, opts, allowed)
    if task == "classes":
        return partial(fn, **options)
    return partial(masked_mean, partial(fn, **options) if options else fn)


#: Width of the blob a point makes on its map, in map cells (stride-4 maps: 4 input pixels).
MAP_SIGMA_CELLS = 1.0


def point_blobs(points: Tensor, shape: tuple[int, int], sigma: float = MAP_SIGMA_CELLS) -> Tensor:
    """Target maps: a Gaussian bump (peak 1) at each present point, zero maps for missing ones.

    Shapes: points ``(B, K, 2)`` normalised corner-origin (NaN = not in the view) -> ``(B, K, H, W)``.

    Example:
        >>> m = point_blobs(torch.tensor([[[0.625, 0.375], [float("nan"), 0.5]]]), (4, 4))
        >>> round(float(m[0, 0, 1, 2]), 3), float(m[0, 1].sum())  # the point's own cell; the missing point's map
        (1.0, 0.0)
    """
    h, w = shape
    present = ~torch.isnan(points).any(dim=-1)  # (B, K)
    safe = torch.nan_to_num(points, nan=-10.0)
    cx = safe[..., 0, None, None] * w  # cell centres sit at i + 0.5
    cy = safe[..., 1, None, None] * h
    xs = torch.arange(w, device=points.device, dtype=points.dtype).view(1, 1, 1, w) + 0.5
    ys = torch.arange(h, device=points.device, dtype=points.dtype).view(1, 1, h, 1) + 0.5
    blobs = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
    return blobs * present[..., None, None]


class MapLoss:
    """``base(pred, target) + weight * BCE(head's logit maps, point_blobs(target))`` (crop training).

    The integral (soft-argmax) loss only ranks the cells of a map against each other, so a view
    with no point in it teaches nothing and a logit means nothing outside its own view. Sigmoid
    cross-entropy on every cell (DeepLabCut's score-map loss) makes a high logit mean "a point is
    here" in any view: what the whole-frame pass needs to find a small subject among distractors.
    Outside training (validation), it is the base loss alone.
    """

    def __init__(self, base: LossFn, head: Any, weight: float) -> None:
        self.base, self.head, self.weight = base, head, float(weight)

    def __call__(self, pred: Tensor, target: Tensor) -> Tensor:
        loss = self.base(pred, target)
        maps = getattr(self.head, "last_maps", None)
        if maps is None or not self.head.training or self.weight == 0:
            return loss
        self.head.last_maps = None  # one loss per forward
        blobs = point_blobs(_as_points(target, "target").float(), (maps.shape[-2], maps.shape[-1]))
        return loss + self.weight * F.binary_cross_entropy_with_logits(maps.float(), blobs)
