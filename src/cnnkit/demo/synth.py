"""Procedural landmark data: cartoon faces on textured backgrounds, saved as JPEGs plus a VIA 2 project.

Each image has a random size (160..480 px per side, so varied aspect ratios), a background of
gradients, smooth noise, pixel noise and random distractor shapes, and one "face" (head, ears,
eyes, nose, mouth) at a random position, scale, aspect, rotation (±30°) and colour. The face's
eight landmarks (``LANDMARKS``) sit at the centres of its parts. In about 10% of images an
occluder patch is drawn over a landmark; every landmark under the patch is then missing
(absent from the VIA project, NaN in the table), as a human annotator would leave it.

Convention:
    Points are ``(x, y)`` pixels with the origin at the top-left CORNER of the image, x right,
    y down (pixel ``(i, j)`` covers ``[j, j+1] x [i, i+1]``). Pillow draws with pixel-centre
    integer coordinates, so shapes are drawn at ``point - 0.5``. ``left_*``/``right_*`` are the
    viewer's left and right of the upright face (rotation is at most ±30°, so they never swap),
    which makes ``(left_*, right_*)`` the pairs a horizontal flip exchanges.

Small-subject mode (``small_subject=True`` or a :class:`SmallSubject`): every frame is
1280x960 (settable) and the face is small, its landmarks spanning 60-200 px (ear to ear, the
largest distance between two of its landmarks), at a random place in the frame; distractors
are drawn at the subject's scale all over the frame (as many per subject-sized tile as the
default mode draws per image), so a whole-frame resize to 160x120 keeps 7.5-25 px of face.
The landmark names, the VIA project and the occlusion rule are those of the default mode.

Determinism: every image is drawn from its own ``numpy`` generator seeded with ``(seed, index)``,
so the same seed gives byte-identical JPEGs and the same points (for one Pillow/libjpeg build).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from cnnkit.atomic import atomic_open, atomic_write_text
from cnnkit.data.sources.writers import write_via
from cnnkit.data.table import AnnotationTable, infer_flip_pairs
from cnnkit.errors import DataError

LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right", "chin", "left_ear", "right_ear")
# Landmark positions in face units: x in head half-widths, y in head half-heights (y down).
_LOCAL = np.array([[-0.38, -0.22], [0.38, -0.22], [0.0, 0.12], [-0.34, 0.48], [0.34, 0.48],
                   [0.0, 0.86], [-1.1, -0.08], [1.1, -0.08]])  # fmt: skip
PARTS = ("background", "head", "ear", "eye", "nose", "mouth", "occluder")
# The part each landmark lies on (index into PARTS), for checks of the rendering.
LANDMARK_PARTS = (3, 3, 4, 5, 5, 1, 2, 2)
PROJECT_NAME = "demo_via.json"
IMAGES_FOLDER = "images"
MANIFEST = "demo_manifest.json"
GENERATOR_VERSION = 1
JPEG_QUALITY = 90
OCCLUSION_RATE = 0.1
SIZE_RANGE = (160, 480)
SMALL_FRAME = (1280, 960)  # (width, height) of a small-subject frame
SMALL_SPAN = (60.0, 200.0)  # ear-to-ear span of a small subject, px
_EAR_SPAN = 2 * 1.1  # ear-to-ear distance in head half-widths (the widest pair of landmarks)
_TILE_SPANS = 2.5  # side of a small-subject distractor tile, in spans (a default image is ~2-3 spans wide)


@dataclass(frozen=True)
class SmallSubject:
    """Settings of the small-subject mode.

    Attributes:
        frame: (width, height) of every frame, px.
        span: (min, max) ear-to-ear span of the face, px (uniform between them).
    """

    frame: tuple[int, int] = SMALL_FRAME
    span: tuple[float, float] = SMALL_SPAN

    def __post_init__(self) -> None:
        w, h = self.frame
        lo, hi = self.span
        if not (0 < lo <= hi and hi * 1.4 * 1.25 * 2 / _EAR_SPAN <= min(w, h)):  # the face must fit the frame
            raise DataError(f"SmallSubject: expected 0 < span min <= span max and the face inside the frame. "
                            f"Received: frame={self.frame}, span={self.span}")

    def to_dict(self) -> dict[str, list[float]]:
        return {"frame": [int(v) for v in self.frame], "span": [float(v) for v in self.span]}


@dataclass(frozen=True)
class Sample:
    """One rendered image before saving.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        points: (K, 2) float64 (x, y) corner-origin pixels, NaN where occluded.
        parts: (H, W) uint8 index into ``PARTS`` of what was drawn last at each pixel.
    """

    image: np.ndarray
    points: np.ndarray
    parts: np.ndarray


def make_demo_dataset(folder: str | Path, *, n_images: int = 300, seed: int = 0,
                      small_subject: bool | SmallSubject = False) -> Path:
    """Generate the demo landmark data set on disk and return the VIA 2 project's path.

    Writes ``folder/images/demo_0000.jpg ...`` (JPEG quality 90), ``folder/demo_via.json``
    (a VIA 2 project whose filenames are relative to ``folder``; one point region per
    visible landmark, named by the ``landmark`` region attribute) and, last,
    ``folder/demo_manifest.json`` recording the settings (``is_demo_dataset`` checks it).
    Read it back with ``read_annotations(path, flip_pairs='auto')``.

    Args:
        folder: output folder (created; existing demo files are overwritten, extra demo_NNNN.jpg removed).
        n_images: number of images, >= 1.
        seed: the same seed gives the same bytes; another seed gives other images.
        small_subject: True (or a :class:`SmallSubject` with other frame/span) for the
            small-subject set: 1280x960 frames, faces spanning 60-200 px. False: the default set.

    Returns:
        The path of the VIA project JSON.

    Raises:
        DataError: ``n_images`` < 1.
    """
    if int(n_images) < 1:
        raise DataError(f"make_demo_dataset: n_images must be >= 1. Received: n_images={n_images}")
    small = _small_settings(small_subject)
    root = Path(folder).resolve()
    (root / IMAGES_FOLDER).mkdir(parents=True, exist_ok=True)
    manifest = root / MANIFEST
    manifest.unlink(missing_ok=True)  # a half-written set is never taken for a finished one
    for old in (root / IMAGES_FOLDER).glob("demo_*.jpg"):  # images of a larger earlier set
        if old.stem[5:].isdigit() and int(old.stem[5:]) >= int(n_images):
            old.unlink()
    rows = []
    for i in range(int(n_images)):
        sample = render_sample(np.random.default_rng([int(seed), i]), small_subject=small)
        path = root / IMAGES_FOLDER / f"demo_{i:04d}.jpg"
        with atomic_open(path) as fh:  # a killed generation never leaves half an image under a final name
            Image.fromarray(sample.image).save(fh, format="JPEG", quality=JPEG_QUALITY)
        row: dict[str, object] = {"image": str(path)}
        for name, (x, y) in zip(LANDMARKS, sample.points, strict=True):
            row[f"{name}_x"], row[f"{name}_y"] = float(x), float(y)
        rows.append(row)
    table = AnnotationTable(pd.DataFrame(rows), landmarks=LANDMARKS, source="cnnkit demo",
                            flip_pairs=infer_flip_pairs(LANDMARKS))
    project = write_via(table, root / PROJECT_NAME)
    settings = {"generator_version": GENERATOR_VERSION, "n_images": int(n_images), "seed": int(seed),
                "project": PROJECT_NAME, "landmarks": list(LANDMARKS)}
    if small is not None:  # only then: the default set's manifest stays as it was
        settings["small_subject"] = small.to_dict()
    atomic_write_text(manifest, json.dumps(settings, indent=2))
    return project


def _small_settings(small_subject: bool | SmallSubject) -> SmallSubject | None:
    if isinstance(small_subject, SmallSubject):
        return small_subject
    return SmallSubject() if small_subject else None


def is_demo_dataset(folder: str | Path, *, n_images: int, seed: int,
                    small_subject: bool | SmallSubject = False) -> bool:
    """True when ``folder`` holds a finished demo set made with these settings (all images present)."""
    root = Path(folder)
    try:
        settings = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    small = _small_settings(small_subject)
    expected = {"generator_version": GENERATOR_VERSION, "n_images": int(n_images), "seed": int(seed),
                "small_subject": None if small is None else small.to_dict()}
    if any(settings.get(k) != v for k, v in expected.items()) or not (root / PROJECT_NAME).is_file():
        return False
    return all((root / IMAGES_FOLDER / f"demo_{i:04d}.jpg").is_file() for i in range(int(n_images)))


def render_sample(rng: np.random.Generator, *, small_subject: SmallSubject | None = None) -> Sample:
    """Draw one image, its landmarks and its part map from ``rng`` (see module docstring)."""
    if small_subject is None:
        w, h = (int(v) for v in rng.integers(SIZE_RANGE[0], SIZE_RANGE[1] + 1, size=2))
        canvas = Image.fromarray(_background(rng, w, h))
        face = _random_face(rng, w, h)
    else:
        w, h = small_subject.frame
        span = float(rng.uniform(*small_subject.span))
        canvas = Image.fromarray(_background(rng, w, h, tile=_TILE_SPANS * span))
        face = _small_face(rng, w, h, span)
    parts = Image.new("L", (w, h), 0)
    _draw_face(canvas, parts, face, rng)
    points = face.to_image(_LOCAL)
    if rng.random() < OCCLUSION_RATE:
        box = _occluder_box(rng, face, points)
        _draw_occluder(canvas, parts, box, rng)
        hidden = _inside(points, box)
        points[hidden] = np.nan
    return Sample(np.asarray(canvas, dtype=np.uint8), points, np.asarray(parts, dtype=np.uint8))


# -- background ---------------------------------------------------------------------------
def _background(rng: np.random.Generator, w: int, h: int, tile: float | None = None) -> np.ndarray:
    """Linear colour gradient + smooth colour noise + random shapes + fine pixel noise, (H, W, 3) uint8.

    ``tile``: None, shapes at the scale of the whole image; else shapes at the scale of a
    ``tile`` x ``tile`` square placed at random, as many per tile's area as one image gets.
    """
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    ramp = (xx * math.cos(angle) + yy * math.sin(angle)) / math.hypot(w, h) + 0.5  # ~[0, 1]
    c0, c1 = rng.uniform(20, 235, size=(2, 3))
    img = c0 + (c1 - c0) * ramp[..., None]
    coarse = rng.normal(0, 30, size=(int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3))
    img += _upsample(coarse, w, h)
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    if tile is None:
        for _ in range(int(rng.integers(3, 12))):
            _distractor(draw, rng, w, h)
    else:
        side = min(tile, w, h)
        for _ in range(int(rng.integers(3, 12) * w * h / side**2)):
            _distractor(draw, rng, side, side, origin=(rng.uniform(0, w - side), rng.uniform(0, h - side)))
    canvas = canvas.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.0, 1.2))))
    noisy = np.asarray(canvas, dtype=np.float64) + rng.normal(0, rng.uniform(2, 12), size=(h, w, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _upsample(grid: np.ndarray, w: int, h: int) -> np.ndarray:
    """Bilinear upsampling of a small float (h0, w0, 3) grid to (h, w, 3), channel by channel."""
    chans = [np.asarray(Image.fromarray(grid[..., c].astype(np.float32), mode="F")
                        .resize((w, h), Image.Resampling.BILINEAR)) for c in range(grid.shape[-1])]
    return np.stack(chans, axis=-1).astype(np.float64)


def _distractor(draw: ImageDraw.ImageDraw, rng: np.random.Generator, w: float, h: float,
                origin: tuple[float, float] = (0.0, 0.0)) -> None:
    """A random rectangle, ellipse, line or polygon in a random colour (clutter, not a face).

    Drawn at the scale of a ``w`` x ``h`` box whose top-left corner is ``origin``.
    """
    colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
    x0, x1 = np.sort(rng.uniform(-0.1 * w, 1.1 * w, size=2)) + origin[0]
    y0, y1 = np.sort(rng.uniform(-0.1 * h, 1.1 * h, size=2)) + origin[1]
    kind = int(rng.integers(0, 4))
    if kind == 0:
        draw.rectangle((x0, y0, x0 + (x1 - x0) * 0.5, y0 + (y1 - y0) * 0.5), fill=colour)
    elif kind == 1:
        draw.ellipse((x0, y0, x0 + (x1 - x0) * 0.4, y0 + (y1 - y0) * 0.4), fill=colour)
    elif kind == 2:
        draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, 6)))
    else:
        pts = rng.uniform((0, 0), (w, h), size=(int(rng.integers(3, 6)), 2)) + np.asarray(origin)
        draw.polygon([tuple(p) for p in pts], fill=colour)


# -- the face -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Face:
    """Pose of a face: centre (x, y) px, half-width a, half-height b, rotation theta (radians)."""

    cx: float
    cy: float
    a: float
    b: float
    theta: float

    def to_image(self, local: np.ndarray) -> np.ndarray:
        """(N, 2) face units (x in a, y in b) -> (N, 2) image pixels; a new array."""
        c, s = math.cos(self.theta), math.sin(self.theta)
        x, y = local[:, 0] * self.a, local[:, 1] * self.b
        return np.stack([self.cx + c * x - s * y, self.cy + s * x + c * y], axis=-1)


def _random_face(rng: np.random.Generator, w: int, h: int) -> _Face:
    a = rng.uniform(0.13, 0.26) * min(w, h)
    b = a * rng.uniform(1.1, 1.4)
    reach = 1.25 * b  # the ears stick out a little past the head's half-width; b >= a bounds it
    cx = rng.uniform(reach, w - reach) if w > 2 * reach else w / 2
    cy = rng.uniform(reach, h - reach) if h > 2 * reach else h / 2
    return _Face(float(cx), float(cy), float(a), float(b), float(np.deg2rad(rng.uniform(-30, 30))))


def _small_face(rng: np.random.Generator, w: int, h: int, span: float) -> _Face:
    """A face whose ear-to-ear span is ``span`` px, anywhere in a ``w`` x ``h`` frame (wholly inside it)."""
    a = span / _EAR_SPAN
    b = a * rng.uniform(1.1, 1.4)
    reach = 1.25 * b
    cx, cy = rng.uniform(reach, w - reach), rng.uniform(reach, h - reach)
    return _Face(float(cx), float(cy), float(a), float(b), float(np.deg2rad(rng.uniform(-30, 30))))


def _ellipse(face: _Face, centre: tuple[float, float], radii: tuple[float, float], n: int = 48) -> list[tuple[float, float]]:
    """Polygon of an ellipse given in face units, in Pillow's pixel-centre coordinates."""
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    local = np.stack([centre[0] + radii[0] * np.cos(t), centre[1] + radii[1] * np.sin(t)], axis=-1)
    return [(float(x) - 0.5, float(y) - 0.5) for x, y in face.to_image(local)]


