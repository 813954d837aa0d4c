"""``read_annotations``: any supported annotation source -> one ``AnnotationTable``.

The format is detected from the content (never from the file name alone):
- a folder -> class-per-folder tree (``folder``);
- JSON with ``images``/``annotations``/``categories`` -> COCO keypoints (``coco``);
- other JSON -> VIA 1/2/3 (``via``);
- text whose header has ``region_shape_attributes`` -> VIA CSV export (``via``);
- text starting with ``scorer`` -> DeepLabCut CollectedData (``dlc``);
- HDF5 holding ``df_with_missing`` (or ``keypoints``) -> DeepLabCut CollectedData ``.h5`` (``dlc``);
- other HDF5 (``.slp``, ``.pkg.slp``) -> SLEAP labels (``slp``, through sleap-io);
- other text -> a plain CSV table (``csv``); a DataFrame is read like a CSV.

See docs/data.md for layouts, options and path rules.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from cnnkit.data.sources.coco import coco_table, is_coco
from cnnkit.data.sources.csv import Landmarks, load_csv, read_csv_table
from cnnkit.data.sources.dlc import H5_KEYS, read_dlc, read_dlc_h5
from cnnkit.data.sources.folder import read_folder
from cnnkit.data.sources.paths import resolve_members, resolve_paths
from cnnkit.data.sources.sleap import read_sleap
from cnnkit.data.sources.via import parse_via_csv, parse_via_json, via_table
from cnnkit.data.table import AnnotationTable, infer_flip_pairs
from cnnkit.errors import ConfigError, DataError, did_you_mean

__all__ = ["FORMATS", "read_annotations"]

log = logging.getLogger("cnnkit")

FORMATS = ("csv", "via", "dlc", "coco", "folder", "slp")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
FlipPairs = Literal["auto", "none"] | Sequence[tuple[str, str]] | None


def read_annotations(
    source: str | Path | pd.DataFrame,
    *,
    images: str | Path | None = None,
    zip: str | Path | None = None,  # noqa: A002 - the documented option name
    landmark_attribute: str | None = None,
    landmarks: Landmarks = None,
    image_column: str | None = None,
    label_column: str | Sequence[str] | None = None,
    unannotated: Literal["drop", "keep"] = "drop",
    format: str | None = None,  # noqa: A002
    flip_pairs: FlipPairs = "auto",
) -> AnnotationTable:
    """Read annotations from a file, a folder or a DataFrame into an ``AnnotationTable``.

    Args:
        source: a CSV/JSON file, a class-per-folder tree, or a pandas DataFrame.
        images: folder relative image paths are resolved against (default: the annotation
            file's folder, plus VIA's ``default_filepath`` and a DeepLabCut project root);
            with ``zip``, a folder inside the archive.
        zip: a zip archive holding the images; ``image`` then holds member names.
        landmark_attribute: VIA region attribute naming each point (default: auto-detected).
        landmarks: CSV landmark names (list) or ``{name: (x_column, y_column)}``.
        image_column: CSV column with the image paths (default: detected, see docs).
        label_column: CSV class column, or several one-hot 0/1 columns.
        unannotated: images without any point: ``'drop'`` (reported) or ``'keep'`` (NaN row;
            a VIA file with no region at all then gives a table of images only).
        format: force one of ``FORMATS`` instead of detecting it.
        flip_pairs: ``'auto'`` (the default) infers left/right pairs from the landmark names
            (``left_eye``/``right_eye``, ``leftear``/``rightear``, ``ear_l``/``ear_r``, ``LHand``/``RHand``;
            :func:`cnnkit.data.table.infer_flip_pairs`), or takes the pairs the file declares (a SLEAP
            skeleton's symmetries); ``'none'`` (or None, or ``[]``) declares none; or give the pairs.
            Pairs turn on mirrored images in training (with the partners swapped).

    Returns:
        The table; ``image`` holds absolute paths (or zip member names), all checked.

    Raises:
        DataError: unreadable or inconsistent annotations, or images not found.
        ConfigError: an unknown ``format`` or ``unannotated`` value.
    """
    _check_options(format, unannotated)
    table, extra_roots, where, fmt = _read(source, format, landmark_attribute, landmarks, image_column,
                                           label_column, unannotated == "keep")
    table = _drop_unannotated(table, unannotated)
    if fmt != "folder" or zip is not None:
        table = _resolve(table, extra_roots, where, images, zip)
    _report_duplicates(table)
    pairs = _flip_pairs(flip_pairs, table)
    return dataclasses.replace(table, flip_pairs=pairs, zip=Path(zip) if zip is not None else None)


def _check_options(fmt: str | None, unannotated: str) -> None:
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}.{did_you_mean(fmt, FORMATS)} Expected one of {FORMATS}")
    if unannotated not in ("drop", "keep"):
        raise ConfigError(f"unannotated must be 'drop' or 'keep'. Received: {unannotated!r}")


def _read(
    source: str | Path | pd.DataFrame, fmt: str | None, landmark_attribute: str | None, landmarks: Landmarks,
    image_column: str | None, label_column: str | Sequence[str] | None, keep_empty: bool,
) -> tuple[AnnotationTable, list[Path], Path | None, str]:
    """(table with paths as written, extra roots, annotation folder or None, format)."""
    csv_opts: dict[str, Any] = {"image_column": image_column, "label_column": label_column, "landmarks": landmarks}
    via_opts: dict[str, Any] = {"landmark_attribute": landmark_attribute, "allow_empty": keep_empty}
    if isinstance(source, pd.DataFrame):
        if fmt not in (None, "csv"):
            raise DataError(f"a DataFrame is read as a CSV table; format={fmt!r} does not apply")
        return read_csv_table(source, source="<DataFrame>", **csv_opts), [], None, "csv"
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder. Pass an annotation file (CSV/JSON) or a folder.")
    if path.is_dir() or fmt == "folder":
        if not path.is_dir():
            raise DataError(f"{path}: format='folder' needs a folder of class folders, not a file")
        return read_folder(path), [], path, "folder"
    if path.suffix.lower() in (".h5", ".hdf5", ".slp") and not _is_hdf5(path):
        raise DataError(f"{path}: not an HDF5 file (cut short, or renamed?); SLEAP .slp and DeepLabCut .h5 "
                        f"label files are HDF5")
    fmt = fmt or _sniff(path)
    base = path.parent
    if fmt in ("hdf5-dlc", "slp") or (fmt == "dlc" and _is_hdf5(path)):
        if fmt == "slp":
            return read_sleap(path), [], base, fmt
        table, roots = read_dlc_h5(path)
        return table, roots, base, "dlc"
    if fmt == "csv":
        return read_csv_table(load_csv(path), source=str(path), **csv_opts), [], base, fmt
    if fmt == "dlc":
        table, roots = read_dlc(path)
        return table, roots, base, fmt
    if fmt == "via" and _sniff(path) != "json":
        return via_table(parse_via_csv(path), source=str(path), **via_opts), [], base, fmt
    data = load_json(path)
    if fmt == "coco" or (fmt == "json" and is_coco(data)):
        return coco_table(data, source=str(path)), [], base, "coco"
    project = parse_via_json(data, str(path))
    roots = [base / project.default_filepath] if _is_local_folder(project.default_filepath) else []
    return via_table(project, source=str(path), **via_opts), roots, base, "via"


def _sniff(path: Path) -> str:
    """'json', 'via' (VIA CSV export), 'dlc', 'csv', or for HDF5 'hdf5-dlc' or 'slp', from the first bytes."""
    if _is_hdf5(path):
        return _sniff_hdf5(path)
    head = path.read_bytes()[:4096].decode("utf-8", errors="replace").lstrip("\ufeff")
    if head.lstrip()[:1] in ("{", "["):
        return "json"
    first = head.splitlines()[0] if head else ""
    if "region_shape_attributes" in first:
        return "via"
    return "dlc" if first.startswith("scorer") else "csv"


def _is_hdf5(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE


def _sniff_hdf5(path: Path) -> str:
    """DeepLabCut's table keys -> 'hdf5-dlc'; any other HDF5 is taken as SLEAP labels ('slp')."""
    try:
        import h5py
    except ImportError:
        raise ConfigError(f"{path}: reading HDF5 label files (SLEAP .slp, DeepLabCut .h5) needs h5py and "
                          f"sleap-io: pip install 'cnnkit[formats]'") from None
    try:
        with h5py.File(path, "r") as f:
            return "hdf5-dlc" if any(k in f for k in H5_KEYS) else "slp"
    except OSError as exc:
        raise DataError(f"{path}: unreadable HDF5 file ({exc}); was it cut short?") from None


def load_json(path: Path) -> Any:
    """Parse a JSON file; errors name the line and column."""
    text = path.read_text(encoding="utf-8-sig")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}. "
                        f"Was the file cut short or edited by hand?") from exc


