"""Image sources: files and zip members (lazy, per-process handle, pickles, names only)."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from cnnkit.data.images import FileImages, ImageSource, ZipImages
from cnnkit.data.table import AnnotationTable
from cnnkit.errors import DataError


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (3, 2), value).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    path = tmp_path / "imgs.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a/one.png", _png(1))
        zf.writestr("two.png", _png(2))
        zf.writestr("../evil.png", _png(3))
        zf.writestr("/abs/path.png", _png(4))
    return path


def test_for_table_picks_the_source(archive: Path) -> None:
    df = pd.DataFrame({"image": ["two.png"]})
    assert isinstance(ImageSource.for_table(AnnotationTable(df)), FileImages)
    src = ImageSource.for_table(AnnotationTable(df, zip=archive))
    assert isinstance(src, ZipImages) and src.path == archive


def test_zip_reads_members_lazily_and_never_extracts(archive: Path, tmp_path: Path) -> None:
    src = ZipImages(archive)
    assert src._zf is None  # nothing opened by the constructor
    assert src.read("a/one.png") == _png(1)
    assert src._zf is not None
    assert src.read("../evil.png") == _png(3)
    assert src.read("/abs/path.png") == _png(4)
    assert sorted(p.name for p in tmp_path.parent.iterdir() if p.name == "evil.png") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs.zip"]


def test_zip_pickles_without_handle_and_reads_after(archive: Path) -> None:
    src = ZipImages(archive)
    src.read("two.png")
    copy = pickle.loads(pickle.dumps(src))
    assert copy._zf is None and copy._index == {}
    assert copy.read("two.png") == _png(2)


def test_zip_reopens_in_a_forked_process(archive: Path) -> None:
    src = ZipImages(archive)
    src.read("two.png")
    first = src._zf
    src._pid = os.getpid() + 1  # as seen by a forked child: the parent's handle is not reused
    assert src.read("two.png") == _png(2)
    assert src._zf is not first


def test_zip_missing_member_names_archive_and_suggests(archive: Path) -> None:
    src = ZipImages(archive)
    with pytest.raises(
        DataError, match=r"member 'b/one\.png' not found in zip archive .*imgs\.zip.*'a/one\.png'"
    ):
        src.read("b/one.png")
    assert not src.exists("b/one.png") and src.exists("a/one.png")


def test_zip_backslash_names_are_found(archive: Path) -> None:
    assert ZipImages(archive).read("a\\one.png") == _png(1)


def test_zip_fingerprint_is_crc_and_size(archive: Path) -> None:
    name, crc, size = ZipImages(archive).fingerprint("two.png")
    assert (
        name == "two.png" and size == len(_png(2)) and crc == zipfile.ZipFile(archive).getinfo("two.png").CRC
    )


def test_missing_archive_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="zip archive not found"):
        ZipImages(tmp_path / "nope.zip").read("x.png")


def test_files_read_fingerprint_and_missing(tmp_path: Path) -> None:
    p = tmp_path / "x.png"
    p.write_bytes(_png(5))
    src = FileImages()
    assert src.read(str(p)) == _png(5) and src.exists(str(p))
    fp = src.fingerprint(str(p))
    os.utime(p, ns=(fp[2] + 10**9, fp[2] + 10**9))
    assert src.fingerprint(str(p)) != fp
    with pytest.raises(DataError, match=r"image file not found: '.*gone\.png'.*check_data"):
        src.read(str(tmp_path / "gone.png"))
    assert not src.exists(str(tmp_path / "gone.png"))
