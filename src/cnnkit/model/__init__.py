"""Models from specs: ``build_model``, ``SpecNet``, heads, presets and ``summary``."""

from __future__ import annotations

from cnnkit.model.builder import build_model
from cnnkit.model.net import SpecNet
from cnnkit.model.presets import PRESET_NAMES, preset_spec
from cnnkit.model.pretrained import PretrainedReport, load_pretrained
from cnnkit.model.summary import Summary, summary

__all__ = [
    "PRESET_NAMES",
    "PretrainedReport",
    "SpecNet",
    "Summary",
    "build_model",
    "load_pretrained",
    "preset_spec",
    "summary",
]
