"""The performance data: generated photo-like 1024x768 images in bench/out and landmark tables over them.

Every performance script that reads images reads these (``img0000.jpg`` ... made once, kept between
runs and shared by the scripts), so their figures describe the same bytes. Textured on purpose
(multi-scale noise, shapes, fine grain; not flat colour): JPEG's decode time depends on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from bench.harness import OUT

K = 20  # landmarks per image
#: format -> (file suffix, PIL save keywords); PNG's inflate speed barely depends on the level
FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    "jpeg": (".jpg", {"format": "JPEG", "quality": 90}),
    "png": (".png", {"format": "PNG", "compress_level": 1}),
}


def make_image(seed: int, w: int = 1024, h: int = 768) -> Image.Image:
    """Photo-like texture: noise at 4 scales, random shapes (edges), fine grain."""
    rng = np.random.default_rng(seed)
    acc = np.zeros((h, w, 3), np.float32)
    for cell, amp in ((256, 0.5), (64, 0.25), (16, 0.15), (4, 0.1)):
        grid = rng.random((h // cell + 2, w // cell + 2, 3)).astype(np.float32)
        up = Image.fromarray((grid * 255).astype(np.uint8)).resize(
            (w + 2 * cell, h + 2 * cell), Image.BICUBIC
        )
        acc += amp * np.asarray(up, np.float32)[:h, :w]
    im = Image.fromarray(np.clip(acc, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(12):
        x, y = rng.integers(0, w), rng.integers(0, h)
        box = [int(x), int(y), int(x + rng.integers(20, 300)), int(y + rng.integers(20, 300))]
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    grain = rng.integers(-4, 5, (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(im, np.int16) + grain, 0, 255).astype(np.uint8))


def _path(i: int, fmt: str) -> Path:
    return OUT / f"img{i:04d}{FORMATS[fmt][0]}"


def _make(job: tuple[int, tuple[str, ...]]) -> None:
    i, formats = job
    im = make_image(i)
    for fmt in formats:
        im.save(_path(i, fmt), **FORMATS[fmt][1])


def generated(n: int, formats: Sequence[str] = ("jpeg",), procs: int = 1) -> dict[str, list[Path]]:
    """``n`` images per format in bench/out, made where missing (in ``procs`` processes)."""
    OUT.mkdir(parents=True, exist_ok=True)
    todo = [(i, tuple(formats)) for i in range(n) if not all(_path(i, f).exists() for f in formats)]
    if procs > 1 and len(todo) > 1:
        with Pool(procs) as pool:
            pool.map(_make, todo)
    else:
        for job in todo:
            _make(job)
    return {fmt: [_path(i, fmt) for i in range(n)] for fmt in formats}


def jpegs(n: int, procs: int = 1) -> list[Path]:
    """The first ``n`` generated JPEGs (quality 90)."""
    return generated(n, ("jpeg",), procs)["jpeg"]


def landmark_table(images: Sequence[Path | str], source: str = "generated") -> Any:
    """An AnnotationTable of ``images`` with K seeded random landmarks each, in original pixels."""
    import pandas as pd

    from cnnkit.data.table import AnnotationTable

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"image": [str(p) for p in images]})
    for k in range(K):
        df[f"p{k}_x"] = rng.uniform(50, 974, len(df)).round(1)
        df[f"p{k}_y"] = rng.uniform(50, 718, len(df)).round(1)
    return AnnotationTable(df, landmarks=tuple(f"p{k}" for k in range(K)), source=source)


def landmark_csv(paths: Sequence[Path], folder: Path = OUT / "e2e") -> Path:
    """``landmark_table(paths)`` as ``folder/landmarks.csv`` (image, p0_x, p0_y, ...): the Keras peer reads it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "landmarks.csv"
    landmark_table(paths).df.to_csv(path, index=False)
    return path


def read_table(csv: Path) -> Any:
    """The AnnotationTable of a ``landmark_csv`` file."""
    import pandas as pd

    from cnnkit.data.table import AnnotationTable

    return AnnotationTable(pd.read_csv(csv), landmarks=tuple(f"p{k}" for k in range(K)), source=str(csv))
