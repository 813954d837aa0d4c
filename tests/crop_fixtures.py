"""A tiny small-subject data set: a 40 px textured subject in a large, faintly textured frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cnnkit.data.sources import read_annotations
from cnnkit.data.table import AnnotationTable

SUBJECT = 40  # px, side of the subject


def subject_image(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 frame and its (3, 2) landmarks: the subject's top-left, top-right and bottom centre."""
    img = (rng.random((height, width, 3)) * 40 + 60).astype(np.uint8)
    x0 = float(rng.uniform(20, width - SUBJECT - 20))
    y0 = float(rng.uniform(20, height - SUBJECT - 20))
    xi, yi = int(x0), int(y0)
    yy, xx = np.mgrid[0:SUBJECT, 0:SUBJECT]
    patch = np.stack([220 - 3 * yy, 40 + 4 * xx, 200 * ((xx // 8 + yy // 8) % 2)], axis=-1)
    img[yi:yi + SUBJECT, xi:xi + SUBJECT] = np.clip(patch, 0, 255).astype(np.uint8)
    points = np.array([[xi, yi], [xi + SUBJECT, yi], [xi + SUBJECT / 2, yi + SUBJECT]], dtype=np.float64)
    return img, points


def small_subject_table(folder: Path, n: int = 40, *, size: tuple[int, int] = (640, 480), seed: int = 0,
                        fmt: str = "png", flip_pairs: list[tuple[str, str]] | None = None) -> AnnotationTable:
    """``n`` frames on disk and their table (landmarks a, b, c)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        img, pts = subject_image(rng, *size)
        path = folder / f"f{i:03d}.{fmt}"
        Image.fromarray(img).save(path, quality=95) if fmt == "jpg" else Image.fromarray(img).save(path)
        rows.append({"image": str(path), "a_x": pts[0, 0], "b_x": pts[1, 0], "c_x": pts[2, 0],
                     "a_y": pts[0, 1], "b_y": pts[1, 1], "c_y": pts[2, 1]})
    return read_annotations(pd.DataFrame(rows), flip_pairs=flip_pairs)
