"""Bad inputs: each gives cnnkit's own clear error, or a documented and reported skip.

Never a crash deep inside torch/Pillow/pandas, never a silently wrong training set. Every
case asserts on the message (file, row, column, key, layer) or on the reported skip.
docs/RELIABILITY.md has the table "input -> what the user sees" built from these tests.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

import cnnkit
from cnnkit.data.check import check_data
from cnnkit.data.dataset import TableDataset
from cnnkit.data.decode import decode_image
from cnnkit.data.sources import read_annotations
from cnnkit.errors import ConfigError, DataError, SpecError
from cnnkit.experiment import load_experiment

RNG = np.random.default_rng(0)
PHOTO = RNG.integers(0, 255, (40, 60, 3), dtype=np.uint8)  # 60 wide, 40 high


def _jpeg(arr: np.ndarray | Image.Image, **save: object) -> bytes:
    im = arr if isinstance(arr, Image.Image) else Image.fromarray(arr)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95, **save)
    return buf.getvalue()


def _png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims ``width`` x ``height`` (a decompression bomb's header)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def _table(folder: Path, rows: list[tuple[str, float, float]], name: str = "ann.csv") -> Path:
    path = folder / name
    frame = pd.DataFrame(rows, columns=["image", "a_x", "a_y"])
    frame.to_csv(path, index=False)
    return path


# -- images -------------------------------------------------------------------------------------
BROKEN = {
    "truncated.jpg": (lambda: _jpeg(PHOTO)[:600], "truncated"),
    "zero.jpg": (lambda: b"", "(0 bytes)"),
    "text.jpg": (lambda: b"name,x,y\nthis is a CSV, not a JPEG\n", "cannot identify image file"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_image_is_a_data_error_everywhere(name: str, tmp_path: Path) -> None:
    make, detail = BROKEN[name]
    data = make()
    with pytest.raises(DataError, match=rf"cannot decode image '{name}'.*check_data") as info:
        decode_image(data, size=(16, 16), name=name)
    assert detail in str(info.value)
    (tmp_path / name).write_bytes(data)
    (tmp_path / "good.png").write_bytes(_jpeg(PHOTO))
    table = read_annotations(_table(tmp_path, [(name, 5.0, 5.0), ("good.png", 6.0, 6.0)]))
    report = check_data(table, on_error="skip")
    assert [(p.row, p.kind) for p in report.problems] == [(0, "unreadable")]
    assert report.table.images == [str(tmp_path / "good.png")]  # the reported skip
    with pytest.raises(DataError, match=r"row 0: .*unreadable"):
        check_data(table)
    with pytest.raises(DataError, match=name):
        TableDataset(table, size=(16, 16))[0]


def test_16_bit_png_is_scaled_not_clipped(image_bytes: Callable[..., bytes]) -> None:
    deep = (np.arange(40 * 60, dtype=np.uint32).reshape(40, 60) * 27).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(deep).save(buf, "PNG")
    arr, geo = decode_image(buf.getvalue(), grayscale=True)
    assert geo.orig_size == (60, 40)
    expected = np.rint(deep / 257.0)
    assert np.abs(arr[:, :, 0].astype(float) - expected).max() <= 1
    assert arr.max() > 200  # clipping at 255 would make most of the image white; scaling keeps the ramp
    assert (arr == 255).mean() < 0.05


def test_cmyk_jpeg_decodes_to_the_right_colours() -> None:
    arr, _ = decode_image(_jpeg(Image.fromarray(PHOTO).convert("CMYK")))
    assert arr.shape == (40, 60, 3)
    assert np.abs(arr.astype(float) - PHOTO).mean() < 12  # JPEG loss only, no channel swap/inversion


def test_exif_rotated_photo_uses_the_shown_frame(tmp_path: Path) -> None:
    """Orientation 6 (rotate 90 clockwise to show): points live in the shown 40x60 frame."""
    im = Image.fromarray(PHOTO)
    exif = im.getexif()
    exif[0x0112] = 6
    data = _jpeg(im, exif=exif.tobytes())
    arr, geo = decode_image(data)
    assert geo.orig_size == (40, 60) and arr.shape == (60, 40, 3)
    upright, _ = decode_image(_jpeg(im))  # the same pixels without the EXIF tag
    assert np.array_equal(arr, np.rot90(upright, k=-1))  # turned 90 degrees clockwise, as a viewer shows it
    (tmp_path / "rot.jpg").write_bytes(data)
    # (50, 10) is inside the stored 60x40 frame but outside the shown 40x60 one.
    report = check_data(read_annotations(_table(tmp_path, [("rot.jpg", 50.0, 10.0)])), on_error="skip")
    assert [p.kind for p in report.problems] == ["outside"]
    assert "outside the 40x60 image" in report.problems[0].detail


def test_decompression_bomb_header_is_refused(tmp_path: Path) -> None:
    data = _png_header(100_000, 100_000)
    with pytest.raises(DataError, match=r"'bomb.png' is too large to decode safely.*MAX_IMAGE_PIXELS"):
        decode_image(data, size=(16, 16), name="bomb.png")
    (tmp_path / "bomb.png").write_bytes(data)
    table = read_annotations(_table(tmp_path, [("bomb.png", 1.0, 1.0)]))
    for decode in (False, True):
        report = check_data(table, on_error="skip", decode=decode)
        assert [p.kind for p in report.problems] == ["unreadable"]
        assert "DecompressionBombError" in report.problems[0].detail


# -- landmarks and rows -------------------------------------------------------------------------
@pytest.fixture
def three_images(tmp_path: Path, image_bytes: Callable[..., bytes]) -> Path:
    for i in range(3):
        (tmp_path / f"im{i}.png").write_bytes(image_bytes(np.full((20, 24, 3), 40 * i, np.uint8)))
    return tmp_path


def test_nan_landmark_is_missing_not_zero(three_images: Path) -> None:
    table = read_annotations(_table(three_images, [("im0.png", float("nan"), 5.0), ("im1.png", 3.0, 4.0)]))
    report = check_data(table)
    assert report.ok and report.nan_values == 1
    pts = TableDataset(table, size=(12, 10))[0]["points"]
    assert bool(pts[0, 0].isnan()) and float(pts[0, 1]) == pytest.approx(2.5)


@pytest.mark.parametrize(("x", "kind", "detail"), [
    (float("inf"), "infinite", "+-inf"),
    (-3.0, "outside", "landmark 'a' at (-3.0, 5.0) outside the 24x20 image"),
    (300.0, "outside", "landmark 'a' at (300.0, 5.0) outside the 24x20 image"),
])
def test_bad_landmark_is_reported_and_skipped(three_images: Path, x: float, kind: str, detail: str) -> None:
    table = read_annotations(_table(three_images, [("im0.png", 1.0, 1.0), ("im1.png", x, 5.0)]))
    with pytest.raises(DataError, match=rf"row 1: '.*im1.png': {kind}"):
        check_data(table)
    report = check_data(table, on_error="skip")
    assert [(p.row, p.kind) for p in report.problems] == [(1, kind)]
    assert detail in report.problems[0].detail
    assert len(report.table) == 1 and np.isfinite(report.table.points()).all()


def test_fit_refuses_infinite_landmark_before_training(three_images: Path, tmp_path: Path) -> None:
    table = read_annotations(_table(three_images, [("im0.png", 1.0, 1.0), ("im1.png", np.inf, 5.0)]))
    with pytest.raises(DataError, match="row 1"):
        cnnkit.fit([["conv", {"filter_size": 3, "layer_depth": 4}], ["relu"]], table, out_dir=tmp_path / "r",
                   size=(16, 16), epochs=1, batch_size=2, device="cpu", quiet=True, plots=False, head="gap")


def test_duplicate_rows_are_warned_and_reported(three_images: Path) -> None:
    rows = [("im0.png", 1.0, 5.0), ("im0.png", 1.0, 5.0), ("im1.png", 3.0, 4.0)]
    with pytest.warns(UserWarning, match=r"2 rows share an image with another row \(first: '.*im0.png'\)"):
        table = read_annotations(_table(three_images, rows))
    report = check_data(table, on_error="skip")
    assert [(p.row, p.kind, p.detail) for p in report.problems] == [(1, "duplicate", "same image as row 0")]
    assert len(report.table) == 2


@pytest.mark.parametrize(("text", "opts", "message"), [
    ("image,a_x\nim0.png,1\n", {}, r"landmark columns without a partner: \['a_x'\]"),
    ("foo,a_x,a_y\nim0.png,1,2\n", {}, r"no image path column .*Columns: \['foo', 'a_x', 'a_y'\]"),
    ("image,a_x,a_y\nim0.png,1,2\n", {"landmarks": ["a", "b"]}, r"landmarks=\['a', 'b'\]"),
    ("image,a_x,a_y\nim0.png,1,2\n", {"image_column": "img"}, r"image_column 'img' not found"),
    ("image,a_x,a_y\nim0.png,abc,2\n", {}, r"row 0, column 'a_x': 'abc' is not a number"),
    ("image,a_x,a_y\nnothere.png,1,2\n", {}, r"1 of 1 images not found: row 0: 'nothere.png'"),
    ("image,a_x,a_y\nim0.png,1,5,7,8\nim1.png,2,3\n", {}, r"line 2 has 5 fields but the header has 3"),
    ("image,a_x,a_y\nim0.png,1,5\nim1.png,2,3,4\n", {}, r"Expected 3 fields in line 3, saw 4"),
    ("", {}, r"cannot parse as CSV"),
])
def test_malformed_csv_names_the_problem(three_images: Path, text: str, opts: dict[str, object],
                                         message: str) -> None:
    path = three_images / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message) as info:
        read_annotations(path, **opts)  # type: ignore[arg-type]
    assert "bad.csv" in str(info.value)


@pytest.mark.parametrize(("raw", "what"), [
    ("\ufeffimage,a_x,a_y\nim0.png,1.5,5\nim1.png,2,3\n", "BOM"),
    ("image;a_x;a_y\nim0.png;1.5;5\nim1.png;2;3\n", "semicolons"),
    ("\ufeffimage;a_x;a_y\r\nim0.png;1.5;5\r\nim1.png;2;3\r\n", "BOM + semicolons + CRLF"),
])
def test_bom_and_semicolon_csv_read_the_same_table(three_images: Path, raw: str, what: str) -> None:
    path = three_images / "odd.csv"
    path.write_bytes(raw.encode("utf-8"))
    table = read_annotations(path)
    assert table.landmarks == ("a",), what
    assert table.points()[:, 0, 0].tolist() == [1.5, 2.0]
    assert [Path(p).name for p in table.images] == ["im0.png", "im1.png"]


def test_semicolon_csv_with_decimal_commas_is_an_error_not_a_wrong_number(three_images: Path) -> None:
    path = three_images / "eu.csv"
    path.write_text("image;a_x;a_y\nim0.png;1;5\nim1.png;2,5;3\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"eu.csv: row 1, column 'a_x': '2,5' is not a number"):
        read_annotations(path)


def test_non_ascii_paths(tmp_path: Path, image_bytes: Callable[..., bytes]) -> None:
    folder = tmp_path / "Bilder_ü_日本"
    folder.mkdir()
    (folder / "fötö 写真.png").write_bytes(image_bytes(np.full((20, 24, 3), 77, np.uint8)))
    path = tmp_path / "ännotations.csv"
    pd.DataFrame({"image": ["Bilder_ü_日本/fötö 写真.png"], "a_x": [1.0], "a_y": [2.0]}).to_csv(path, index=False)
    table = read_annotations(path)
    assert table.images == [str(folder / "fötö 写真.png")]
    assert check_data(table).ok
    assert int(TableDataset(table, size=(8, 8))[0]["image"][0, 0, 0]) == 77


def test_missing_zip_member(three_images: Path) -> None:
    archive = three_images / "imgs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(three_images / "im0.png", "pics/im0.png")
    path = _table(three_images, [("im0.png", 1.0, 1.0), ("im9.png", 2.0, 2.0)])
    with pytest.raises(DataError, match=r"1 of 2 images are not members of .*imgs.zip: row 1: 'im9.png'"):
        read_annotations(path, zip=archive)
    table = read_annotations(_table(three_images, [("im0.png", 1.0, 1.0)], "ok.csv"), zip=archive)
    with zipfile.ZipFile(archive, "w") as zf:  # the archive changes after reading: the member is gone
        zf.write(three_images / "im1.png", "pics/other.png")
    with pytest.raises(DataError, match=r"member 'pics/im0.png' not found in zip archive"):
        TableDataset(table, size=(8, 8))[0]
    report = check_data(table, on_error="skip")
    assert [p.kind for p in report.problems] == ["missing"]


# -- VIA projects -------------------------------------------------------------------------------
VIA_BAD = {
    "VIA 2 without _via_img_metadata": ({"_via_settings": {}, "_via_attributes": {}},
                                        r"must have the key '_via_img_metadata'"),
    "top-level list": ([{"filename": "im0.png"}], r"not a VIA file: .*Top-level keys: list"),
    "image entry without filename": ({"_via_img_metadata": {"im0.png1": {"regions": []}}},
                                     r"_via_img_metadata\['im0.png1'\] has no 'filename'"),
    "only rectangles": ({"_via_img_metadata": {"k": {"filename": "im0.png", "regions": [
        {"shape_attributes": {"name": "rect", "x": 1, "y": 1, "width": 3, "height": 3}}]}}},
        r"no point regions in 1 images: only non-point regions \(rect x1\)"),
    "point without cx": ({"_via_img_metadata": {"k": {"filename": "im0.png", "regions": [
        {"shape_attributes": {"name": "point", "x": 1}, "region_attributes": {"landmark": "a"}}]}}},
        r"image 'k': point without numeric cx/cy"),
    "VIA 3 view with two files": ({"project": {"vid_list": ["1"]}, "file": {"1": {"fname": "im0.png"}},
                                   "view": {"1": {"fid_list": ["1", "2"]}}, "metadata": {}},
                                  r"view\['1'\] must show exactly one file"),
    "regions holding strings": ({"_via_img_metadata": {"k": {"filename": "im0.png", "regions": ["point"]}}},
                                r"a part of this VIA file has an unexpected JSON type \(AttributeError"),
    "VIA 3 'attribute' a list": ({"project": {}, "file": {}, "view": {}, "metadata": {}, "attribute": [1]},
                                 r"unexpected JSON type \(AttributeError"),
    "VIA 3 metadata of a missing view": ({"project": {"vid_list": ["1"]}, "file": {"1": {"fname": "im0.png"}},
                                          "view": {"1": {"fid_list": ["1"]}},
                                          "metadata": {"m": {"vid": "7", "xy": [1, 2, 3]}}},
                                         r"metadata\['m'\] refers to view '7'"),
}


COCO_BAD = {
    "categories not a list": ({"images": [], "annotations": [], "categories": 3}, r"unexpected JSON type"),
    "image without id": ({"images": [{"file_name": "im0.png"}], "annotations": [],
                          "categories": [{"id": 1, "keypoints": ["a"]}]}, r"lacks a key \(KeyError: 'id'\)"),
    "keypoint named twice": ({"images": [], "annotations": [], "categories": [{"id": 1, "keypoints": ["a", "a"]}]},
                             r"keypoints names \['a'\] more than once"),
    "wrong keypoint count": ({"images": [{"id": 0, "file_name": "im0.png"}], "categories": [
        {"id": 1, "keypoints": ["a", "b"]}], "annotations": [{"image_id": 0, "category_id": 1, "keypoints": [1, 2, 2]}]},
        r"annotations\[0\].keypoints has 3 numbers; expected 3 x 2"),
}


WRONG_STRUCTURE = [("project.json", VIA_BAD, case) for case in sorted(VIA_BAD)] + [
    ("coco.json", COCO_BAD, case) for case in sorted(COCO_BAD)]


@pytest.mark.parametrize(("name", "cases", "case"), WRONG_STRUCTURE, ids=[f"{n}-{c}" for n, _, c in WRONG_STRUCTURE])
def test_json_file_of_wrong_version_or_structure(name: str, cases: dict, case: str, three_images: Path) -> None:
    """VIA and COCO files of the wrong version or structure: the library's error, naming the file."""
    doc, message = cases[case]
    path = three_images / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(DataError, match=message) as info:
        read_annotations(path)
    assert name in str(info.value)


