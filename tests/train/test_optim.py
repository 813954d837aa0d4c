from __future__ import annotations

import pytest
import torch

from cnnkit.config import TrainConfig
from cnnkit.model.builder import build_model
from cnnkit.train.optim import make_optimizer, make_scheduler

SPEC = [["conv", {"filter_size": 3, "layer_depth": 4}], ["relu"]]


def _model():
    return build_model(SPEC, size=(8, 8), channels=3, outputs=4, head="gap")


def test_backbone_lr_gives_two_groups() -> None:
    model = _model()
    opt = make_optimizer(model, TrainConfig(lr=1e-3, backbone_lr=1e-4))
    assert [g["lr"] for g in opt.param_groups] == [1e-4, 1e-3]
    head_ids = {id(p) for p in model.head_parameters()}
    assert {id(p) for p in opt.param_groups[1]["params"]} == head_ids


def test_freeze_backbone_trains_only_the_head() -> None:
    model = _model()
    opt = make_optimizer(model, TrainConfig(freeze_backbone=True))
    assert len(opt.param_groups) == 1
    assert all(not p.requires_grad for p in model.backbone_parameters())
    before = [p.clone() for p in model.backbone_parameters()]
    model(torch.rand(2, 3, 8, 8)).sum().backward()
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, model.backbone_parameters(), strict=True))


@pytest.mark.parametrize(("schedule", "warmup"), [("cosine", 0), ("cosine", 1), ("onecycle", 0)])
def test_schedules_decay_to_near_zero(schedule: str, warmup: int) -> None:
    model = _model()
    cfg = TrainConfig(lr=1.0, epochs=2, schedule=schedule, warmup_epochs=warmup)
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg, steps_per_epoch=5, epochs=cfg.epochs_for(5))
    lrs = []
    for _ in range(10):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert max(lrs) <= 1.0 + 1e-9 and lrs[-1] < 0.05
    if warmup:
        assert lrs[0] < lrs[4]  # still warming up in epoch 1


def test_warmup_cosine_is_read_as_cosine_it_always_equalled() -> None:
    assert TrainConfig(schedule="warmup_cosine", warmup_epochs=1).schedule == "cosine"
    with pytest.raises(ValueError, match="schedule: unknown value 'cosin'. Did you mean 'cosine'"):
        TrainConfig(schedule="cosin")


def _trained_weights(optimizer: str, implementation: str | None) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = _model()
    opt = make_optimizer(model, TrainConfig(optimizer=optimizer, weight_decay=1e-4), implementation=implementation)
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        loss = model(torch.rand(4, 3, 8, 8, generator=gen)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize("implementation", ["foreach", "fused"])
def test_optimizer_implementations_take_the_same_steps(optimizer: str, implementation: str) -> None:
    loop = _trained_weights(optimizer, "for-loop")
    other = _trained_weights(optimizer, implementation)
    start = [p.detach() for p in (torch.manual_seed(0), _model())[1].parameters()]
    assert any(not torch.equal(a, s) for a, s in zip(loop, start, strict=True))  # the steps moved the weights
    for a, b in zip(loop, other, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_optimizer_implementation_reaches_torch_and_unknown_names_fail() -> None:
    model = _model()
    assert make_optimizer(model, TrainConfig(), implementation="foreach").defaults["foreach"] is True
    assert make_optimizer(model, TrainConfig(), implementation="fused").defaults["fused"] is True
    assert make_optimizer(model, TrainConfig()).defaults["foreach"] is None  # torch's own choice by default
    with pytest.raises(ValueError, match="expected one of"):
        make_optimizer(model, TrainConfig(), implementation="vectorised")
