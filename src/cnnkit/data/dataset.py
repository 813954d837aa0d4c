"""``TableDataset``: one table row -> one dict of tensors (image, points, label, geometry)."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from cnnkit import geometry
from cnnkit.data.cache import DecodedCache, build_cache
from cnnkit.data.decode import Geometry, decode_image
from cnnkit.data.images import ImageSource
from cnnkit.data.memo import MEMORY, DecodedMemo
from cnnkit.data.table import AnnotationTable
from cnnkit.errors import DataError

Item = dict[str, torch.Tensor]


class TableDataset(Dataset[Item]):
    """Images of an :class:`AnnotationTable`, decoded and resized on demand.

    Every item holds all keys, so ``default_collate`` stacks them into a batch:

    Shapes:
        image: (C, H, W) uint8, C = 1 when ``grayscale`` else 3, (W, H) = ``size``.
        points: (K, 2) float32 (x, y) in RESIZED input pixels (``orig * scale + offset``);
            NaN where missing; (0, 2) for tables without landmarks.
        label: () int64 class index; -1 when the table has no classes.
        index: () int64 row position in the table.
        scale, offset, orig_size: (2,) float32 each (see :class:`Geometry`); ``orig_size`` is
            (width, height) after EXIF orientation. Map predictions back to the original image
            with ``(p - offset) / scale``.

    Args:
        table: the rows. Row data is copied into numpy arrays here (no per-row Python objects,
            so forked workers do not copy pages on access); nothing is decoded.
        size: (width, height) of the network input.
        grayscale, letterbox: as :func:`cnnkit.data.decode.decode_image`.
        cache: a folder for the decoded cache. The cache file is built or refreshed HERE, in
            the constructor (a no-op costing one ``stat`` per image when it is fresh); call
            :func:`build_cache` with ``workers`` beforehand to build a large one in parallel.
            ``"memory"`` (:data:`cnnkit.data.memo.MEMORY`): rows kept in this process's memory as
            they are first decoded, up to a budget (:class:`cnnkit.data.memo.DecodedMemo`).

    The dataset pickles: it holds no open file; image sources and the cache open per process.
    """

    def __init__(
        self,
        table: AnnotationTable,
        *,
        size: tuple[int, int],
        grayscale: bool = False,
        letterbox: bool = False,
        cache: str | os.PathLike[str] | None = None,
    ) -> None:
        if len(size) != 2 or int(size[0]) < 1 or int(size[1]) < 1:
            raise DataError(f"size must be (width, height) of positive ints. Received: {size!r}")
        self.size = (int(size[0]), int(size[1]))
        self.grayscale = bool(grayscale)
        self.letterbox = bool(letterbox)
        self._names = np.array(table.images, dtype=np.str_)
        self._points = table.points().astype(np.float32)  # (N, K, 2)
        self._labels = table.labels() if table.task == "classes" else np.full(len(table), -1, np.int64)
        self._source = ImageSource.for_table(table)
        self._cache: DecodedCache | None = None
        self._memo = DecodedMemo() if cache == MEMORY else None
        if cache is not None and self._memo is None:
            path = build_cache(
                table, size=self.size, grayscale=grayscale, letterbox=letterbox, folder=cache, progress=True
            )
            self._cache = DecodedCache(path)

    def __len__(self) -> int:
        return len(self._names)

    def load(self, i: int) -> tuple[np.ndarray, Geometry]:
        """Row ``i``'s image (H, W, C) uint8 and geometry, from the cache or decoded now."""
        if self._cache is not None:
            return self._cache.read(i)
        if self._memo is not None:
            return self._memo.get(i, lambda: self._decode(i))
        return self._decode(i)

    def _decode(self, i: int) -> tuple[np.ndarray, Geometry]:
        name = str(self._names[i])
        return decode_image(
            self._source.read(name),
            size=self.size,
            grayscale=self.grayscale,
            letterbox=self.letterbox,
            name=self._source.describe(name),
        )

    def __getitem__(self, i: int) -> Item:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} out of range for a table of {len(self)} rows")
        i %= len(self)
        arr, geo = self.load(i)
        scale = np.array(geo.scale, dtype=np.float32)
        offset = np.array(geo.offset, dtype=np.float32)
        return {
            "image": torch.from_numpy(arr).permute(2, 0, 1).contiguous(),
            "points": torch.from_numpy(geometry.original_to_input(self._points[i][None], scale[None], offset[None])[0]),
            "label": torch.tensor(self._labels[i], dtype=torch.int64),
            "index": torch.tensor(i, dtype=torch.int64),
            "scale": torch.from_numpy(scale),
            "offset": torch.from_numpy(offset),
            "orig_size": torch.tensor(geo.orig_size, dtype=torch.float32),
        }
