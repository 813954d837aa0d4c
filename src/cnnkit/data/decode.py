"""Image bytes -> ``HxWxC`` uint8 array at the training size, plus the geometry of the resize.

Steps, in order: open (Pillow, its decompression-bomb limit kept) -> reduced-size JPEG decode
(``Image.draft``: libjpeg DCT scaling by 1/2, 1/4 or 1/8, only while the drafted image stays at
least as large as the target in both dimensions) -> colour mode to RGB or L -> antialiased
resize, done in the stored frame where the draft's source box lives -> EXIF orientation (a
lossless transpose of the small image) -> optional letterbox (keep aspect ratio, pad with black,
centred) -> grey with the seed's weights ``0.2125 R + 0.7154 G + 0.0721 B``.

Resize filter: LANCZOS with ``reducing_gap=3`` (Pillow first box-reduces by an integer factor
while the remaining reduction stays >= 3x: only undrafted images such as large PNGs, about
0.2 grey levels from a plain LANCZOS). ``bench/perf/loader.py`` measures it against BILINEAR with
``reducing_gap=2``, which is faster but further from the seed's full decode + LANCZOS; the
figures and the reasons for the choice are in docs/PERFORMANCE.md.

Convention: pixels, origin at the top-left corner, x right, y down, in the frame AFTER EXIF
orientation (the frame VIA shows and annotations use). A point maps as
``resized_px = orig_px * scale + offset``.
"""

from __future__ import annotations

import io
import math
import re
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image

from cnnkit.errors import DataError

#: The seed's luma weights (skimage ``rgb2gray``), not Pillow's ITU-R 601 default.
GREY_WEIGHTS = (0.2125, 0.7154, 0.0721)

_EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the transpose that shows the image upright (as ImageOps.exif_transpose).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_GREY_MODES = {"L", "LA", "1", "La"}
#: What Pillow raises on corrupt or truncated data.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, struct.error)


