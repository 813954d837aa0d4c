"""bench/accuracy/decoding.py: the choice rule and the harness's pixel errors, on synthetic maps (the real run
needs a checkpoint)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # bench/ is not installed; its scripts put the root on sys.path the same way

from bench.accuracy import decoding  # noqa: E402
from bench.harness.heatmaps import errors_px  # noqa: E402


def _errs(gains: dict[str, float], n: int = 50) -> dict[tuple[str, bool], np.ndarray]:
    """Per-image errors (n, 2): soft-argmax ~5 px, each registered decoder shifted by ``gains[name]`` px."""
    rng = np.random.default_rng(0)
    base = 5 + rng.normal(0, 1, size=(n, 2))
    out = {}
    for label, name, _ in decoding.VARIANTS:
        for flip in (False, True):
            out[(label, flip)] = base + gains.get(name or "", 0.0) + rng.normal(0, 0.05, size=(n, 2))
    return out


def test_default_kept_unless_a_decoder_wins_beyond_the_noise() -> None:
    assert decoding.choose(_errs({})) == "soft-argmax"
    assert decoding.choose(_errs({"dark": 0.01})) == "soft-argmax"  # within noise
    assert decoding.choose(_errs({"dark": -0.5, "local": -0.2})) == "dark"


def test_errors_are_in_original_pixels_and_flip_uses_the_mirror_maps() -> None:
    h, w = 6, 8
    maps = torch.full((1, 1, h, w), -30.0)
    maps[0, 0, 2, 3] = 30.0  # cell centre (3.5, 2.5) cells -> (0.4375, 0.4167) normalised
    data = {"maps": maps, "mirror": maps.flip(-1), "points": torch.tensor([[[14.0, 10.0]]]),  # input px
            "scale": torch.tensor([[0.5, 0.5]]), "offset": torch.zeros(1, 2)}  # original = input / 0.5
    size = (32, 24)  # input px: the point decodes at (14, 10) exactly
    for flip in (False, True):
        err = errors_px(data, decoding.DECODERS["soft-argmax"], size, torch.tensor([0]), flip)
        assert err.shape == (1, 1) and err[0, 0] < 1e-4
    data["points"] = torch.tensor([[[17.0, 14.0]]])  # 3, 4 input px off -> 5 input px -> 10 original px
    assert abs(errors_px(data, decoding.DECODERS["local"], size, torch.tensor([0]), False)[0, 0] - 10) < 1e-3