def _draw_face(canvas: Image.Image, parts: Image.Image, face: _Face, rng: np.random.Generator) -> None:
    """Ears, head, eyes, nose, mouth, drawn in this order into the image and the part map."""
    skin = rng.integers(60, 256, size=3)
    ear = np.clip(skin * rng.uniform(0.55, 0.8), 0, 255)
    dark = rng.integers(0, 70, size=3)
    nose = np.clip(skin * rng.uniform(0.4, 0.7) + [60, 0, 0], 0, 255)
    mouth = rng.integers(120, 256, size=3) * np.array([1.0, 0.25, 0.3])
    shapes = [  # (part, colour, centre, radii) in face units
        (2, ear, (-1.1, -0.08), (0.22, 0.24)), (2, ear, (1.1, -0.08), (0.22, 0.24)),
        (1, skin, (0.0, 0.0), (1.0, 1.0)),
        (3, dark, (-0.38, -0.22), (0.16, 0.09)), (3, dark, (0.38, -0.22), (0.16, 0.09)),
        (4, nose, (0.0, 0.12), (0.11, 0.13)),
        (5, mouth, (0.0, 0.48), (0.42, 0.09)),
    ]  # fmt: skip
    draw, label = ImageDraw.Draw(canvas), ImageDraw.Draw(parts)
    for part, colour, centre, radii in shapes:
        poly = _ellipse(face, centre, radii)
        draw.polygon(poly, fill=tuple(int(v) for v in colour))
        label.polygon(poly, fill=part)


