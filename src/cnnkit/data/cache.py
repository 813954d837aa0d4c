"""On-disk cache of decoded, resized uint8 images: one file per (table, size, colour, letterbox).

File layout (little-endian), every block at a fixed offset so a row is one positional read:

    b"CNNKITC\\x01" | uint64 header length | JSON header | pad to 4096
    fingerprints  N x 16 bytes   blake2b of each source's (path, byte size, mtime_ns) or
                                 zip (member, CRC-32, byte size)
    geometry      N x 6 float64  orig_w, orig_h, sx, sy, ox, oy
    images        N x H x W x C uint8

Staleness: :func:`build_cache` compares every row's fingerprint (one ``stat`` per file, or the
zip's central directory) and re-decodes ONLY the stale rows, in a copy of the file that then
replaces the old one. Every write goes to a temporary file renamed into place at the end, so
a killed build never leaves a file that looks valid. :class:`DecodedCache` reads rows with
``os.pread`` on a descriptor opened lazily per process, so resident memory is O(batch).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm  # type: ignore[import-untyped]

from cnnkit.atomic import atomic_path
from cnnkit.data.decode import Geometry, decode_image
from cnnkit.data.images import ImageSource
from cnnkit.data.table import AnnotationTable
from cnnkit.errors import DataError

MAGIC = b"CNNKITC\x01"
FORMAT_VERSION = 1
_ALIGN = 4096
_FP_BYTES = 16
_GEO_FIELDS = 6


def cache_path(
    table: AnnotationTable,
    *,
    size: tuple[int, int],
    grayscale: bool,
    letterbox: bool,
    folder: str | os.PathLike[str],
) -> Path:
    """The cache file for this table (its image list, in order), size and colour mode."""
    h = hashlib.blake2b(digest_size=8)
    h.update(str(table.zip or "").encode())
    for name in table.images:
        h.update(b"\0" + name.encode("utf-8", "surrogatepass"))
    mode = ("gray" if grayscale else "rgb") + ("-letterbox" if letterbox else "")
    return Path(folder) / f"{h.hexdigest()}-{int(size[0])}x{int(size[1])}-{mode}.cnnkit-cache"


def build_cache(
    table: AnnotationTable,
    *,
    size: tuple[int, int],
    grayscale: bool = False,
    letterbox: bool = False,
    folder: str | os.PathLike[str],
    workers: int = 0,
    progress: bool = True,
) -> Path:
    """Create or refresh the decoded cache of ``table``; return its path.

    Rows whose source changed (fingerprint differs) are re-decoded; a fresh file costs one
    ``stat`` per image and nothing else.

    Raises:
        DataError: an image is missing or cannot be decoded (run check_data first).
    """
    path = cache_path(table, size=size, grayscale=grayscale, letterbox=letterbox, folder=folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    source = ImageSource.for_table(table)
    names = table.images
    digests = (
        np.stack([_digest(source.fingerprint(n)) for n in names])
        if names
        else np.zeros((0, _FP_BYTES), np.uint8)
    )
    channels = 1 if grayscale else 3
    header = _header(len(names), size, channels, grayscale, letterbox, path.name)
    old = _read_header(path) if path.exists() else None
    if old == header:
        stale = np.flatnonzero((_read_digests(path, header) != digests).any(axis=1))
        if len(stale) == 0:
            return path
        base: Path | None = path
    else:
        stale, base = np.arange(len(names)), None
    _write_rows(path, base, header, source, names, stale, digests, workers=workers, progress=progress)
    return path


class DecodedCache:
    """Reads rows of a cache file; pickles without its descriptor, reopened per process.

    Shapes: ``read(i)`` -> (H, W, C) uint8 and a :class:`Geometry`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        header = _read_header(self.path)
        if header is None:
            raise DataError(f"{str(self.path)!r} is not a cnnkit decoded cache; rebuild it with build_cache")
        self.header = header
        self._fd = -1
        self._pid = -1

    def __len__(self) -> int:
        return int(self.header["n"])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, C) of every row."""
        return (int(self.header["height"]), int(self.header["width"]), int(self.header["channels"]))

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "header": self.header}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.header, self._fd, self._pid = state["path"], state["header"], -1, -1

    def _descriptor(self) -> int:
        if self._fd < 0 or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def close(self) -> None:
        """Close this process's descriptor (it reopens on the next read)."""
        if self._fd >= 0 and self._pid == os.getpid():
            os.close(self._fd)
        self._fd, self._pid = -1, -1

    def read(self, i: int) -> tuple[np.ndarray, Geometry]:
        """Row ``i``: two positional reads, nothing else of the file touched."""
        n = len(self)
        if not 0 <= i < n:
            raise IndexError(f"cache row {i} out of range 0..{n - 1}")
        h, w, c = self.shape
        fd = self._descriptor()
        buf = bytearray(h * w * c)
        got = os.preadv(fd, [buf], self.header["img_offset"] + i * len(buf))
        geo = os.pread(fd, 8 * _GEO_FIELDS, self.header["geo_offset"] + i * 8 * _GEO_FIELDS)
        if got != len(buf) or len(geo) != 8 * _GEO_FIELDS:
            raise DataError(f"decoded cache {str(self.path)!r} is truncated at row {i}; delete it to rebuild")
        g = np.frombuffer(geo, dtype="<f8")
        geometry = Geometry((int(g[0]), int(g[1])), (float(g[2]), float(g[3])), (float(g[4]), float(g[5])))
        return np.frombuffer(buf, dtype=np.uint8).reshape(h, w, c), geometry


