"""decode_image: geometry, EXIF, colour modes, grey weights, draft path, letterbox, errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cnnkit.data.decode import GREY_WEIGHTS, Geometry, decode_image
from cnnkit.errors import DataError
from cnnkit.geometry import input_to_original, original_to_input


def _encode(im: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _textured(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8))
    base = np.asarray(coarse.resize((w, h), Image.Resampling.BICUBIC), dtype=np.int16)
    return Image.fromarray(np.clip(base + rng.integers(-6, 7, base.shape), 0, 255).astype(np.uint8))


def _halves(w: int, h: int) -> Image.Image:
    """Left half red, right half blue (as stored)."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (255, 0, 0)
    arr[:, w // 2 :] = (0, 0, 255)
    return Image.fromarray(arr)


def test_resize_geometry_is_exact_ratio() -> None:
    arr, geo = decode_image(_encode(Image.new("RGB", (200, 100), (10, 20, 30))), size=(50, 50))
    assert arr.shape == (50, 50, 3) and arr.dtype == np.uint8
    assert geo == Geometry((200, 100), (0.25, 0.5), (0.0, 0.0))
    assert arr[0, 0].tolist() == [10, 20, 30]


def test_no_size_keeps_original() -> None:
    arr, geo = decode_image(_encode(Image.new("RGB", (7, 5))))
    assert arr.shape == (5, 7, 3) and geo.scale == (1.0, 1.0) and geo.orig_size == (7, 5)


@pytest.mark.parametrize("size", [None, (50, 100)])
def test_exif_orientation_6_rotates_size_and_pixels(size: tuple[int, int] | None) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    data = _encode(_halves(800, 400), "JPEG", quality=95, exif=exif.tobytes())
    arr, geo = decode_image(data, size=size)
    assert geo.orig_size == (400, 800)
    h, w = arr.shape[:2]
    assert (w, h) == (size or (400, 800))
    top, bottom = arr[h // 8].mean(axis=0), arr[-h // 8].mean(axis=0)
    assert top[0] > 200 and top[2] < 50  # stored left (red) is now on top
    assert bottom[2] > 200 and bottom[0] < 50
    if size:
        assert geo.scale == (50 / 400, 100 / 800)


@pytest.mark.parametrize("orientation", [3, 8])
def test_other_orientations_match_pillow_exif_transpose(orientation: int) -> None:
    from PIL import ImageOps

    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(_textured(320, 160), "JPEG", quality=95, exif=exif.tobytes())
    arr, geo = decode_image(data, size=(40, 80) if orientation == 8 else (80, 40))
    ref = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    ref = np.asarray(ref.resize(arr.shape[1::-1], Image.Resampling.LANCZOS), dtype=np.float64)
    assert geo.orig_size == ref.shape[1::-1] or geo.orig_size == (ref.shape[1] * 4, ref.shape[0] * 4)
    assert np.abs(arr - ref).mean() < 4.0


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("RGB", (1, 2, 3), (1, 2, 3)),
        ("RGBA", (1, 2, 3, 0), (1, 2, 3)),  # alpha dropped
        ("LA", (77, 128), (77, 77, 77)),
        ("L", 9, (9, 9, 9)),
        ("1", 1, (255, 255, 255)),
        ("I;16", 65535, (255, 255, 255)),
        ("I;16", 32896, (128, 128, 128)),
        ("I", 257 * 100, (100, 100, 100)),
    ],
)
def test_every_mode_becomes_rgb(mode: str, value: object, expected: tuple[int, int, int]) -> None:
    data = _encode(Image.new(mode, (6, 4), value), "TIFF" if mode == "I" else "PNG")  # type: ignore[arg-type]
    arr, _ = decode_image(data)
    assert arr.shape == (4, 6, 3)
    assert arr[2, 3].tolist() == list(expected)


def test_palette_and_cmyk_modes() -> None:
    pal = Image.new("RGB", (8, 8), (200, 10, 50)).convert("P", palette=Image.Palette.ADAPTIVE)
    arr, _ = decode_image(_encode(pal))
    assert arr[0, 0].tolist() == [200, 10, 50]
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in naive CMYK
    arr, _ = decode_image(_encode(cmyk, "TIFF"))
    assert arr.shape == (8, 8, 3) and arr[0, 0].tolist() == [255, 0, 0]


