"""Tests for cnnkit.model.summary."""

from __future__ import annotations

import pytest

from cnnkit.errors import ConfigError
from cnnkit.model.builder import build_model
from cnnkit.model.summary import summary


def test_resnet50_totals() -> None:
    s = summary("resnet50", size=(224, 224), outputs=1000)
    assert s.params == 25_557_032 == s.trainable
    assert s.macs == pytest.approx(4.09e9, rel=0.01)
    text = str(s)
    assert "total params: 25,557,032" in text and "(4.09 G)" in text
    assert text.splitlines()[1].split()[:4] == ["#", "type", "output", "(C,"]
    assert len(s.rows) == 21 and s.rows[-1].index == "head" and s.rows[-1].shape == (1000,)


def test_small_model_by_hand() -> None:
    model = build_model([["conv", {"layer_depth": 8}], ["relu"], ["fc", {"n": 5}]], size=(4, 4), outputs=2)
    s = summary(model)
    conv, relu, fc, head = s.rows
    assert (conv.kind, conv.shape, conv.params, conv.macs) == ("conv", (8, 4, 4), 3 * 9 * 8 + 8, 8 * 16 * 27)
    assert (relu.params, relu.macs) == (0, 0)
    assert (fc.shape, fc.params, fc.macs) == ((5, 1, 1), 128 * 5 + 5, 128 * 5)
    assert (head.kind, head.params, head.macs) == ("flatten", 5 * 2 + 2, 10)
    assert s.params == sum(r.params for r in s.rows) and s.macs == sum(r.macs for r in s.rows)
    assert s.input_shape == (3, 4, 4)
    assert model.training  # summary restores the mode


def test_spec_needs_size() -> None:
    with pytest.raises(ConfigError, match="needs size"):
        summary([["relu"]])


def test_default_outputs() -> None:
    assert summary([["relu"]], size=(2, 2)).rows[-1].shape == (22,)