def _is_local_folder(text: str) -> bool:
    return bool(text) and "://" not in text


def _drop_unannotated(table: AnnotationTable, unannotated: str) -> AnnotationTable:
    if not table.landmarks:
        return table
    xs, ys = table.point_columns
    empty = table.df[xs + ys].isna().all(axis=1)
    if unannotated == "keep" or not empty.any():
        return table
    n = int(empty.sum())
    if n == len(table.df):
        raise DataError(f"{table.source}: none of the {n} images has a landmark point; nothing to train on")
    log.info("%s: dropped %d of %d images without any landmark (unannotated='keep' keeps them as NaN rows)",
             table.source, n, len(table.df))
    return table.with_df(table.df[~empty])


def _resolve(table: AnnotationTable, extra_roots: Sequence[Path], base: Path | None,
             images: str | Path | None, zip_path: str | Path | None) -> AnnotationTable:
    raw = table.df["image"].astype(str).tolist()
    if zip_path is not None:
        prefix = str(images) if images is not None else None
        resolved = resolve_members(raw, Path(zip_path), prefix=prefix, source=table.source)
    else:
        if images is not None and not Path(images).is_dir():
            raise DataError(f"{table.source}: images={str(images)!r} is not a folder")
        roots = [Path(images)] if images is not None else []
        roots += [base or Path.cwd(), *extra_roots]  # images first; the annotation folder still works
        resolved = resolve_paths(raw, roots, source=table.source, images_given=images is not None,
                                 annotation_dir=base)
    return table.with_df(table.df.assign(image=resolved))


