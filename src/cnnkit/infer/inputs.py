"""Turn whatever a user points ``predict`` at into an ``AnnotationTable`` of images."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cnnkit.data.sources import read_annotations
from cnnkit.data.table import AnnotationTable
from cnnkit.data.video import is_video
from cnnkit.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def video_paths(source: Any) -> list[Path]:
    """The video files ``source`` names (a path or a list of paths), or [] when it names none.

    Raises:
        DataError: videos mixed with other inputs (predict them in separate calls: the
            outputs have different rows), or a named video that does not exist.
    """
    if isinstance(source, (str, Path)):
        items = [source]
    elif isinstance(source, Sequence) and not isinstance(source, (pd.DataFrame, AnnotationTable)) and source:
        items = list(source)
    else:
        return []
    if not all(isinstance(s, (str, Path)) for s in items):
        return []
    videos = [Path(s) for s in items if is_video(s)]
    if videos and len(videos) != len(items):
        others = [str(s) for s in items if not is_video(s)]
        raise DataError(f"videos and other inputs in one call ({others[:3]}): predict videos and images "
                        "separately (one row per frame against one row per image)")
    missing = [str(v) for v in videos if not v.is_file()]
    if missing:
        raise DataError(f"{len(missing)} video(s) not found, e.g. {missing[:3]}")
    return videos


def images_table(source: Any, *, images: str | Path | None = None) -> AnnotationTable:
    """Image paths, a folder, a zip, an annotation file, a DataFrame or a table -> a table.

    Folders are searched recursively in sorted order; a zip contributes its image members
    (read from the archive later, never extracted).
    """
    if isinstance(source, AnnotationTable):
        return source
    if isinstance(source, pd.DataFrame):
        return read_annotations(source, images=images)
    if isinstance(source, (str, Path)):
        return _from_path(Path(source), images)
    if isinstance(source, Sequence) and source and all(isinstance(s, (str, Path)) for s in source):
        return _from_files([Path(s) for s in source], f"{len(source)} image paths")
    raise DataError(f"cannot predict on {type(source).__name__}: pass image paths, a folder, a .zip, "
                    f"an annotation file, a DataFrame or an AnnotationTable")


def _from_path(path: Path, images: str | Path | None) -> AnnotationTable:
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and is_image_name(p.name))
        if not found:
            videos = sum(1 for p in path.rglob("*") if is_video(p)
                         and not any(part.startswith(".") for part in p.relative_to(path).parts))
            archive = (f"; it holds {videos} videos: predict them as an archive, one output set per video: "
                       f"cnnkit predict MODEL {path} --out preds/ (cnnkit.infer.archive)") if videos else ""
            raise DataError(f"{path}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)}){archive}")
        return _from_files(found, str(path))
    if path.suffix.lower() == ".zip":
        with zipfile.ZipFile(path) as zf:
            members = sorted(n for n in zf.namelist() if is_image_name(n) and not n.endswith("/"))
        if not members:
            raise DataError(f"{path}: the zip archive holds no images")
        return AnnotationTable(pd.DataFrame({"image": members}), source=str(path), zip=path)
    if is_image_name(path.name):
        return _from_files([path], str(path))
    return read_annotations(path, images=images)


def _from_files(paths: list[Path], source: str) -> AnnotationTable:
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"{len(missing)} image(s) not found, e.g. {missing[:3]}")
    return AnnotationTable(pd.DataFrame({"image": [str(p.resolve()) for p in paths]}), source=source)
