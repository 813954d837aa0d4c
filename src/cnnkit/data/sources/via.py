"""VGG Image Annotator (VIA) files -> AnnotationTable (paths still as written).

Read: VIA 1.x JSON (``regions`` an object), VIA 2.x projects (``_via_img_metadata``) and
annotation-only JSON (``regions`` a list), VIA 1/2 CSV exports (``#filename`` or
``filename`` header, JSON in cells) and VIA 3.x projects (``xy = [1, x, y]`` points).

Only ``point`` regions are landmarks. Other shapes are counted and reported (a warning
when points are present too, a DataError when there are none).

A landmark's name always comes from a region attribute, never from the order the points
were clicked (which differs between images). Which attribute (``identity_attribute``):
``landmark_attribute=`` when given; else the one attribute the points carry named
``landmark``/``bodypart`` (any case, plural too); else the only attribute the points carry,
if it is a dropdown/radio or names each point once per image. Points that carry several
attributes, none of those names, or no attribute that names them, are refused with the list
of attributes and how to choose. ``landmark_attribute="@order"`` (``ORDER``) is the explicit
opt-in for unnamed points: ``p0..pK-1`` in click order, logged as a warning, and every
annotated image must have the same count.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np
import pandas as pd

from cnnkit.data.sources.json_shape import json_shape_errors
from cnnkit.data.table import AnnotationTable
from cnnkit.errors import DataError, did_you_mean

log = logging.getLogger("cnnkit")

# VIA 3 shape ids (via-3.x.y/src/js/_via_metadata.js: _VIA_RSHAPE)
_VIA3_SHAPES = {1: "point", 2: "rect", 3: "circle", 4: "ellipse", 5: "line", 6: "polyline", 7: "polygon",
                8: "extreme_rect", 9: "extreme_circle"}
_VIA3_CHOICE_TYPES = {3: "radio", 4: "dropdown"}  # _VIA_ATTRIBUTE_TYPE: 1 text, 2 checkbox, 3 radio, 4 select

#: ``landmark_attribute`` value that names unnamed points by click order (p0..pK-1).
ORDER = "@order"
_IDENTITY_NAMES = ("landmark", "landmarks", "bodypart", "bodyparts")
_HOW_TO_NAME = ("In VIA add a region attribute 'landmark' (Attributes panel > Region attributes: name landmark, "
                "type dropdown, one option per landmark name) and pick each point's name; or pass "
                "landmark_attribute='@order' (--landmark-attribute @order) to name the points p0..pK-1 by click "
                "order, correct only if every image was clicked in the same order.")


class AttributeNotFoundError(DataError):
    """``landmark_attribute`` names an attribute no point carries."""


@dataclass
class ViaImage:
    """One image of a VIA file: its key, its path as written, its regions (shape, attributes)."""

    key: str
    filename: str
    regions: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)


@dataclass
class ViaProject:
    """What every VIA flavour is parsed into."""

    images: list[ViaImage]
    options: dict[str, list[str]]  # dropdown/radio region attribute -> option names in order
    default_filepath: str = ""


# -- parsing -------------------------------------------------------------------------
def parse_via_json(data: Any, source: str) -> ViaProject:
    """A parsed VIA JSON document (1.x, 2.x project or annotations, 3.x project) -> ViaProject.

    Raises:
        DataError: not a VIA document, or a part of it has the wrong JSON type.
    """
    with json_shape_errors(source, "VIA", "Image entries need 'filename' and a list of 'regions' whose "
                           "'shape_attributes'/'region_attributes' are objects (VIA 3: 'file', 'view', 'metadata' "
                           "objects). Re-save or re-export the file from VIA."):
        return _parse_via_json(data, source)


def _parse_via_json(data: Any, source: str) -> ViaProject:
    if isinstance(data, dict) and any(str(k).startswith("_via_") for k in data):
        for key in ("_via_img_metadata",):
            if key not in data:
                raise DataError(f"{source}: a VIA 2 project must have the key {key!r}; found "
                                f"{sorted(data)}. Re-save it from VIA (Project > Save) or export annotations.")
        attrs = (data.get("_via_attributes") or {}).get("region") or {}
        options = {str(k): [str(o) for o in (v.get("options") or {})] for k, v in attrs.items()
                   if isinstance(v, dict) and v.get("type") in ("dropdown", "radio")}
        core = (data.get("_via_settings") or {}).get("core") or {}
        images = _via2_images(data["_via_img_metadata"], source, "_via_img_metadata")
        return ViaProject(images, options, local_folder(str(core.get("default_filepath") or "")))
    if isinstance(data, dict) and {"project", "file", "metadata"} <= set(data):
        return _parse_via3(data, source)
    if isinstance(data, dict) and data and all(isinstance(v, dict) and "regions" in v for v in data.values()):
        return ViaProject(_via2_images(data, source, ""), {})
    raise DataError(f"{source}: not a VIA file: expected '_via_img_metadata' (VIA 2 project), "
                    f"'project'/'file'/'metadata' (VIA 3) or image entries with 'filename' and 'regions' "
                    f"(VIA 1/2 annotations). Top-level keys: {list(data)[:8] if isinstance(data, dict) else type(data).__name__}")


def local_folder(default_filepath: str) -> str:
    """VIA's ``default_filepath`` as a local folder: a ``file://`` URI is decoded, a path kept.

    Example:
        >>> local_folder("file:///data/my%20frames/")
        '/data/my frames/'
    """
    if default_filepath.startswith("file://"):
        return url2pathname(urlparse(default_filepath).path)
    return default_filepath


def _via2_images(meta: Any, source: str, where: str) -> list[ViaImage]:
    if not isinstance(meta, dict):
        raise DataError(f"{source}: {where or 'the file'} must be an object of images, got {type(meta).__name__}")
    images = []
    for key, entry in meta.items():
        path = f"{where}[{key!r}]" if where else f"[{key!r}]"
        if not isinstance(entry, dict) or "filename" not in entry:
            raise DataError(f"{source}: {path} has no 'filename'. Each image entry needs 'filename' and 'regions'.")
        regions = entry.get("regions") or []
        if isinstance(regions, dict):  # VIA 1.x: {"0": {...}, "1": {...}}
            regions = [regions[k] for k in sorted(regions, key=lambda s: int(s) if str(s).isdigit() else 0)]
        pairs = [(dict(r.get("shape_attributes") or {}), dict(r.get("region_attributes") or {})) for r in regions]
        images.append(ViaImage(str(key), str(entry["filename"]), pairs))
    return images


def _parse_via3(data: Mapping[str, Any], source: str) -> ViaProject:
    files, views = data.get("file") or {}, data.get("view") or {}
    prefixes = ((data.get("config") or {}).get("file") or {}).get("loc_prefix") or {}
    attrs = data.get("attribute") or {}
    options = {str(a.get("aname", aid)): [str(o) for o in (a.get("options") or {}).values()]
               for aid, a in attrs.items() if a.get("type") in _VIA3_CHOICE_TYPES}
    images: dict[str, ViaImage] = {}
    order = (data.get("project") or {}).get("vid_list") or list(views)
    for vid in order:
        fids = (views.get(str(vid)) or {}).get("fid_list") or []
        if len(fids) != 1 or str(fids[0]) not in files:
            raise DataError(f"{source}: view[{vid!r}] must show exactly one file of 'file'; got {fids}")
        f = files[str(fids[0])]
        name = str(f.get("src") or f.get("fname") or "")
        images[str(vid)] = ViaImage(f"view {vid}", str(prefixes.get(str(f.get("loc")), "")) + name)
    for mid, m in (data.get("metadata") or {}).items():
        img = images.get(str(m.get("vid")))
        if img is None:
            raise DataError(f"{source}: metadata[{mid!r}] refers to view {m.get('vid')!r}, which is not in 'view'")
        shape = _via3_shape(m.get("xy") or [], m.get("z") or [])
        if shape is not None:
            av = {str((attrs.get(k) or {}).get("aname", k)): _via3_value(attrs.get(k) or {}, v)
                  for k, v in (m.get("av") or {}).items()}
            img.regions.append((shape, av))
    return ViaProject(list(images.values()), options)


def _via3_shape(xy: Sequence[float], z: Sequence[float]) -> dict[str, Any] | None:
    if not xy:
        return {"name": "temporal_segment"} if z else None  # no xy and no z: file-level metadata
    name = _VIA3_SHAPES.get(int(xy[0]), f"shape {xy[0]}")
    return {"name": name, "cx": xy[1], "cy": xy[2]} if name == "point" and len(xy) >= 3 else {"name": name}


def _via3_value(attr: Mapping[str, Any], value: Any) -> Any:
    opts = attr.get("options") or {}
    return opts.get(str(value), value) if attr.get("type") in _VIA3_CHOICE_TYPES else value


def parse_via_csv(path: Path) -> ViaProject:
    """A VIA 1/2 CSV export (one row per region, JSON in cells) -> ViaProject."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot parse as a VIA CSV export: {exc}") from exc
    name_col = next((c for c in ("#filename", "filename") if c in df.columns), None)
    needed = ["region_shape_attributes", "region_attributes"]
    if name_col is None or any(c not in df.columns for c in needed):
        raise DataError(f"{path}: a VIA CSV export needs the columns #filename (or filename), "
                        f"region_shape_attributes, region_attributes. Found: {list(df.columns)}")
    images: dict[str, ViaImage] = {}
    for i, row in enumerate(df.itertuples(index=False)):
        rec = dict(zip(df.columns, row, strict=True))
        key = rec[name_col] + str(rec.get("file_size", ""))
        img = images.setdefault(key, ViaImage(key, rec[name_col]))
        shape = _cell_json(rec["region_shape_attributes"], path, i, "region_shape_attributes")
        if shape:  # "{}" marks an image without regions
            img.regions.append((shape, _cell_json(rec["region_attributes"], path, i, "region_attributes")))
    return ViaProject(list(images.values()), {})


