"""Class-per-folder trees -> AnnotationTable with a ``label`` column (absolute paths).

``root/<class>/**/<image>``: the class is the first folder under ``root``; files with an
image extension anywhere below it belong to it (other files are skipped and counted).
When every folder under ``root`` is a split name (train, val, test, ...) holding class
folders, all splits are read into one table with a ``split`` column, and this is
reported; pass ``root/train`` to read one split.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import pandas as pd

from cnnkit.data.table import AnnotationTable
from cnnkit.errors import DataError

log = logging.getLogger("cnnkit")

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
SPLIT_NAMES = frozenset({"train", "training", "val", "valid", "validation", "test", "testing", "dev"})


def read_folder(root: Path) -> AnnotationTable:
    """The class table of a class-per-folder tree (or of its split folders)."""
    root = Path(os.path.abspath(root))
    subdirs = _subdirs(root)
    if not subdirs:
        raise DataError(f"{root}: no class folders found. Expected {root}/<class name>/<images>.")
    if all(d.lower() in SPLIT_NAMES for d in subdirs) and all(_subdirs(root / d) for d in subdirs):
        log.info("%s: found split folders %s; reading all into one table with a 'split' column "
                 "(read %s to get one split)", root, "/".join(subdirs), root / subdirs[0])
        parts = [_class_tree(root / d).assign(split=d) for d in subdirs]
        df = pd.concat(parts, ignore_index=True)
    else:
        df = _class_tree(root)
    classes = tuple(sorted(set(df["label"]) | set(_class_dirs(root))))  # empty classes stay (warned)
    return AnnotationTable(df, (), classes, str(root))


def _class_dirs(root: Path) -> list[str]:
    subdirs = _subdirs(root)
    if all(d.lower() in SPLIT_NAMES for d in subdirs) and all(_subdirs(root / d) for d in subdirs):
        return sorted({c for d in subdirs for c in _subdirs(root / d)})
    return subdirs


def _subdirs(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def _class_tree(root: Path) -> pd.DataFrame:
    images: list[str] = []
    labels: list[str] = []
    skipped = 0
    for cls in _subdirs(root):
        found = []
        for folder, dirs, files in os.walk(root / cls):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for f in sorted(files):
                ok = os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
                skipped += not ok and not f.startswith(".")
                if ok:
                    found.append(os.path.join(folder, f))
        if not found:
            warnings.warn(f"{root / cls}: class {cls!r} has no images", UserWarning, stacklevel=3)
        images += found
        labels += [cls] * len(found)
    loose = [f for f in os.listdir(root) if os.path.isfile(root / f) and not f.startswith(".")]
    if loose:
        log.info("%s: ignored %d files directly in the folder (not in a class folder)", root, len(loose))
    if skipped:
        log.info("%s: skipped %d files without an image extension", root, skipped)
    return pd.DataFrame({"image": images, "label": labels})
