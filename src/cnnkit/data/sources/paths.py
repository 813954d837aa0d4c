"""Resolve the image paths of a freshly read table to files on disk or zip members.

Rules (see docs/data.md):
1. A relative path is tried against each root in order (the ``images`` folder when
   given, else the annotation file's folder, then format-specific extras such as VIA's
   ``default_filepath``).
2. An absolute path that exists is kept.
3. An absolute path that does not exist (written on another computer, Windows paths and
   ``file://`` URIs included) is re-rooted by its file name into the first root; one
   line reports how many rows were re-rooted.
4. With ``images``, relative paths that do not resolve are re-rooted into it by their
   trailing components (``labeled-data/v1/img001.png`` -> ``v1/img001.png``, then
   ``img001.png``), but only when every one of them is found that way and no two
   different paths land on the same file; reported in the same line as rule 3. This is
   a table moved away from its project (a DeepLabCut ``CollectedData_*.csv`` pointed at
   the folder of frames).
5. Without ``images``, when files are still missing, a single folder named ``images``
   (any case) beside the annotation file or beside its folder that holds every missing
   file name is used, and reported.
6. Anything still missing raises one ``DataError`` naming the first rows.

Existence is checked with one directory listing per folder (cached), never one
``stat`` per row, so 100k rows stay fast.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from cnnkit.errors import DataError

log = logging.getLogger("cnnkit")

_MAX_SHOWN = 5


def file_name(raw: str) -> str:
    """The last path component of a POSIX, Windows or ``file://`` path.

    Example:
        >>> file_name("file://C:\\\\data\\\\img 1.png"), file_name("/home/a/b.jpg")
        ('img 1.png', 'b.jpg')
    """
    text = strip_uri(raw).rstrip("/\\")
    return text.replace("\\", "/").rsplit("/", 1)[-1] if "\\" in text else text.rsplit("/", 1)[-1]


def strip_uri(raw: str) -> str:
    """Drop a ``file://`` prefix (VIA writes it for local files)."""
    return raw[7:] if raw.startswith("file://") else raw


_WINDOWS_ABS = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")  # C:\ or C:/ or \\server


def _is_absolute(text: str) -> bool:
    return text.startswith("/") or _WINDOWS_ABS.match(text) is not None


class _Listing:
    """Cached directory listings: ``exists(path)`` costs one listdir per folder."""

    def __init__(self) -> None:
        self._dirs: dict[str, frozenset[str]] = {}

    def names(self, folder: str) -> frozenset[str]:
        if folder not in self._dirs:
            try:
                self._dirs[folder] = frozenset(os.listdir(folder))
            except OSError:
                self._dirs[folder] = frozenset()
        return self._dirs[folder]

    def exists(self, path: str) -> bool:
        folder, name = os.path.split(path)
        return bool(name) and name in self.names(folder or ".")


def resolve_paths(
    raw: Sequence[str], roots: Sequence[Path], *, source: str, images_given: bool, annotation_dir: Path | None
) -> list[str]:
    """Absolute path strings for ``raw`` (see the module rules). Raises DataError if any is missing.

    Args:
        raw: image paths as written in the annotations.
        roots: folders relative paths are tried against, in order (at least one).
        source: the annotation file, for messages.
        images_given: whether the user passed ``images=`` (disables auto-detection).
        annotation_dir: the annotation file's folder (None for a DataFrame).
    """
    listing = _Listing()
    roots = [Path(os.path.abspath(r)) for r in roots]
    out: list[str | None] = [_locate(p, roots, listing) for p in raw]
    rerooted = 0
    for i, p in enumerate(raw):
        if out[i] is None and _is_absolute(strip_uri(p)):
            cand = os.path.join(roots[0], file_name(p))
            if listing.exists(cand):
                out[i], rerooted = cand, rerooted + 1
    if images_given:
        rerooted += _reroot_relative(raw, out, roots[0], listing)
    missing = [i for i, o in enumerate(out) if o is None]
    target = str(roots[0])
    if missing and not images_given and annotation_dir is not None:
        found = _auto_images_folder([raw[i] for i in missing], annotation_dir, listing)
        if found is not None:  # unambiguous: one 'images' folder holds every missing name
            for i in missing:
                out[i] = os.path.join(found, file_name(raw[i]))
            rerooted, target, missing = rerooted + len(missing), f"{found} (found beside the annotations)", []
    if rerooted:
        log.info("%s: re-rooted %d of %d image paths by file name into %s; pass images= to choose the folder",
                 source, rerooted, len(raw), target)
    if missing:
        _raise_missing(raw, missing, roots, source)
    return [str(o) for o in out]


