"""Optimizer and learning-rate schedule from a TrainConfig."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from cnnkit.config import TrainConfig


def _param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Backbone and head as separate groups, so a pretrained backbone can take a lower lr or be frozen."""
    backbone = getattr(model, "backbone_parameters", None)
    head = getattr(model, "head_parameters", None)
    if backbone is None or head is None or (cfg.backbone_lr is None and not cfg.freeze_backbone):
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": cfg.lr}]
    backbone_params = list(backbone())
    if cfg.freeze_backbone:
        for p in backbone_params:
            p.requires_grad_(False)
        return [{"params": list(head()), "lr": cfg.lr}]
    return [{"params": backbone_params, "lr": cfg.backbone_lr}, {"params": list(head()), "lr": cfg.lr}]


#: How torch runs the update over the parameter tensors: None = torch's own choice (one tensor at a
#: time on the CPU, ``foreach`` on CUDA), 'for-loop' (one tensor at a time), 'foreach' (a few
#: multi-tensor kernels over all of them), 'fused' (one fused kernel; CPU since torch 2.4). The
#: same arithmetic in every case; bench/perf/step_candidates.py times them.
IMPLEMENTATIONS = (None, "for-loop", "foreach", "fused")


def make_optimizer(model: nn.Module, cfg: TrainConfig, *, implementation: str | None = None) -> torch.optim.Optimizer:
    """The configured optimizer over ``model``'s trainable parameters; ``implementation``: one of
    ``IMPLEMENTATIONS``."""
    groups = _param_groups(model, cfg)
    foreach, fused = implementation_flags(implementation)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=foreach, fused=fused)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=foreach, fused=fused)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True,
                           foreach=foreach, fused=fused)


def implementation_flags(name: str | None) -> tuple[bool | None, bool | None]:
    """torch's ``(foreach, fused)`` arguments that select implementation ``name`` (None, None: torch's choice)."""
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"optimizer implementation: expected one of {IMPLEMENTATIONS}. Received: {name!r}")
    return {None: (None, None), "for-loop": (False, None), "foreach": (True, None), "fused": (None, True)}[name]


def make_scheduler(
    opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step schedule over ``epochs`` (stepped after every batch), so its state resumes exactly."""
    if cfg.schedule == "onecycle":
        max_lrs = [g["lr"] for g in opt.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lrs, total_steps=max(1, epochs * steps_per_epoch))
    return torch.optim.lr_scheduler.LambdaLR(opt, _lr_factor(cfg, steps_per_epoch, epochs))


def stretch_schedule(sched: torch.optim.lr_scheduler.LRScheduler, cfg: TrainConfig, steps_per_epoch: int,
                     epochs: int) -> None:
    """Lay ``sched`` (from ``make_scheduler``, not 'onecycle') over ``epochs`` instead, from the step it is at:
    the steps already taken keep their rates, the next one gets the new schedule's."""
    assert isinstance(sched, torch.optim.lr_scheduler.LambdaLR), "only a LambdaLR schedule can be stretched"
    factor = _lr_factor(cfg, steps_per_epoch, epochs)
    sched.lr_lambdas = [factor] * len(sched.lr_lambdas)
    for group, base in zip(sched.optimizer.param_groups, sched.base_lrs, strict=True):
        group["lr"] = base * factor(sched.last_epoch)
    sched._last_lr = [group["lr"] for group in sched.optimizer.param_groups]  # what get_last_lr() reports


def _lr_factor(cfg: TrainConfig, steps_per_epoch: int, epochs: int) -> Callable[[int], float]:
    """The multiplier of ``lr`` at each optimizer step of a run of ``epochs``."""
    total = max(1, epochs * steps_per_epoch)
    warmup = min(total - 1, cfg.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if cfg.schedule == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return factor
