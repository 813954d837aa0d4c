"""Tests for cnnkit.model.net.SpecNet: keys, parameter groups, config."""

from __future__ import annotations

import json

import torch

from cnnkit.model.builder import build_model


def test_state_dict_keys_are_readable_and_stable() -> None:
    model = build_model("resnet50", size=(64, 64), outputs=10)
    keys = list(model.state_dict())
    assert keys[0] == "layers.0.weight"
    assert "layers.4.downsample.0.weight" in keys and "layers.7.conv2.weight" in keys
    assert keys[-2:] == ["head_net.fc.weight", "head_net.fc.bias"]
    assert keys == list(build_model("resnet50", size=(64, 64), outputs=10).state_dict())


def test_parameter_groups_split_everything_once() -> None:
    model = build_model([["conv"], ["bn"], ["fc", {"n": 5}]], size=(6, 6), outputs=3)
    backbone = list(model.backbone_parameters())
    head = list(model.head_parameters())
    assert {id(p) for p in backbone}.isdisjoint(id(p) for p in head)
    assert len(backbone) + len(head) == len(list(model.parameters()))
    assert sum(p.numel() for p in head) == 5 * 3 + 3
    opt = torch.optim.SGD(
        [{"params": model.backbone_parameters(), "lr": 0.1}, {"params": model.head_parameters()}], lr=1.0
    )
    assert [g["lr"] for g in opt.param_groups] == [0.1, 1.0]


def test_config_is_json_and_keeps_spec() -> None:
    model = build_model("resnet18", size=(32, 48), outputs=7)
    cfg = model.config()
    assert json.loads(json.dumps(cfg)) == cfg
    assert cfg["size"] == [32, 48] and cfg["head"] == "gap" and cfg["outputs"] == 7 and cfg["channels"] == 3
    assert cfg["spec"][4] == ["res_33", {"depths": [64, 64]}]
    cfg["spec"][0][1]["layer_depth"] = 1
    assert model.spec[0][1]["layer_depth"] == 64  # config() returns a copy


def test_forward_shape_convention() -> None:
    model = build_model([["conv", {"strides": 2}]], size=(10, 6), channels=1, outputs=4)
    assert model(torch.randn(3, 1, 6, 10)).shape == (3, 4)  # [B, C, H, W] with size=(W, H)
