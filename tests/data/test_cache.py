"""Decoded cache: equality with direct decode, stale rows, positional reads, atomic writes."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cnnkit.data.cache import DecodedCache, build_cache, cache_path
from cnnkit.data.decode import decode_image
from cnnkit.data.table import AnnotationTable
from cnnkit.errors import DataError


def _images(folder: Path, n: int) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        arr = rng.integers(0, 256, (30 + i, 40 + 2 * i, 3), dtype=np.uint8)
        p = folder / f"img{i}.{'jpg' if i % 2 else 'png'}"
        Image.fromarray(arr).save(p)
        paths.append(str(p))
    return paths


@pytest.fixture
def table(tmp_path: Path) -> AnnotationTable:
    return AnnotationTable(pd.DataFrame({"image": _images(tmp_path, 4)}))


@pytest.mark.parametrize(("grayscale", "letterbox"), [(False, False), (True, True)])
def test_cache_rows_equal_direct_decode(
    table: AnnotationTable, tmp_path: Path, grayscale: bool, letterbox: bool
) -> None:
    path = build_cache(
        table, size=(16, 12), grayscale=grayscale, letterbox=letterbox, folder=tmp_path / "c", progress=False
    )
    cache = DecodedCache(path)
    assert len(cache) == 4 and cache.shape == (12, 16, 1 if grayscale else 3)
    for i, name in enumerate(table.images):
        want, want_geo = decode_image(
            Path(name).read_bytes(), size=(16, 12), grayscale=grayscale, letterbox=letterbox
        )
        got, geo = cache.read(i)
        assert np.array_equal(got, want) and geo == want_geo


def test_fresh_cache_is_not_rewritten(table: AnnotationTable, tmp_path: Path) -> None:
    path = build_cache(table, size=(8, 8), folder=tmp_path / "c", progress=False)
    before = os.stat(path).st_mtime_ns, os.stat(path).st_ino
    assert build_cache(table, size=(8, 8), folder=tmp_path / "c", progress=False) == path
    assert (os.stat(path).st_mtime_ns, os.stat(path).st_ino) == before


def test_changed_image_rebuilds_only_its_row(
    table: AnnotationTable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "c"
    path = build_cache(table, size=(8, 8), folder=folder, progress=False)
    Image.new("RGB", (40, 40), (7, 8, 9)).save(table.images[2], "PNG")
    decoded: list[str] = []
    import cnnkit.data.cache as cache_mod

    real = cache_mod.decode_image

    def spy(data: bytes, **kw: object) -> object:
        decoded.append(str(kw["name"]))
        return real(data, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(cache_mod, "decode_image", spy)
    assert build_cache(table, size=(8, 8), folder=folder, progress=False) == path
    assert decoded == [table.images[2]]
    img, geo = DecodedCache(path).read(2)
    assert img[0, 0].tolist() == [7, 8, 9] and geo.orig_size == (40, 40)
    assert not [p for p in folder.iterdir() if p.suffix == ".tmp"]


def test_reads_are_positional_and_small(
    table: AnnotationTable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = DecodedCache(build_cache(table, size=(16, 12), folder=tmp_path / "c", progress=False))
    sizes: list[int] = []
    real_preadv, real_pread = os.preadv, os.pread
    monkeypatch.setattr(
        os, "preadv", lambda fd, bufs, off: sizes.append(len(bufs[0])) or real_preadv(fd, bufs, off)
    )
    monkeypatch.setattr(os, "pread", lambda fd, n, off: sizes.append(n) or real_pread(fd, n, off))
    monkeypatch.setattr(
        "builtins.open", lambda *a, **k: pytest.fail("the cache must not be opened as a file")
    )
    cache.read(3)
    assert sizes == [16 * 12 * 3, 48]  # one image row, one geometry row; never the whole file


def test_cache_pickles_without_descriptor(table: AnnotationTable, tmp_path: Path) -> None:
    cache = DecodedCache(build_cache(table, size=(8, 8), folder=tmp_path / "c", progress=False))
    a, _ = cache.read(1)
    copy = pickle.loads(pickle.dumps(cache))
    assert copy._fd == -1
    assert np.array_equal(copy.read(1)[0], a)
    with pytest.raises(IndexError):
        copy.read(4)


def test_failed_build_leaves_no_file(table: AnnotationTable, tmp_path: Path) -> None:
    Path(table.images[1]).write_bytes(b"not an image")
    folder = tmp_path / "c"
    with pytest.raises(DataError, match="img1.jpg"):
        build_cache(table, size=(8, 8), folder=folder, progress=False)
    assert list(folder.iterdir()) == []


def test_truncated_or_foreign_file_is_rebuilt(table: AnnotationTable, tmp_path: Path) -> None:
    folder = tmp_path / "c"
    path = cache_path(table, size=(8, 8), grayscale=False, letterbox=False, folder=folder)
    folder.mkdir()
    path.write_bytes(b"CNNKITC\x01garbage")
    with pytest.raises(DataError, match="not a cnnkit decoded cache"):
        DecodedCache(path)
    build_cache(table, size=(8, 8), folder=folder, progress=False)
    assert len(DecodedCache(path)) == 4


def test_one_file_per_size_and_mode(table: AnnotationTable, tmp_path: Path) -> None:
    kw = {"folder": tmp_path, "grayscale": False, "letterbox": False}
    names = {
        cache_path(table, size=(8, 8), **kw).name,  # type: ignore[arg-type]
        cache_path(table, size=(8, 9), **kw).name,  # type: ignore[arg-type]
        cache_path(table, size=(8, 8), folder=tmp_path, grayscale=True, letterbox=False).name,
        cache_path(table, size=(8, 8), folder=tmp_path, grayscale=False, letterbox=True).name,
        cache_path(table.subset([0, 1]), size=(8, 8), **kw).name,  # type: ignore[arg-type]
    }
    assert len(names) == 5


def test_build_with_workers_matches(table: AnnotationTable, tmp_path: Path) -> None:
    a = DecodedCache(build_cache(table, size=(8, 8), folder=tmp_path / "a", progress=False))
    b = DecodedCache(build_cache(table, size=(8, 8), folder=tmp_path / "b", workers=2, progress=False))
    assert all(np.array_equal(a.read(i)[0], b.read(i)[0]) for i in range(4))
