"""Crop training: views of a frame at native (or a chosen) scale, and the dataset that cuts them.

A **view** is a window of the original frame scaled isotropically by ``s`` and placed at an
offset: ``view_px = original_px * s + offset``, the same ``(scale, offset)`` geometry every
dataset item carries, so losses, metrics in original pixels and evaluation need no new maths.
Points outside the view are NaN (losses and metrics skip them). Kinds of view (docs/resolution.md):

- **whole**: the whole frame fitted into ``crop.size``, centred, zero padded (the coarse pass);
- **subject**: the points' bounding box plus ``margin`` at ``s = min(crop.scale, fit of the box)``,
  centred on the box (plus jitter at training), clamped inside the frame where it fits;
- **background**: a window at ``crop.scale`` anywhere in the frame (training only).

The subject rule is the same at training (ground-truth box) and inference (the coarse pass's box).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from cnnkit.config import CropConfig
from cnnkit.data.cache import DecodedCache, build_cache
from cnnkit.data.decode import Geometry, decode_frame, frame_size
from cnnkit.data.images import ImageSource
from cnnkit.data.loader import EpochSampler
from cnnkit.data.memo import MEMORY, DecodedMemo
from cnnkit.data.table import AnnotationTable
from cnnkit.errors import ConfigError

MODES = ("train", "whole", "frames")
_EPS = 1e-6
#: A subject whose points' box spans less than this share of the frame (median over the training
#: rows, on the box's larger axis) is "small": ``data.crop: auto`` trains on views for it and
#: ``views: auto`` finds it over the whole frame (docs/resolution.md, "Measured": the small-subject
#: set spans 0.10, lips-via 0.47, faces68 0.44).
SMALL_SUBJECT_SHARE = 0.25
#: ``remember_whole``: the whole views a dataset keeps, at most this many bytes (160x160 RGB: 3,400 rows)
WHOLE_MEMO_BYTES = 256 << 20


@dataclass(frozen=True)
class View:
    """``view_px = original_px * scale + offset``; ``scale`` is isotropic."""

    scale: float
    offset: tuple[float, float]


def whole_view(frame_wh: Sequence[float], size: Sequence[int]) -> View:
    """The whole frame fitted into ``size`` (W, H), centred; the padding rounded to whole pixels.

    Example:
        >>> whole_view((640, 480), (256, 256))
        View(scale=0.4, offset=(0.0, 32.0))
    """
    s = min(size[0] / frame_wh[0], size[1] / frame_wh[1])
    return View(s, (float(math.floor((size[0] - frame_wh[0] * s) / 2)), float(math.floor((size[1] - frame_wh[1] * s) / 2))))


def _placed(centre: Sequence[float], s: float, frame_wh: Sequence[float], size: Sequence[int]) -> View:
    """The view of scale ``s`` centred on ``centre`` (original px), moved inside the frame where it fits."""
    offset = []
    for axis in (0, 1):
        window = size[axis] / s  # original pixels the view spans
        c = float(centre[axis])
        c = frame_wh[axis] / 2 if window >= frame_wh[axis] else min(max(c, window / 2), frame_wh[axis] - window / 2)
        offset.append(float(round(size[axis] / 2 - c * s)))  # whole pixels: native views are plain slices
    return View(s, (offset[0], offset[1]))


def points_box(points: np.ndarray) -> tuple[float, float, float, float] | None:
    """(x0, y0, x1, y1) of the finite points of a (K, 2) array; None when there is none."""
    ok = np.isfinite(points).all(axis=-1)
    if not ok.any():
        return None
    p = points[ok]
    return float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max())


def subject_view(box: Sequence[float], frame_wh: Sequence[float], crop: CropConfig,
                 shift: Sequence[float] = (0.0, 0.0)) -> View:
    """The view around a box of points (original px): the rule shared by training and inference.

    ``shift``: the centre's offset as a fraction of the view (training jitter), limited so the
    box itself stays inside the view.

    Example:
        >>> subject_view((300, 200, 340, 240), (640, 480), CropConfig(size=(128, 128)))
        View(scale=1.0, offset=(-256.0, -156.0))
    """
    bw, bh = max(box[2] - box[0], 1.0), max(box[3] - box[1], 1.0)
    w, h = crop.size
    s = min(crop.scale, w / (bw * (1 + crop.margin)), h / (bh * (1 + crop.margin)))
    centre = []
    for axis, extent in ((0, bw), (1, bh)):
        window = crop.size[axis] / s
        room = max(0.0, (window - extent) / 2 - 1 / s)  # the box stays inside (a pixel spare for rounding)
        centre.append((box[axis] + box[axis + 2]) / 2 + float(np.clip(shift[axis] * window, -room, room)))
    return _placed(centre, s, frame_wh, crop.size)


def view_points(points: np.ndarray, view: View, size: Sequence[int]) -> np.ndarray:
    """(K, 2) original px -> view px, NaN (both coordinates) where a point falls outside the view."""
    out = points * view.scale + np.asarray(view.offset)
    outside = ~((out[:, 0] >= 0) & (out[:, 0] <= size[0]) & (out[:, 1] >= 0) & (out[:, 1] <= size[1]))
    out[outside] = np.nan
    return out


def random_view(rng: np.random.Generator, points: np.ndarray, frame_wh: Sequence[float], crop: CropConfig) -> View:
    """One training view: whole with probability ``whole``, background with ``background``, else subject."""
    u = float(rng.random())
    box = points_box(points)
    if u < crop.whole:
        return whole_view(frame_wh, crop.size)
    if u < crop.whole + crop.background or box is None:
        centre = rng.random(2) * np.asarray(frame_wh, dtype=np.float64)
        return _placed(centre.tolist(), crop.scale, frame_wh, crop.size)
    return subject_view(box, frame_wh, crop, shift=rng.uniform(-crop.jitter, crop.jitter, 2).tolist())


def cut_view(base: np.ndarray, base_geo: Geometry, view: View, size: Sequence[int]) -> np.ndarray:
    """The view's pixels (H, W, C) uint8 cut from ``base`` (a frame decoded with ``base_geo``).

    Outside the frame's content: zeros. Where the view's scale equals the base's and the
    window sits on whole pixels (native views from the cache): a plain numpy slice, else an
    antialiased resize of exactly the covered region (Pillow ``resize(box=...)``).
    """
    w, h = int(size[0]), int(size[1])
    out = np.zeros((h, w, base.shape[2]), dtype=np.uint8)
    bs, bo = np.asarray(base_geo.scale, np.float64), np.asarray(base_geo.offset, np.float64)
    ratio = view.scale / bs  # view px per base px, (2,)
    lo_base, hi_base = bo, bo + np.asarray(base_geo.orig_size, np.float64) * bs  # the content in base px
    off = np.asarray(view.offset, np.float64)
    to_view = lambda b: (b - bo) * ratio + off  # noqa: E731
    v0 = np.clip(np.ceil(to_view(lo_base) - _EPS), 0, [w, h]).astype(int)
    v1 = np.clip(np.floor(to_view(hi_base) + _EPS), 0, [w, h]).astype(int)
    if (v1 <= v0).any():
        return out
    b0 = np.clip((v0 - off) / ratio + bo, lo_base, hi_base)
    b1 = np.clip((v1 - off) / ratio + bo, lo_base, hi_base)
    if np.allclose(ratio, 1.0, atol=_EPS) and np.allclose(b0, np.round(b0), atol=1e-4):
        x0, y0 = (int(v) for v in np.round(b0))
        out[v0[1]:v1[1], v0[0]:v1[0]] = base[y0:y0 + v1[1] - v0[1], x0:x0 + v1[0] - v0[0]]
        return out
    img = Image.fromarray(base[:, :, 0] if base.shape[2] == 1 else base)
    part = img.resize((int(v1[0] - v0[0]), int(v1[1] - v0[1])), Image.Resampling.LANCZOS,
                      box=(float(b0[0]), float(b0[1]), float(b1[0]), float(b1[1])), reducing_gap=3.0)
    arr = np.asarray(part)
    out[v0[1]:v1[1], v0[0]:v1[0]] = arr[:, :, None] if arr.ndim == 2 else arr
    return out


def subject_share(points: np.ndarray, frame_wh: Callable[[int], tuple[int, int]], sample: int = 256) -> float | None:
    """The median over (up to ``sample``, evenly spread) rows of the points' box (``points`` (N, K, 2),
    original px) over the frame (``frame_wh(row)``), on the box's larger axis; None without points."""
    if not len(points):
        return None
    picks = np.unique(np.linspace(0, len(points) - 1, min(sample, len(points))).round().astype(int))
    shares = []
    for i in picks:
        box = points_box(points[i])
        if box is not None:
            w, h = frame_wh(int(i))
            shares.append(max((box[2] - box[0]) / w, (box[3] - box[1]) / h))
    return float(np.median(shares)) if shares else None


