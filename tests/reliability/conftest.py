"""Tiny synthetic data sets and files for the reliability tests (all built in tmp_path)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"

#: A spec small enough that an epoch of 24 images at 16x16 takes well under a second.
TINY_SPEC = [["conv", {"filter_size": 3, "layer_depth": 4}], ["relu"]]


def encode(arr: np.ndarray, fmt: str = "PNG", **save: object) -> bytes:
    """An (H, W, C) or (H, W) uint8 array -> encoded image bytes."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **save)
    return buf.getvalue()


def write_landmark_set(folder: Path, n: int = 24, seed: int = 0, size: tuple[int, int] = (24, 20)) -> Path:
    """``n`` random PNGs of ``size`` = (w, h) plus ``ann.csv`` with landmarks a and b inside them."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        (folder / f"img{i}.png").write_bytes(encode(arr))
        pts = rng.uniform(1, min(size) - 1, 4).round(2)
        rows.append([f"img{i}.png", *pts.tolist()])
    path = folder / "ann.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "a_x", "a_y", "b_x", "b_y"])
        w.writerows(rows)
    return path


@pytest.fixture
def landmark_set(tmp_path: Path) -> Path:
    """``tmp_path/data/ann.csv`` beside 24 PNGs 24x20 (two landmarks)."""
    return write_landmark_set(tmp_path / "data")


@pytest.fixture(scope="session")
def make_set() -> Callable[..., Path]:
    """``make_set(folder, n=24, seed=0, size=(w, h))`` -> the annotation CSV it wrote."""
    return write_landmark_set


@pytest.fixture
def image_bytes() -> Callable[..., bytes]:
    """``image_bytes(arr, fmt='PNG', **save)`` -> encoded bytes."""
    return encode