def test_grey_uses_seed_weights_not_pillow() -> None:
    arr = np.zeros((1, 3, 3), np.uint8)
    arr[0, 0, 0] = arr[0, 1, 1] = arr[0, 2, 2] = 255
    grey, _ = decode_image(_encode(Image.fromarray(arr)), grayscale=True)
    assert grey.shape == (1, 3, 1)
    assert grey[0, :, 0].tolist() == [round(255 * w) for w in GREY_WEIGHTS] == [54, 182, 18]
    # Pillow's ITU-R 601 default would give 76, 150, 29.


def test_grey_of_grey_source_is_unchanged() -> None:
    grey, _ = decode_image(_encode(Image.new("L", (4, 4), 123)), grayscale=True)
    assert grey.shape == (4, 4, 1) and int(grey[1, 1, 0]) == 123


def test_draft_path_is_used_and_close_to_full_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import JpegImagePlugin

    data = _encode(_textured(800, 600), "JPEG", quality=90)
    calls: list[tuple[int, int]] = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self: JpegImagePlugin.JpegImageFile, mode: str | None, size: tuple[int, int] | None) -> object:
        result = original(self, mode, size)
        calls.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    arr, geo = decode_image(data, size=(92, 64))
    assert calls == [(100, 75)]  # 1/8 scale still >= 92x64
    assert geo.scale == (92 / 800, 64 / 600)
    full = Image.open(io.BytesIO(data)).convert("RGB").resize((92, 64), Image.Resampling.LANCZOS)
    assert np.abs(arr.astype(np.float64) - np.asarray(full)).mean() < 3.0


def test_draft_never_goes_below_target(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _encode(_textured(400, 300), "JPEG", quality=90)
    arr, geo = decode_image(data, size=(150, 150))  # 1/2 would give 200x150: allowed
    assert arr.shape == (150, 150, 3) and geo.scale == (150 / 400, 0.5)
    full = Image.open(io.BytesIO(data)).convert("RGB").resize((150, 150), Image.Resampling.LANCZOS)
    assert np.abs(arr.astype(np.float64) - np.asarray(full)).mean() < 3.0


def test_letterbox_offsets_and_padding() -> None:
    arr, geo = decode_image(
        _encode(Image.new("RGB", (200, 100), (255, 255, 255))), size=(50, 50), letterbox=True
    )
    assert arr.shape == (50, 50, 3)
    assert geo.scale == (0.25, 0.25) and geo.offset == (0.0, 12.0)
    assert arr[:12].max() == 0 and arr[37:].max() == 0 and arr[12:37].min() == 255
    scale, offset = np.array([geo.scale]), np.array([geo.offset])
    corners = original_to_input(np.array([[[0.0, 0.0], [200.0, 100.0]]]), scale, offset)
    assert corners.tolist() == [[[0.0, 12.0], [50.0, 37.0]]]
    assert np.allclose(input_to_original(corners, scale, offset), [[[0, 0], [200, 100]]])


def test_letterbox_tall_image_pads_left_right() -> None:
    arr, geo = decode_image(
        _encode(Image.new("L", (30, 90), 200)), size=(60, 60), letterbox=True, grayscale=True
    )
    assert geo.offset == (20.0, 0.0) and geo.scale == (20 / 30, 60 / 90)
    assert arr[:, :20].max() == 0 and arr[:, 20:40].min() == 200


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "zero bytes"),
        (b"this is a text file, not a JPEG\n", "text"),
    ],
)
def test_non_images_raise_data_error(data: bytes, why: str) -> None:
    with pytest.raises(DataError, match=r"cannot decode image 'x/broken.jpg'.*check-data"):
        decode_image(data, size=(8, 8), name="x/broken.jpg")


def test_truncated_jpeg_raises_data_error() -> None:
    data = _encode(_textured(256, 256), "JPEG", quality=90)
    with pytest.raises(DataError, match=r"'half\.jpg'.*truncated"):
        decode_image(data[: len(data) // 2], size=(32, 32), name="half.jpg")


def test_bad_size_is_rejected() -> None:
    with pytest.raises(DataError, match="width, height"):
        decode_image(_encode(Image.new("RGB", (4, 4))), size=(0, 4))


def test_decompression_bomb_limit_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _encode(Image.new("L", (64, 64)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 px > 2x the limit
    with pytest.raises(DataError, match=r"'big\.png' is too large.*MAX_IMAGE_PIXELS"):
        decode_image(data, name="big.png")


def test_palette_with_transparency_drops_alpha() -> None:
    pal = Image.new("RGB", (4, 4), (30, 60, 90)).convert("P", palette=Image.Palette.ADAPTIVE)
    pal.info["transparency"] = 0
    arr, _ = decode_image(_encode(pal))
    assert arr.shape == (4, 4, 3) and arr[0, 0].tolist() == [30, 60, 90]