def cache_frame_size(table: AnnotationTable, scale: float, sample: int = 64) -> tuple[int, int]:
    """The cache's row size for crop training: the largest sampled frame at ``scale`` (others are letterboxed)."""
    source = ImageSource.for_table(table)
    names = table.images
    picks = np.unique(np.linspace(0, len(names) - 1, min(sample, len(names))).round().astype(int))
    sizes = np.array([frame_size(source.read(names[i]), name=names[i]) for i in picks], dtype=np.float64)
    return int(math.ceil(sizes[:, 0].max() * scale - 1e-9)), int(math.ceil(sizes[:, 1].max() * scale - 1e-9))


class ViewSampler(EpochSampler):
    """An ``EpochSampler`` whose indices also carry the epoch (``epoch * n + row``).

    The view of a row is drawn from an RNG seeded by (seed, epoch, row) inside ``__getitem__``,
    so it is the same with any number of workers, under DDP and after a resume.
    """

    def __iter__(self) -> Any:
        return iter((self.order() + self.epoch * self.n).tolist())


def _drafted(name: str) -> bool:
    """Whether a reduced-scale decode of ``name`` may differ from the full one (JPEG drafts; by its name)."""
    return name.lower().endswith((".jpg", ".jpeg", ".jpe", ".jfif"))


