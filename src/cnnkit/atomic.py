"""Atomic file writes, for every file cnnkit writes: a reader sees the old file or the new one.

Every write goes to a temporary file in the destination's folder (same file system, so
the rename is atomic), is flushed and fsynced, then ``os.replace``d over the target. If
anything fails on the way, the temporary file is removed and the previous file is left
untouched. ``atomic_open`` is for code that writes bytes itself; ``atomic_path`` for
libraries that insist on a file name (``savefig``, ``torch.onnx.export``, ``jit.save``).
This module sits at the bottom of the layering: any part of cnnkit may use it.

A write that fails for a reason about the user's path (a full disk, a read-only folder, a file
where a folder should be: ``PATH_ERRNOS``) raises ONE ``OSError`` with that errno and the target
named, whatever the writer raised on top of it (``torch.save`` chains a ``RuntimeError`` to the
``OSError``; safetensors raises its own error with "(os error 28)" in the text). The command line
prints such an error as one line; any other failure keeps its type and traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

#: Errors about the user's output path, not bugs: named in one line by the command line (exit 2).
PATH_ERRNOS = frozenset(code for code in (
    errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR,
    errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.EFBIG) if code is not None)
_OS_ERROR_TEXT = re.compile(r"\(os error (\d+)\)")  # how Rust's std::io::Error shows an errno (safetensors)


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
    with _path_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            _usual_mode(tmp)
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
    suffix = f".tmp{target.suffix}" if keep_suffix else ".tmp"
    with _path_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            yield tmp
            # The writer may have made the file anew (safetensors writes a 0600 file and renames it)
            _usual_mode(tmp)
            with open(tmp, "rb+") as f:  # the writer closed it; make its bytes durable before the rename
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    _fsync_dir(target.parent)


@contextlib.contextmanager
def _path_errors(target: Path) -> Iterator[None]:
    """Re-raise a failure about the user's path (``PATH_ERRNOS``) as one ``OSError`` naming it."""
    try:
        yield
    except BaseException as exc:
        found = path_error(exc, target)
        if found is None:
            raise
        raise found from None


def path_error(exc: BaseException, target: str | os.PathLike[str]) -> OSError | None:
    """The ``OSError`` about the user's path behind ``exc`` (itself, what caused it or what it was raised
    while handling, or an errno in a Rust library's message), naming ``target`` (or the folder that
    failed); None when the failure is about something else."""
    seen: BaseException | None = exc
    while seen is not None:
        code = seen.errno if isinstance(seen, OSError) else _errno_in_text(str(seen))
        if code is not None and code in PATH_ERRNOS:
            name = getattr(seen, "filename", None)
            named = os.fsdecode(name) if isinstance(name, (str, bytes)) else None
            ours = named is not None and Path(named).name.startswith(f".{Path(target).name}.")  # a temp file
            return OSError(code, os.strerror(code), named if named and not ours else os.fspath(target))
        seen = seen.__cause__ or seen.__context__
    return None


def _errno_in_text(text: str) -> int | None:
    found = _OS_ERROR_TEXT.search(text)
    return int(found.group(1)) if found else None


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
