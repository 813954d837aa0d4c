"""Small copies of table images, with their points mapped onto them, for the report's thumbnails."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from cnnkit.data.decode import DECODE_ERRORS, decode_image, exif_orientation, oriented_size
from cnnkit.data.images import ImageSource
from cnnkit.errors import DataError
from cnnkit.viz.report_figures import overlay_jpeg

THUMB_PX = 200  # longest side of a thumbnail: ~10 kB as JPEG, enough to see where a point went


def thumbnail(source: ImageSource, name: str, max_side: int = THUMB_PX) -> tuple[np.ndarray, np.ndarray] | None:
    """(image (h, w, 3) uint8 no larger than ``max_side``, (sx, sy) scale from original pixels), or
    None when the image cannot be read (the page then says so instead of failing)."""
    try:
        data = source.read(name)
        with Image.open(io.BytesIO(data)) as im:
            width, height = oriented_size(im.size, exif_orientation(im))  # annotations live in this frame
        s = min(1.0, max_side / max(width, height))
        size = (max(1, round(width * s)), max(1, round(height * s)))
        arr, geo = decode_image(data, size=size, name=name)
    except (DataError, OSError, *DECODE_ERRORS):
        return None
    return (arr if arr.shape[-1] == 3 else np.repeat(arr, 3, axis=-1)), np.asarray(geo.scale)


def landmark_thumbnail(source: ImageSource, name: str, true_px: np.ndarray | None, pred_px: np.ndarray,
                       likelihood: np.ndarray | None = None) -> bytes | None:
    """JPEG of image ``name`` with its true and predicted points, (K, 2) original pixels, drawn."""
    got = thumbnail(source, name)
    if got is None:
        return None
    image, scale = got
    return overlay_jpeg(image, None if true_px is None else true_px * scale, pred_px * scale,
                        likelihood=likelihood)


def plain_thumbnail(source: ImageSource, name: str) -> bytes | None:
    """JPEG of image ``name``, downscaled, nothing drawn."""
    got = thumbnail(source, name)
    return None if got is None else overlay_jpeg(got[0], None, None)


def short_name(image: str) -> str:
    """The last two parts of an image path (the folder often names the class or the session)."""
    parts = Path(str(image).replace("\\", "/")).parts
    return "/".join(parts[-2:])
