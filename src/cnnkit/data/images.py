"""Where image bytes come from: files on disk, or members of one zip archive.

Both sources pickle (the dataset is sent to DataLoader worker processes) and hold no open
handle until the first read in a process. Members of a zip are READ, never extracted, so a
member named ``/etc/x`` or ``../x`` is only a name to look up, never a path written to.
"""

from __future__ import annotations

import os
import zipfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from PIL import Image

from cnnkit.data.table import AnnotationTable
from cnnkit.errors import DataError, did_you_mean

#: A source's identity for the decoded cache: (name, a, b) = (path, byte size, mtime_ns) for
#: files, (member, CRC-32, byte size) for zip members.
Fingerprint = tuple[str, int, int]

_FIX_HINT = "run cnnkit.check_data(table) (CLI: cnnkit check-data) to list every missing image"
#: Bytes per pixel of the largest uncompressed image format (16-bit RGBA): a file larger than
#: Pillow's pixel limit at this many bytes a pixel cannot be an image Pillow would decode.
MAX_BYTES_PER_PIXEL = 8


def max_image_bytes() -> int | None:
    """The largest image file read into memory: Pillow's decompression-bomb limit
    (``PIL.Image.MAX_IMAGE_PIXELS``) at ``MAX_BYTES_PER_PIXEL``; None when that limit is switched off."""
    pixels = Image.MAX_IMAGE_PIXELS
    return None if pixels is None else int(pixels) * MAX_BYTES_PER_PIXEL


def check_image_bytes(size: int, where: str) -> None:
    """Refuse to read ``size`` bytes as one image (``where`` names it) when no image can be that large."""
    limit = max_image_bytes()
    if limit is not None and size > limit:
        raise DataError(
            f"{where}: {size:,} bytes, more than any image within Pillow's decompression-bomb limit "
            f"({Image.MAX_IMAGE_PIXELS:,} pixels x {MAX_BYTES_PER_PIXEL} bytes = {limit:,}); not read. Remove it "
            "from the table, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust it."
        )


class ImageSource(ABC):
    """Reads the encoded bytes of the images a table names."""

    @staticmethod
    def for_table(table: AnnotationTable) -> ImageSource:
        """:class:`ZipImages` when ``table.zip`` is set, else :class:`FileImages`."""
        return ZipImages(table.zip) if table.zip is not None else FileImages()

    @abstractmethod
    def read(self, name: str) -> bytes:
        """The file's bytes. Raises DataError naming the image when it is missing."""

    @abstractmethod
    def exists(self, name: str) -> bool:
        """True when ``name`` can be read."""

    @abstractmethod
    def fingerprint(self, name: str) -> Fingerprint:
        """What identifies this version of the image (see :data:`Fingerprint`)."""

    def describe(self, name: str) -> str:
        """How error messages name the image."""
        return name


class FileImages(ImageSource):
    """Images as files; ``name`` is a path (absolute once a reader resolved it)."""

    def read(self, name: str) -> bytes:
        try:
            check_image_bytes(os.stat(name).st_size, f"image file {name!r}")
            return Path(name).read_bytes()
        except FileNotFoundError as exc:
            raise DataError(f"image file not found: {name!r}. {_FIX_HINT}.") from exc
        except OSError as exc:
            raise DataError(f"cannot read image file {name!r}: {exc}. {_FIX_HINT}.") from exc

    def exists(self, name: str) -> bool:
        return os.path.isfile(name)

    def fingerprint(self, name: str) -> Fingerprint:
        try:
            st = os.stat(name)
        except OSError as exc:
            raise DataError(f"image file not found: {name!r}. {_FIX_HINT}.") from exc
        return (name, int(st.st_size), int(st.st_mtime_ns))


class ZipImages(ImageSource):
    """Images as members of one zip archive; the handle is opened per process on first use.

    The member index (name -> ZipInfo) is built once per process from the central directory.
    A process forked after the parent opened the archive reopens it (a shared file offset
    would interleave reads).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._zf: zipfile.ZipFile | None = None
        self._index: dict[str, zipfile.ZipInfo] = {}
        self._pid = -1

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]

    def _archive(self) -> zipfile.ZipFile:
        if self._zf is None or self._pid != os.getpid():
            try:
                zf = zipfile.ZipFile(self.path)
            except FileNotFoundError as exc:
                raise DataError(f"zip archive not found: {str(self.path)!r}") from exc
            except (zipfile.BadZipFile, OSError) as exc:
                raise DataError(f"{str(self.path)!r} is not a readable zip archive: {exc}") from exc
            self._zf, self._pid = zf, os.getpid()
            self._index = {info.filename: info for info in zf.infolist() if not info.is_dir()}
        return self._zf

    def close(self) -> None:
        """Close this process's handle (it reopens on the next read)."""
        if self._zf is not None:
            self._zf.close()
        self._zf, self._index, self._pid = None, {}, -1

    def _info(self, name: str) -> zipfile.ZipInfo:
        self._archive()
        info = self._index.get(name) or self._index.get(name.replace("\\", "/").removeprefix("./"))
        if info is None:
            base = name.replace("\\", "/").rsplit("/", 1)[-1]
            near = [n for n in self._index if n.rsplit("/", 1)[-1] == base]
            hint = f" Did you mean {near[0]!r}?" if near else did_you_mean(name, list(self._index)[:2000])
            raise DataError(
                f"member {name!r} not found in zip archive {str(self.path)!r}.{hint} {_FIX_HINT}."
            )
        return info

    def read(self, name: str) -> bytes:
        info = self._info(name)
        check_image_bytes(info.file_size, f"member {name!r} of zip archive {str(self.path)!r}")  # before reading
        try:
            return self._archive().read(info)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DataError(f"cannot read member {name!r} of {str(self.path)!r}: {exc}") from exc

    def exists(self, name: str) -> bool:
        try:
            self._info(name)
        except DataError:
            return False
        return True

    def fingerprint(self, name: str) -> Fingerprint:
        info = self._info(name)
        return (info.filename, int(info.CRC), int(info.file_size))

    def describe(self, name: str) -> str:
        return f"{self.path}:{name}"