# -- occlusion ----------------------------------------------------------------------------
def _occluder_box(rng: np.random.Generator, face: _Face, points: np.ndarray) -> tuple[float, float, float, float]:
    """An axis-aligned box (x0, y0, x1, y1) in corner-origin pixels covering one random landmark."""
    k = int(rng.integers(0, len(points)))
    side = rng.uniform(0.35, 0.7, size=2) * face.a
    centre = points[k] + rng.uniform(-0.25, 0.25, size=2) * side
    return (float(centre[0] - side[0] / 2), float(centre[1] - side[1] / 2),
            float(centre[0] + side[0] / 2), float(centre[1] + side[1] / 2))


def _draw_occluder(canvas: Image.Image, parts: Image.Image, box: tuple[float, float, float, float],
                   rng: np.random.Generator) -> None:
    """A striped patch (clearly not part of the face) over ``box``."""
    x0, y0, x1, y1 = box
    pixel_box = (x0 - 0.5, y0 - 0.5, x1 - 0.5, y1 - 0.5)
    draw = ImageDraw.Draw(canvas)
    base = tuple(int(v) for v in rng.integers(0, 256, size=3))
    stripe = tuple(int(v) for v in rng.integers(0, 256, size=3))
    draw.rectangle(pixel_box, fill=base)
    step = max(3.0, (x1 - x0) / 5)
    for x in np.arange(x0, x1, step):
        draw.line((x - 0.5, y0 - 0.5, min(x + step / 2, x1) - 0.5, y1 - 0.5), fill=stripe, width=2)
    ImageDraw.Draw(parts).rectangle(pixel_box, fill=PARTS.index("occluder"))


def _inside(points: np.ndarray, box: tuple[float, float, float, float], margin: float = 1.0) -> np.ndarray:
    """(K,) bool: points within ``box`` grown by ``margin`` px (a point on the edge is hidden too)."""
    x0, y0, x1, y1 = box
    x, y = points[:, 0], points[:, 1]
    return (x >= x0 - margin) & (x <= x1 + margin) & (y >= y0 - margin) & (y <= y1 + margin)
