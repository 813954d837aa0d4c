"""Atomic file writes, for every file cnnkit writes: a reader sees the old file or the new one.

Every write goes to a temporary file in the destination's folder (same file system, so
the rename is atomic), is flushed and fsynced, then ``os.replace``d over the target. If
anything fails on the way, the temporary file is removed and the previous file is left
untouched. ``atomic_open`` is for code that writes bytes itself; ``atomic_path`` for
libraries that insist on a file name (``savefig``, ``torch.onnx.export``, ``jit.save``).
This module sits at the bottom of the layering: any part of cnnkit may use it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a binary file for writing that replaces ``path`` only on success.

    Example:
        >>> import tempfile, pathlib
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     target = pathlib.Path(folder) / "a.bin"
        ...     with atomic_open(target) as f:
        ...         _ = f.write(b"hello")
        ...     print(target.read_bytes())
        b'hello'
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    _usual_mode(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:  # also KeyboardInterrupt: never leave a temp file behind
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, keep_suffix: bool = True) -> Iterator[Path]:
    """A temporary file name beside ``path`` that replaces ``path`` on success.

    ``keep_suffix``: the temporary name ends with ``path``'s suffix, for libraries that choose the
    format by it (``savefig``); False for writers that do not, so a temporary left by a kill is
    never mistaken for the real thing by a ``*.safetensors`` glob.

    Example:
        >>> import tempfile, pathlib
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     target = pathlib.Path(folder) / "a.txt"
        ...     with atomic_path(target) as tmp:
        ...         _ = tmp.write_text("hi")
        ...     print(target.read_text(), sorted(p.name for p in pathlib.Path(folder).iterdir()))
        hi ['a.txt']
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = f".tmp{target.suffix}" if keep_suffix else ".tmp"
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    _usual_mode(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # the writer closed it; make its bytes durable before the rename
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _usual_mode(tmp: Path) -> None:
    """mkstemp makes 0600 files; give the file what open() would (0666 less the umask), so a
    checkpoint or report on a shared drive is as readable as any other file the user writes."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (POSIX); silently skipped where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename has still happened
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_open(path) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    return atomic_write_bytes(path, text.encode(encoding))


def remove_stale_temps(folder: str | os.PathLike[str], names: tuple[str, ...]) -> list[str]:
    """Delete temporary files that ``atomic_open`` left for ``names`` in ``folder`` when a process was killed.

    Only files named like this module's temporaries for those targets (``.<name>.<random>.tmp[suffix]``)
    are touched. Call it only when no other process writes these files (e.g. at a run's start).

    Returns:
        The names removed, sorted.
    """
    base = Path(folder)
    removed = []
    for name in names:
        for tmp in base.glob(f".{name}.*.tmp*"):  # atomic_path keeps the suffix: .a.png.x.tmp.png
            tmp.unlink(missing_ok=True)
            removed.append(tmp.name)
    return sorted(removed)