_BYTES_REPR = re.compile(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>")


def error_text(exc: BaseException) -> str:
    """What went wrong, for a message that names the image itself: Pillow says ``cannot identify image
    file <_io.BytesIO object at 0x...>`` of the in-memory bytes it was given; that part is dropped."""
    text = _BYTES_REPR.sub("", str(exc)).strip()
    if isinstance(exc, Image.UnidentifiedImageError):
        return f"{text} (not a format Pillow reads)"
    return text or type(exc).__name__


@dataclass(frozen=True)
class Geometry:
    """How the original image maps onto the decoded one.

    Attributes:
        orig_size: (width, height) of the original image after EXIF orientation.
        scale: (sx, sy) = resized content size / orig_size (exact ratios, e.g. 92 / 1024).
        offset: (ox, oy) pixels of letterbox padding before the content; (0, 0) otherwise.

    Convention: ``resized_px = orig_px * scale + offset`` for (x, y) corner-origin pixels
    (``cnnkit.geometry.original_to_input`` / ``input_to_original`` apply it).
    """

    orig_size: tuple[int, int]
    scale: tuple[float, float]
    offset: tuple[float, float] = (0.0, 0.0)



def decode_image(
    data: bytes,
    *,
    size: tuple[int, int] | None = None,
    grayscale: bool = False,
    letterbox: bool = False,
    name: str = "",
) -> tuple[np.ndarray, Geometry]:
    """Decode image bytes to a uint8 array, resized to ``size`` = (width, height) if given.

    Args:
        data: the encoded file (JPEG, PNG, BMP, TIFF, GIF, WebP ... anything Pillow opens).
        size: output (width, height); None keeps the original size.
        grayscale: one channel with the seed's weights; else RGB. Alpha is dropped.
        letterbox: keep the aspect ratio and pad with black to ``size`` (centred).
        name: the image's path or zip member, used in error messages.

    Returns:
        (array, geometry). Shapes: array (H, W, C) uint8, C = 1 when grayscale else 3.

    Raises:
        DataError: the bytes are not a readable image, or exceed Pillow's pixel limit.

    Example:
        >>> buf = io.BytesIO(); Image.new("RGB", (200, 100)).save(buf, "PNG")
        >>> arr, geo = decode_image(buf.getvalue(), size=(50, 50))
        >>> arr.shape, geo.scale
        ((50, 50, 3), (0.25, 0.5))
    """
    return _decode(data, size, grayscale, letterbox, name, Image.Resampling.LANCZOS, 3.0)


def _decode(
    data: bytes,
    size: tuple[int, int] | None,
    grayscale: bool,
    letterbox: bool,
    name: str,
    resample: Image.Resampling,
    reducing_gap: float | None,
) -> tuple[np.ndarray, Geometry]:
    """:func:`decode_image` with the resize filter as a parameter (the benchmark compares them)."""
    if size is not None and (len(size) != 2 or min(int(size[0]), int(size[1])) < 1):
        raise DataError(f"decode size must be (width, height) of positive ints. Received: {size!r}")
    try:
        with Image.open(io.BytesIO(data)) as im:
            orientation = exif_orientation(im)
            orig = oriented_size(im.size, orientation)
            target, offset = _content_box(orig, size, letterbox)
            box = _draft(im, target, orientation)
            im.load()
            arr = _resized_array(im, orientation, target, box, resample, reducing_gap, grayscale)
    except Image.DecompressionBombError as exc:
        raise DataError(
            f"image {name!r} is too large to decode safely ({exc}). If you trust it, raise "
            "PIL.Image.MAX_IMAGE_PIXELS before loading."
        ) from exc
    except DECODE_ERRORS as exc:
        raise DataError(
            f"cannot decode image {name!r} ({len(data)} bytes): {error_text(exc)}. The file is corrupt, truncated "
            "or not an image; run cnnkit.check_data(table) (CLI: cnnkit check-data) to list every "
            "bad image, then fix or drop those rows."
        ) from exc
    if size is not None and letterbox:
        arr = _pad(arr, size, offset)
    scale = (target[0] / orig[0], target[1] / orig[1])
    return arr, Geometry(orig, scale, (float(offset[0]), float(offset[1])))


def exif_orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1..8) of an opened image; 1 when absent or damaged."""
    try:
        value = im.getexif().get(_EXIF_ORIENTATION, 1)
    except DECODE_ERRORS:  # a damaged EXIF block must not make the pixels unreadable
        return 1
    return int(value) if isinstance(value, int) and value in _TRANSPOSE else 1


def oriented_size(raw: tuple[int, int], orientation: int) -> tuple[int, int]:
    """(width, height) as shown after applying EXIF ``orientation`` to a stored ``raw`` size."""
    return (raw[1], raw[0]) if orientation in (5, 6, 7, 8) else (raw[0], raw[1])


def _content_box(
    orig: tuple[int, int], size: tuple[int, int] | None, letterbox: bool
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Size of the resized content and its offset inside the output (letterbox padding)."""
    if size is None:
        return orig, (0, 0)
    w, h = int(size[0]), int(size[1])
    if not letterbox:
        return (w, h), (0, 0)
    s = min(w / orig[0], h / orig[1])
    cw, ch = min(w, max(1, round(orig[0] * s))), min(h, max(1, round(orig[1] * s)))
    return (cw, ch), ((w - cw) // 2, (h - ch) // 2)


def _draft(
    im: Image.Image, target: tuple[int, int], orientation: int
) -> tuple[float, float, float, float] | None:
    """Ask libjpeg for a 1/2, 1/4 or 1/8 scale decode that is still >= target; the source box."""
    if im.format not in ("JPEG", "MPO"):  # MPO: phone JPEGs with extra frames
        return None
    raw_target = oriented_size(target, orientation)  # the draft works in the stored frame
    if im.size[0] < 2 * raw_target[0] or im.size[1] < 2 * raw_target[1]:
        return None
    mode = "RGB" if im.mode in ("RGB", "YCbCr") else None
    result = im.draft(mode, raw_target)
    if result is None:
        return None
    box = result[1]
    # Pillow rounds the drafted size up; the box keeps the exact part that is the original.
    return (0.0, 0.0, float(box[2]), float(box[3]))


def _resized_array(
    im: Image.Image,
    orientation: int,
    target: tuple[int, int],
    box: tuple[float, float, float, float] | None,
    resample: Image.Resampling,
    reducing_gap: float | None,
    grayscale: bool,
) -> np.ndarray:
    """Resize in the stored frame (where the draft box lives), then transpose the small image."""
    img = _to_8bit(im)
    raw_target = oriented_size(target, orientation)
    if img.size != raw_target or box is not None:
        img = img.resize(raw_target, resample, box=box, reducing_gap=reducing_gap)
    if orientation in _TRANSPOSE:
        img = img.transpose(_TRANSPOSE[orientation])
    arr = np.array(img)  # a writable copy (np.asarray would be read-only)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if grayscale and arr.shape[2] == 3:
        grey = arr.astype(np.float32) @ np.array(GREY_WEIGHTS, dtype=np.float32)
        arr = np.clip(np.rint(grey), 0, 255).astype(np.uint8)[:, :, None]
    if not grayscale and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr)