class ViewDataset(Dataset[dict[str, Any]]):
    """Views of the frames of a landmark table (see the module docstring).

    Modes:
        ``train``: a random view per (seed, epoch, row) (index ``epoch * n + row``, :class:`ViewSampler`);
        ``whole``: the whole view of each row;
        ``frames``: the frame itself (at ``crop.scale``, or as cached), for two-pass inference
        (:mod:`cnnkit.engine.two_pass`); batch these with :func:`collate_frames`.

    Items (train, whole) hold the keys of :class:`cnnkit.data.dataset.TableDataset` (points in view
    px, NaN outside the view) plus ``shape_points``: the points in the whole view (the mean shape).

    ``cache``: a folder; the cache holds each frame once at ``crop.scale`` (letterboxed into the
    largest frame of the table), so views are numpy slices (or a small resize). ``"memory"``: each
    frame decoded at full size is kept as first decoded (:class:`cnnkit.data.memo.DecodedMemo`), the
    same pixels as without it.

    ``remember_whole``: keep each row's whole view once cut (up to :data:`WHOLE_MEMO_BYTES`). The
    whole view is the one view that is the same every epoch, and the only costly one (a large
    frame's antialiased resize, ~10 ms for 1280x960, against a slice for a native view); fit turns
    it on for training and validation, where rows come back every epoch. In ``frames`` mode the
    items then carry it as ``whole`` for the coarse pass (:func:`cnnkit.engine.two_pass.two_pass`).
    """

    def __init__(self, table: AnnotationTable, *, crop: CropConfig, grayscale: bool = False,
                 cache: str | os.PathLike[str] | None = None, seed: int = 0, mode: str = "train",
                 remember_whole: bool = False) -> None:
        if mode not in MODES:
            raise ConfigError(f"ViewDataset mode must be one of {MODES}. Received: {mode!r}")
        if table.task == "classes":
            raise ConfigError("data.crop is for landmark tables (the views follow the points); this table holds "
                              "classes. Remove data.crop.")
        self.crop, self.grayscale, self.seed, self.mode = crop, bool(grayscale), int(seed), mode
        self._names = np.array(table.images, dtype=np.str_)
        self._points = table.points().astype(np.float64)  # (N, K, 2) original px
        self._source = ImageSource.for_table(table)
        self._cache: DecodedCache | None = None
        self._whole: dict[int, np.ndarray] | None = {} if remember_whole else None
        self._memo = DecodedMemo() if cache == MEMORY else None
        if cache is not None and self._memo is None:
            size = cache_frame_size(table, crop.scale)
            self._cache = DecodedCache(build_cache(table, size=size, grayscale=grayscale, letterbox=True,
                                                   folder=cache, progress=True))

    def __len__(self) -> int:
        return len(self._names)

    def with_mode(self, mode: str) -> ViewDataset:
        """The same rows, cache and seed in another mode (no cache rebuild)."""
        other = object.__new__(ViewDataset)
        other.__dict__.update(self.__dict__)
        other.mode = mode
        other._whole = None if self._whole is None else {}  # a no-cache train view is decoded at its own scale
        return other

    def frame_wh(self, i: int) -> tuple[int, int]:
        """Row ``i``'s (width, height) after EXIF orientation (header only, or the cache's record)."""
        if self._cache is not None:
            return self._cache.read(i)[1].orig_size
        name = str(self._names[i])
        return frame_size(self._source.read(name), name=self._source.describe(name))

    def base(self, i: int, min_scale: float | None = None) -> tuple[np.ndarray, Geometry]:
        """Row ``i``'s frame to cut views from: the cached row, or decoded (JPEG drafted down to ``min_scale``)."""
        if self._cache is not None:
            return self._cache.read(i)
        scale = self.crop.scale if min_scale is None else min(min_scale, self.crop.scale)
        if self._memo is not None and (scale > 0.5 or not _drafted(str(self._names[i]))):
            return self._memo.get(i, lambda: self._decode(i, 1.0))  # the full-size decode: the same every time
        return self._decode(i, scale)

    def _decode(self, i: int, scale: float) -> tuple[np.ndarray, Geometry]:
        name = str(self._names[i])
        return decode_frame(self._source.read(name), min_scale=scale, grayscale=self.grayscale,
                            name=self._source.describe(name))

    def view_of(self, i: int, epoch: int, frame_wh: Sequence[float] | None = None) -> View:
        """The training view of row ``i`` at ``epoch`` (pure function of seed, epoch, row)."""
        rng = np.random.default_rng([self.seed, int(epoch), int(i)])
        return random_view(rng, self._points[i], self.frame_wh(i) if frame_wh is None else frame_wh, self.crop)

    def item(self, i: int, choose: Callable[[tuple[int, int]], View]) -> dict[str, Any]:
        """Row ``i`` seen through the view ``choose(frame (width, height))`` returns."""
        cached = self._cache.read(i) if self._cache is not None else None
        frame_wh = cached[1].orig_size if cached is not None else self.frame_wh(i)
        view, whole = choose(frame_wh), whole_view(frame_wh, self.crop.size)

        def frame() -> tuple[np.ndarray, Geometry]:
            return cached if cached is not None else self.base(i, view.scale)

        pixels = self.whole_pixels(i, frame) if view == whole else cut_view(*frame(), view, self.crop.size)
        return {
            "image": torch.from_numpy(pixels).permute(2, 0, 1).contiguous(),
            "points": torch.from_numpy(view_points(self._points[i], view, self.crop.size).astype(np.float32)),
            "shape_points": torch.from_numpy(view_points(self._points[i], whole, self.crop.size).astype(np.float32)),
            "label": torch.tensor(-1, dtype=torch.int64),
            "index": torch.tensor(i, dtype=torch.int64),
            "scale": torch.tensor([view.scale, view.scale], dtype=torch.float32),
            "offset": torch.tensor(view.offset, dtype=torch.float32),
            "orig_size": torch.tensor(frame_wh, dtype=torch.float32),
        }

    def whole_pixels(self, i: int, frame: Callable[[], tuple[np.ndarray, Geometry]]) -> np.ndarray:
        """Row ``i``'s whole view (H, W, C uint8), cut from ``frame()`` or remembered (``remember_whole``)."""
        if self._whole is not None and i in self._whole:
            return self._whole[i]
        arr, geo = frame()
        pixels = cut_view(arr, geo, whole_view(geo.orig_size, self.crop.size), self.crop.size)
        if self._whole is not None and (len(self._whole) + 1) * pixels.nbytes <= WHOLE_MEMO_BYTES:
            self._whole[i] = pixels
        return pixels

    def __getitem__(self, k: int) -> dict[str, Any]:
        k, n = int(k), len(self)
        i = k % n if n else k
        if self.mode == "train":
            return self.item(i, lambda wh: self.view_of(i, k // n, wh))
        if self.mode == "whole":
            return self.item(i, lambda wh: whole_view(wh, self.crop.size))
        arr, geo = self.base(i)
        item = {"frame": arr, "geometry": geo, "points": self._points[i], "index": i}
        if self._whole is not None:
            item["whole"] = self.whole_pixels(i, lambda: (arr, geo))
        return item


def collate_frames(items: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Frames of different sizes stay a list per key (``ViewDataset`` mode ``frames``)."""
    return {key: [item[key] for item in items] for key in items[0]} if items else {}


def views_geometry(views: Sequence[View]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 2) scale and (B, 2) offset tensors of some views."""
    scale = torch.tensor([[v.scale, v.scale] for v in views], dtype=torch.float32)
    offset = torch.tensor([list(v.offset) for v in views], dtype=torch.float32)
    return scale, offset

