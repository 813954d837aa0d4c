"""A tiny landmark experiment for ensemble tests: 24 synthetic 40x30 PNGs, 16 train / 7 val / 1 test rows.

Each image has a bright 3x3 dot (landmark p0) and its mirror point (p1); the spec is a tiny direct-head
network and the run 2 epochs of 4 batches, so a member trains in about a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image

SPEC = [["conv", {"filter_size": 3, "layer_depth": 6, "strides": [1, 2, 2, 1]}], ["relu"],
        ["conv", {"filter_size": 3, "layer_depth": 8, "strides": [1, 2, 2, 1]}], ["relu"], ["global_avg_pool"]]
BATCHES_PER_EPOCH = 4  # 16 training rows, batch 4


def write_experiment(folder: Path, output: str = "ens") -> Path:
    """24 images with a bright 3x3 dot (p0) and its mirror point (p1); split column 16/7/1; an experiment file."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        img = rng.integers(0, 60, size=(30, 40, 3), dtype=np.uint8)
        x, y = int(rng.integers(3, 37)), int(rng.integers(3, 27))
        img[y - 1: y + 2, x - 1: x + 2] = 255
        Image.fromarray(img).save(folder / f"img_{i:02d}.png")
        split = "train" if i < 16 else "val" if i < 23 else "test"
        rows.append({"image": f"img_{i:02d}.png", "x0": x + 0.5, "x1": 39.5 - x, "y0": y + 0.5, "y1": 29.5 - y,
                     "split": split})
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    exp = {"model": {"spec": SPEC},
           "data": {"source": "labels.csv", "images": ".", "split": {"column": "split"}, "size": "40x30"},
           "train": {"epochs": 2, "batch_size": 4, "lr": 0.05, "optimizer": "sgd", "seed": 3, "device": "cpu",
                     "plots": False, "schedule": "none"},
           "augment": None, "output": output}
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return path