def _cell_json(text: str, path: Path, row: int, col: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: row {row + 2} (line), column {col!r}: invalid JSON {text[:60]!r}: {exc.msg}") from exc
    if not isinstance(value, dict):
        raise DataError(f"{path}: row {row + 2} (line), column {col!r}: expected a JSON object, got {text[:60]!r}")
    return value


# -- building the table ---------------------------------------------------------------
def via_table(project: ViaProject, *, source: str, landmark_attribute: str | None = None,
              allow_empty: bool = False) -> AnnotationTable:
    """The landmark table of a parsed VIA project; unannotated images get all-NaN rows.

    With ``allow_empty``, a project without any region is a table of images only (to
    predict on); otherwise it is an error.
    """
    points = _point_regions(project)
    if allow_empty and not any(img.regions for img in project.images):
        log.info("%s: no regions in %d images; a table of images only", source, len(project.images))
        return AnnotationTable(pd.DataFrame({"image": [img.filename for img in project.images]}), source=source)
    _report_shapes(project, sum(len(p) for p in points), source)
    attr = _identity_attribute(project, points, landmark_attribute, source)
    if attr is None:
        names, coords = _by_order(project, points, source)
    else:
        names, coords = _by_name(project, points, attr, source)
    df = pd.DataFrame({"image": [img.filename for img in project.images]})
    arr = np.stack(coords) if coords else np.empty((0, len(names), 2))
    cols = {}
    for k, n in enumerate(names):
        cols[f"{n}_x"], cols[f"{n}_y"] = arr[:, k, 0], arr[:, k, 1]
    return AnnotationTable(pd.concat([df, pd.DataFrame(cols)], axis=1), tuple(names), (), source)


def _report_shapes(project: ViaProject, n_points: int, source: str) -> None:
    others = Counter(str(s.get("name")) for img in project.images for s, _ in img.regions
                     if s.get("name") != "point")
    listed = ", ".join(f"{k} x{v}" for k, v in others.most_common())
    if n_points == 0:
        what = f"only non-point regions ({listed})" if others else "no regions at all"
        raise DataError(f"{source}: no point regions in {len(project.images)} images: {what}. cnnkit reads "
                        f"landmarks from VIA 'point' regions; annotate points (not boxes or polygons).")
    if others:
        warnings.warn(f"{source}: ignored {sum(others.values())} non-point regions ({listed}); "
                      f"only 'point' regions are landmarks", UserWarning, stacklevel=4)


def identity_attribute(project: ViaProject, wanted: str | None, source: str) -> str | None:
    """The region attribute that names each point (None: click order, ``wanted == ORDER`` only).

    Raises:
        AttributeNotFoundError: no point carries ``wanted``.
        DataError: ``wanted`` is None and no single attribute names the points (the message
            lists the attributes and says how to choose).
    """
    points = _point_regions(project)
    return _identity_attribute(project, points, wanted, source)


def _point_regions(project: ViaProject) -> list[list[tuple[dict[str, Any], dict[str, Any]]]]:
    return [[(s, a) for s, a in img.regions if s.get("name") == "point"] for img in project.images]


def _identity_attribute(project: ViaProject, points: list[list[tuple[dict[str, Any], dict[str, Any]]]],
                        wanted: str | None, source: str) -> str | None:
    if wanted == ORDER:
        log.warning("%s: landmark_attribute '@order': points are named p0..pK-1 by the order they were clicked; "
                    "correct only if every image was clicked in the same order", source)
        return None
    carried = _carried(points)
    if wanted is not None:
        if wanted not in carried and wanted not in project.options:
            raise AttributeNotFoundError(f"{source}: no point region has the attribute {wanted!r}."
                                         f"{did_you_mean(wanted, carried)} Region attributes found: {sorted(carried)}")
        return wanted
    named = [a for a in carried if a.strip().lower() in _IDENTITY_NAMES]
    if len(named) == 1:
        log.info("%s: naming landmarks by the region attribute %r; pass landmark_attribute= to choose another",
                 source, named[0])
        return named[0]
    if len(carried) == 1 and (carried[0] in project.options or _looks_like_names(points, carried[0])):
        log.info("%s: naming landmarks by the region attribute %r (the only one the points carry); pass "
                 "landmark_attribute= to choose another", source, carried[0])
        return carried[0]
    raise DataError(_unnamed_message(carried, named, source))


def _carried(points: list[list[tuple[dict[str, Any], dict[str, Any]]]]) -> list[str]:
    """Attributes with a value on at least one point, in first-seen order."""
    seen: dict[str, None] = {}
    for pts in points:
        for _, attrs in pts:
            for k, v in attrs.items():
                if v not in ("", None, {}, []) and not (isinstance(v, str) and not v.strip()):
                    seen.setdefault(str(k), None)
    return list(seen)


def _unnamed_message(carried: list[str], named: list[str], source: str) -> str:
    if not carried:
        return f"{source}: the points carry no attribute, so which point is which landmark is unknown. {_HOW_TO_NAME}"
    if len(carried) == 1:
        return (f"{source}: the points carry one attribute, {carried[0]!r}, whose values do not name each point "
                f"once per image (empty or repeated values). Pass landmark_attribute={carried[0]!r} "
                f"(--landmark-attribute {carried[0]}) if it does name them. {_HOW_TO_NAME}")
    which = f"{len(named)} of them ({named}) are" if len(named) > 1 else "none is"
    return (f"{source}: the points carry the attributes {carried} and {which} named 'landmark' or 'bodypart', so "
            f"the one that names each landmark is ambiguous. Choose it with landmark_attribute=<name> (command line "
            f"--landmark-attribute <name>, experiment file data.landmark_attribute).")


def _looks_like_names(points: list[list[tuple[dict[str, Any], dict[str, Any]]]], attr: str) -> bool:
    """Every point has a non-empty string value, unique within its image, from a small vocabulary."""
    values = [[a.get(attr) for _, a in pts] for pts in points if pts]
    if not all(isinstance(v, str) and v.strip() for vs in values for v in vs):
        return False
    if any(len(set(vs)) != len(vs) for vs in values):
        return False
    return len({v for vs in values for v in vs}) == max(len(vs) for vs in values)


def _by_order(project: ViaProject, points: list[list[tuple[dict[str, Any], dict[str, Any]]]],
              source: str) -> tuple[list[str], list[np.ndarray]]:
    counts = Counter(len(p) for p in points if p)
    k = counts.most_common(1)[0][0]
    bad = [(img.key, len(p)) for img, p in zip(project.images, points, strict=True) if p and len(p) != k]
    if bad:
        shown = "; ".join(f"image {key!r} has {n} points" for key, n in bad[:5])
        raise DataError(f"{source}: {shown} but the set has {k} (the count in {counts[k]} images); "
                        f"{len(bad)} images differ. Named by click order ('@order'), every image needs the same "
                        f"count; name the points with a region attribute instead.")
    coords = [np.array([_xy(s, img.key, source) for s, _ in p]) if p else np.full((k, 2), np.nan)
              for img, p in zip(project.images, points, strict=True)]
    return [f"p{i}" for i in range(k)], coords


def _by_name(project: ViaProject, points: list[list[tuple[dict[str, Any], dict[str, Any]]]], attr: str,
             source: str) -> tuple[list[str], list[np.ndarray]]:
    names = list(project.options.get(attr, []))
    per_image: list[dict[str, tuple[float, float]]] = []
    for img, pts in zip(project.images, points, strict=True):
        found: dict[str, tuple[float, float]] = {}
        for i, (shape, attrs) in enumerate(pts):
            name = attrs.get(attr)
            if not isinstance(name, str) or not name.strip():
                raise DataError(f"{source}: image {img.key!r}, point {i}: attribute {attr!r} is "
                                f"{name!r}; every point needs a landmark name (a text or dropdown value)")
            if name in found:
                raise DataError(f"{source}: image {img.key!r} has the landmark {name!r} twice ({len(pts)} "
                                f"points but the set has {len(names) or len(set(a.get(attr) for _, a in pts))})")
            found[name] = _xy(shape, img.key, source)
            if name not in names:
                names.append(name)  # a value outside the dropdown's options: keep it, after them
        per_image.append(found)
    _report_names(names, list(project.options.get(attr, [])), per_image, attr, source)
    nan = (float("nan"), float("nan"))
    coords = [np.array([f.get(n, nan) for n in names], dtype=np.float64).reshape(len(names), 2)
              for f in per_image]
    return names, coords


def _report_names(names: list[str], options: list[str], per_image: list[dict[str, tuple[float, float]]],
                  attr: str, source: str) -> None:
    """Warn about names outside the dropdown's options and options never used (all-NaN columns)."""
    extra = [n for n in names if options and n not in options]
    unused = [n for n in names if not any(n in f for f in per_image)]
    if extra:
        warnings.warn(f"{source}: values of {attr!r} not among its options {options}: {extra} "
                      f"(kept as landmarks after them)", UserWarning, stacklevel=5)
    if unused:
        warnings.warn(f"{source}: landmarks {unused} are never annotated (their columns are all NaN)",
                      UserWarning, stacklevel=5)


def _xy(shape: Mapping[str, Any], key: str, source: str) -> tuple[float, float]:
    try:
        return float(shape["cx"]), float(shape["cy"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{source}: image {key!r}: point without numeric cx/cy: {dict(shape)}") from exc