def test_deeplabcut_body_part_named_twice(three_images: Path) -> None:
    path = three_images / "CollectedData_me.csv"
    path.write_text("scorer,me,me,me,me\nbodyparts,a,a,a,a\ncoords,x,y,x,y\nim0.png,1,2,3,4\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"CollectedData_me.csv: body part 'a' has two 'x' columns \(2 and 4\)"):
        read_annotations(path)


def test_cut_short_json_names_line_and_column(three_images: Path) -> None:
    path = three_images / "cut.json"
    path.write_text('{"_via_img_metadata": {"a": {"filename": "im0.png",\n "regions": [', encoding="utf-8")
    with pytest.raises(DataError, match=r"cut.json: invalid JSON at line 2, column \d+.*cut short"):
        read_annotations(path)


# -- specs and experiment files -----------------------------------------------------------------
@pytest.mark.parametrize(("spec", "message"), [
    ([["cnov", {"layer_depth": 4}]], r"layer 0: unknown layer type 'cnov'. Did you mean 'conv'\?"),
    ([["conv", {"layer_dept": 4}]], r"layer 0 \(conv\).*'layer_dept'.*Did you mean 'layer_depth'\?"),
    ([["conv", {"layer_depth": -4}]], r"layer 0 \(conv\).*layer_depth"),
    ([["conv", {"filter_size": 32, "layer_depth": 2, "padding": "VALID"}]], r"layer 0 \(conv\).*shrinks to zero"),
    ([["conv", 4]], r"layer 0 \(conv\): options must be a mapping"),
    ([], r"the spec is empty"),
    ("resnet19", r"unknown preset 'resnet19'|neither a preset nor an existing file"),
])
def test_spec_typos_are_spec_errors_naming_the_layer(spec: object, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        cnnkit.build_model(spec, size=(16, 16), outputs=4)  # type: ignore[arg-type]


@pytest.mark.parametrize(("settings", "message"), [
    ({"trian": {"epochs": 2}}, r"unknown section 'trian'. Did you mean 'train'\?"),
    ({"train": {"epoch": 2}}, r"train.epoch: unknown key. Did you mean 'epochs'\?"),
    ({"train": {"epochs": "two"}}, r"train.epochs: expected int or null. Received: 'two'"),
    ({"train": {"optimizer": "adamm"}}, r"optimizer: unknown value 'adamm'. Did you mean 'adam'"),
    ({"data": {"sise": "16x16"}}, r"data.sise: unknown key. Did you mean 'size'\?"),
    ({"data": {"size": "16by16"}}, r"size: expected a size"),
])
def test_experiment_typos_are_config_errors(settings: dict[str, dict[str, object]], message: str,
                                            tmp_path: Path) -> None:
    base: dict[str, object] = {"data": {"source": "ann.csv"}}
    for key, value in settings.items():
        base[key] = {**(base.get(key) or {}), **value}  # type: ignore[dict-item]
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(base), encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_experiment(exp)


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_image_mid_training_stops_with_data_error(workers: int, three_images: Path, tmp_path: Path) -> None:
    """Not checked beforehand: the run stops with DataError naming the file (workers re-raise it)."""
    (three_images / "im2.png").write_bytes(b"\x89PNG\r\n\x1a\n cut")
    table = read_annotations(_table(three_images, [("im0.png", 1.0, 1.0), ("im1.png", 2.0, 2.0),
                                                    ("im2.png", 3.0, 3.0)]))
    with pytest.raises(DataError, match=r"cannot decode image '.*im2.png'"):
        cnnkit.fit([["conv", {"filter_size": 3, "layer_depth": 4}], ["relu"]], table, out_dir=tmp_path / "r",
                   size=(16, 16), epochs=1, batch_size=1, device="cpu", quiet=True, plots=False, head="gap",
                   workers=workers)