def _locate(raw: str, roots: Sequence[Path], listing: _Listing) -> str | None:
    text = strip_uri(raw)
    if _is_absolute(text):
        return os.path.normpath(text) if listing.exists(os.path.normpath(text)) else None
    rel = text.replace("\\", "/")
    for root in roots:
        cand = os.path.normpath(os.path.join(root, rel))
        if listing.exists(cand):
            return cand
    return None


def _reroot_relative(raw: Sequence[str], out: list[str | None], root: Path, listing: _Listing) -> int:
    """Missing relative paths found under ``root`` by their trailing components; all of them or none.

    Fills ``out`` in place and returns how many were re-rooted (0 when any is not found, or when
    two different paths would land on one file: ``v1/img001.png`` and ``v2/img001.png``).
    """
    found: dict[int, str] = {}
    for i, o in enumerate(out):
        if o is not None or _is_absolute(strip_uri(raw[i])):
            continue
        parts = [p for p in strip_uri(raw[i]).replace("\\", "/").split("/") if p not in ("", ".", "..")]
        tails = (os.path.join(root, *parts[k:]) for k in range(1, len(parts)))
        hit = next((t for t in tails if listing.exists(t)), None)
        if hit is None:
            return 0
        found[i] = hit
    if len(set(found.values())) < len({raw[i] for i in found}):
        return 0
    for i, hit in found.items():
        out[i] = hit
    return len(found)


def _auto_images_folder(raw: Sequence[str], annotation_dir: Path, listing: _Listing) -> str | None:
    """A single ``images`` folder (any case) near the annotations holding every missing name."""
    cands = []
    for parent in {annotation_dir.resolve(), annotation_dir.resolve().parent}:
        for name in listing.names(str(parent)):
            full = os.path.join(parent, name)
            if name.lower() == "images" and os.path.isdir(full):
                cands.append(full)
    hits = [c for c in cands if all(file_name(r) in listing.names(c) for r in raw)]
    return hits[0] if len(hits) == 1 else None


def _raise_missing(raw: Sequence[str], missing: Sequence[int], roots: Sequence[Path], source: str) -> None:
    shown = "; ".join(f"row {i}: {raw[i]!r}" for i in missing[:_MAX_SHOWN])
    more = f" (and {len(missing) - _MAX_SHOWN} more)" if len(missing) > _MAX_SHOWN else ""
    tried = ", ".join(str(r) for r in roots)
    if any(raw[i].startswith(("http://", "https://")) for i in missing):
        tried += " (web URLs are not downloaded: download the images and pass images=<their folder>)"
    raise DataError(
        f"{source}: {len(missing)} of {len(raw)} images not found: {shown}{more}. "
        f"Relative paths were tried against: {tried}; absolute paths that do not exist were looked up "
        f"by file name there. Pass images=<the folder that holds the images>."
    )


def resolve_members(raw: Sequence[str], zip_path: Path, *, prefix: str | None, source: str) -> list[str]:
    """Zip member names for ``raw``, checked against the archive's name list (nothing extracted).

    A path is matched as written (``./`` and backslashes normalised), then under
    ``prefix`` (the ``images`` argument, a folder inside the archive), then by file name
    when that name is unique in the archive.
    """
    try:
        with zipfile.ZipFile(zip_path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{source}: cannot open zip archive {zip_path}: {exc}. Pass zip=<a .zip file>.") from exc
    members = set(names)
    by_name: dict[str, str | None] = {}
    for n in names:
        key = PurePosixPath(n).name
        by_name[key] = None if key in by_name else n  # None marks an ambiguous name
    out: list[str | None] = []
    rerooted = 0
    for p in raw:
        rel = os.path.normpath(strip_uri(p).replace("\\", "/")).lstrip("/")
        tries = [rel] + ([f"{prefix.strip('/')}/{rel}"] if prefix else [])
        hit = next((t for t in tries if t in members), None)
        if hit is None and by_name.get(file_name(p)):
            hit, rerooted = by_name[file_name(p)], rerooted + 1
        out.append(hit)
    if rerooted:
        log.info("%s: matched %d of %d image paths to zip members by file name", source, rerooted, len(raw))
    missing = [i for i, o in enumerate(out) if o is None]
    if missing:
        shown = "; ".join(f"row {i}: {raw[i]!r}" for i in missing[:_MAX_SHOWN])
        raise DataError(
            f"{source}: {len(missing)} of {len(raw)} images are not members of {zip_path}: {shown}. "
            f"Pass images=<the folder inside the archive> or check the archive's contents."
        )
    return [str(o) for o in out]