def _report_duplicates(table: AnnotationTable) -> None:
    dup = table.df["image"].duplicated(keep=False)
    if dup.any():
        first = table.df["image"][dup].iloc[0]
        warnings.warn(f"{table.source}: {int(dup.sum())} rows share an image with another row "
                      f"(first: {first!r}); check for duplicated annotations", UserWarning, stacklevel=3)


def _flip_pairs(flip_pairs: FlipPairs, table: AnnotationTable) -> tuple[tuple[str, str], ...]:
    if flip_pairs == "auto":  # the pairs the file declares (SLEAP's symmetries), else those the names show
        return table.flip_pairs or infer_flip_pairs(table.landmarks)
    if flip_pairs is None or flip_pairs is False or flip_pairs == "none":
        return ()
    if isinstance(flip_pairs, str) or isinstance(flip_pairs, Mapping):
        raise ConfigError(f"flip_pairs must be 'auto', 'none' or a list of (left, right) names. Received: {flip_pairs!r}")
    pairs = []
    for i, pair in enumerate(flip_pairs):
        if isinstance(pair, (str, Mapping)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ConfigError(f"flip_pairs[{i}]: expected a (left, right) pair of landmark names, "
                              f"e.g. ['left_eye', 'right_eye']. Received: {pair!r}")
        pairs.append((str(pair[0]), str(pair[1])))
    return tuple(pairs)