# -- file format ----------------------------------------------------------------------------
def _digest(fp: tuple[str, int, int]) -> np.ndarray:
    raw = hashlib.blake2b(repr(fp).encode("utf-8", "surrogatepass"), digest_size=_FP_BYTES).digest()
    return np.frombuffer(raw, dtype=np.uint8)


def _header(
    n: int, size: tuple[int, int], channels: int, grayscale: bool, letterbox: bool, key: str
) -> dict[str, Any]:
    w, h = int(size[0]), int(size[1])
    fp_offset = _ALIGN
    geo_offset = fp_offset + n * _FP_BYTES
    img_offset = -(-(geo_offset + n * 8 * _GEO_FIELDS) // _ALIGN) * _ALIGN
    return {
        "format_version": FORMAT_VERSION, "key": key, "n": n, "width": w, "height": h,
        "channels": channels, "grayscale": bool(grayscale), "letterbox": bool(letterbox),
        "fp_offset": fp_offset, "geo_offset": geo_offset, "img_offset": img_offset,
    }  # fmt: skip


def _read_header(path: Path) -> dict[str, Any] | None:
    """The header, or None when the file is not a complete cache of this format."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            if len(head) != 16 or head[:8] != MAGIC:
                return None
            header = json.loads(f.read(int.from_bytes(head[8:], "little")))
            f.seek(0, os.SEEK_END)
            end = f.tell()
    except (OSError, ValueError):
        return None
    if not isinstance(header, dict) or header.get("format_version") != FORMAT_VERSION:
        return None
    row = header["width"] * header["height"] * header["channels"]
    return header if end == header["img_offset"] + header["n"] * row else None


def _read_digests(path: Path, header: dict[str, Any]) -> np.ndarray:
    with open(path, "rb") as f:
        f.seek(header["fp_offset"])
        raw = f.read(header["n"] * _FP_BYTES)
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, _FP_BYTES)


def _write_rows(
    path: Path,
    base: Path | None,
    header: dict[str, Any],
    source: ImageSource,
    names: list[str],
    rows: np.ndarray,
    digests: np.ndarray,
    *,
    workers: int,
    progress: bool,
) -> None:
    """Write ``rows`` (decoded now) into a copy of ``base`` (or a new file), then rename it."""
    with atomic_path(path) as tmp:
        if base is not None:
            shutil.copyfile(base, tmp)
        fd = os.open(tmp, os.O_RDWR)
        try:
            if base is None:
                _write_layout(fd, header)
            _decode_rows_into(fd, header, source, names, rows, workers=workers, progress=progress)
            os.pwrite(fd, np.ascontiguousarray(digests, dtype=np.uint8).tobytes(), header["fp_offset"])
        finally:
            os.close(fd)


def _decode_rows_into(fd: int, header: dict[str, Any], source: ImageSource, names: list[str], rows: np.ndarray, *,
                workers: int, progress: bool) -> None:
    """Decode ``rows`` in loader workers and write each image and its geometry at its position."""
    row_bytes = header["width"] * header["height"] * header["channels"]
    decoder = _RowDecoder(source, names, header)
    loader = DataLoader(decoder, batch_size=None, sampler=rows.tolist(), num_workers=workers, collate_fn=_same)
    for i, arr, geo in tqdm(loader, total=len(rows), disable=not progress, desc="decoding to cache", unit="img"):
        os.pwrite(fd, arr.tobytes(), header["img_offset"] + i * row_bytes)
        os.pwrite(fd, geo.astype("<f8").tobytes(), header["geo_offset"] + i * 8 * _GEO_FIELDS)


def _write_layout(fd: int, header: dict[str, Any]) -> None:
    """Magic, header and a file of the final length (rows are written in place later)."""
    text = json.dumps(header).encode()
    if 16 + len(text) > header["fp_offset"]:
        raise DataError("decoded cache header too large")  # cannot happen: the header is ~300 bytes
    os.pwrite(fd, MAGIC + len(text).to_bytes(8, "little") + text, 0)
    row = header["width"] * header["height"] * header["channels"]
    os.ftruncate(fd, header["img_offset"] + header["n"] * row)


def _same(item: Any) -> Any:
    return item


class _RowDecoder(Dataset[tuple[int, np.ndarray, np.ndarray]]):
    """Decodes one row for the build; runs in DataLoader workers when ``workers > 0``."""

    def __init__(self, source: ImageSource, names: list[str], header: dict[str, Any]) -> None:
        self.source, self.names, self.header = source, names, header

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray, np.ndarray]:
        h = self.header
        name = self.names[i]
        arr, g = decode_image(
            self.source.read(name), size=(h["width"], h["height"]), grayscale=h["grayscale"],
            letterbox=h["letterbox"], name=self.source.describe(name),
        )  # fmt: skip
        geo = np.array([*g.orig_size, *g.scale, *g.offset], dtype=np.float64)
        return i, arr, geo
