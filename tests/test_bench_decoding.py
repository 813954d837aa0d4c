"""bench/decoding.py: the choice rule and the pixel errors, on synthetic maps (the real run needs a checkpoint)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench" / "decoding.py"
spec = importlib.util.spec_from_file_location("bench_decoding", BENCH)
assert spec is not None and spec.loader is not None
decoding = importlib.util.module_from_spec(spec)
spec.loader.exec_module(decoding)


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
        err = decoding.errors_px(data, decoding.DECODERS["soft-argmax"], torch.tensor([0]), size, flip)
        assert err.shape == (1, 1) and err[0, 0] < 1e-4
    data["points"] = torch.tensor([[[17.0, 14.0]]])  # 3, 4 input px off -> 5 input px -> 10 original px
    assert abs(decoding.errors_px(data, decoding.DECODERS["local"], torch.tensor([0]), size, False)[0, 0] - 10) < 1e-3