def _to_8bit(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> 'RGB' or 'L' (8 bits). Grey sources stay 'L' (weights sum to 1)."""
    mode = im.mode
    if mode in ("RGB", "L"):
        return im
    if mode.startswith("I;16") or mode in ("I", "F"):
        # 16-bit (and 32-bit int/float) grey: Pillow's convert('L') clips at 255, so scale
        # 0..65535 down to 0..255 here; float is taken as already 0..255.
        arr = np.asarray(im, dtype=np.float64)
        arr = arr if mode == "F" else arr / 257.0
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    if mode in _GREY_MODES:
        return im.convert("L")
    return im.convert("RGB")  # P, PA, RGBA, RGBX, CMYK, YCbCr, LAB, HSV ...; alpha is dropped


def _pad(arr: np.ndarray, size: tuple[int, int], offset: tuple[int, int]) -> np.ndarray:
    """Place the resized content at ``offset`` on a black (zero) canvas of ``size``."""
    out = np.zeros((int(size[1]), int(size[0]), arr.shape[2]), dtype=np.uint8)
    ox, oy = offset
    out[oy : oy + arr.shape[0], ox : ox + arr.shape[1]] = arr
    return out


def frame_size(data: bytes, *, name: str = "") -> tuple[int, int]:
    """(width, height) of an encoded image after EXIF orientation; only the header is read."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return oriented_size(im.size, exif_orientation(im))
    except DECODE_ERRORS as exc:
        raise DataError(f"cannot read the size of image {name!r} ({len(data)} bytes): {error_text(exc)}") from exc


def decode_frame(data: bytes, *, min_scale: float = 1.0, grayscale: bool = False,
                 name: str = "") -> tuple[np.ndarray, Geometry]:
    """The whole frame, not resized, but decoded at a reduced JPEG size when ``min_scale <= 0.5``.

    Crop views (:mod:`cnnkit.data.views`) are cut from it. The JPEG draft (1/2, 1/4, 1/8) is the
    smallest that keeps at least ``min_scale`` pixels per original pixel; other formats decode at
    full size. The geometry maps original pixels onto the returned array (``scale`` is the draft's
    exact ratio); pixels beyond ``orig_size * scale`` (Pillow rounds a draft up) are not content.

    Shapes: (h, w, C) uint8, C = 1 when ``grayscale`` else 3.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            orientation = exif_orientation(im)
            raw = im.size
            orig = oriented_size(raw, orientation)
            want = (max(1, math.ceil(orig[0] * min_scale)), max(1, math.ceil(orig[1] * min_scale)))
            box = _draft(im, want, orientation) if min_scale <= 0.5 else None
            im.load()
            drafted = oriented_size(im.size, orientation)
            arr = _resized_array(im, orientation, drafted, None, Image.Resampling.LANCZOS, None, grayscale)
    except Image.DecompressionBombError as exc:
        raise DataError(f"image {name!r} is too large to decode safely ({exc})") from exc
    except DECODE_ERRORS as exc:
        raise DataError(f"cannot decode image {name!r} ({len(data)} bytes): {error_text(exc)}. Run `cnnkit check-data`.") from exc
    content = (box[2], box[3]) if box is not None else (float(raw[0]), float(raw[1]))
    content = oriented_size(content, orientation)  # type: ignore[arg-type, assignment]
    return arr, Geometry(orig, (content[0] / orig[0], content[1] / orig[1]))
