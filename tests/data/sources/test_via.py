from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from cnnkit import DataError
from cnnkit.data.sources import read_annotations
from cnnkit.data.sources.via import parse_via_csv, parse_via_json

LIPS_NAMES = ("leftLip", "rightLip", "topleftinner", "bottomleftinner", "topmidinner", "bottommidinner",
              "toprightinner", "bottomrightinner")


def _touch(folder: Path, *names: str) -> Path:
    for n in names:
        (folder / n).parent.mkdir(parents=True, exist_ok=True)
        (folder / n).write_bytes(b"x")
    return folder


def _points_via1(tmp_path: Path) -> Path:
    """A VIA 1.x JSON (regions as an object) with 3 named points per image."""
    regions = lambda pts: {str(i): {"shape_attributes": {"name": "point", "cx": x, "cy": y},  # noqa: E731
                                    "region_attributes": {"part": n}} for i, (n, x, y) in enumerate(pts)}
    data = {
        "a.png10": {"fileref": "", "size": 10, "filename": "a.png", "base64_img_data": "", "file_attributes": {},
                    "regions": regions([("nose", 1, 2), ("eye", 3, 4), ("ear", 5, 6)])},
        "b.png10": {"fileref": "", "size": 10, "filename": "b.png", "base64_img_data": "", "file_attributes": {},
                    "regions": regions([("ear", 15, 16), ("nose", 11, 12), ("eye", 13, 14)])},
        "c.png10": {"fileref": "", "size": 10, "filename": "c.png", "base64_img_data": "", "file_attributes": {},
                    "regions": {}},
    }
    path = tmp_path / "via1.json"
    path.write_text(json.dumps(data))
    _touch(tmp_path, "a.png", "b.png", "c.png")
    return path


def test_lips_project_counts_names_and_missing_point(lips_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cnnkit"):
        t = read_annotations(lips_dir / "via_project.json")
    assert len(t) == 707
    assert t.landmarks == LIPS_NAMES  # the dropdown's option order
    missing = np.isnan(t.points()).any(axis=-1)
    assert missing.sum() == 1
    assert "region attribute 'landmark'" in caplog.text
    first = t.df.iloc[0]
    assert first["image"] == str(lips_dir / "images/002_cal/img018.png")
    assert (first["leftLip_x"], first["leftLip_y"]) == (95.834, 107.79)


def test_lips_flip_pairs_are_inferred_by_default_and_none_turns_them_off(lips_dir: Path) -> None:
    t = read_annotations(lips_dir / "via_project.json")
    assert t.flip_pairs == (("leftLip", "rightLip"), ("topleftinner", "toprightinner"),
                            ("bottomleftinner", "bottomrightinner"))
    assert read_annotations(lips_dir / "via_project.json", flip_pairs="auto").flip_pairs == t.flip_pairs
    for off in ("none", None, [], False):
        assert read_annotations(lips_dir / "via_project.json", flip_pairs=off).flip_pairs == ()


def test_via1_named_points_reordered_and_unannotated(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _points_via1(tmp_path)
    with caplog.at_level(logging.INFO, logger="cnnkit"):
        t = read_annotations(path)
    assert t.landmarks == ("nose", "eye", "ear")  # auto-detected: one name per point, first-seen order
    assert t.points()[1].tolist() == [[11, 12], [13, 14], [15, 16]]
    assert len(t) == 2 and "dropped 1 of 3 images" in caplog.text
    kept = read_annotations(path, unannotated="keep")
    assert len(kept) == 3 and np.isnan(kept.points()[2]).all()


def test_unnamed_points_are_refused_unless_click_order_is_asked_for(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    path = _points_via1(tmp_path)
    data = json.loads(path.read_text())
    for entry in data.values():
        for r in entry["regions"].values():
            r["region_attributes"] = {}
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"via1\.json: the points carry no attribute, so which point is which "
                                        r"landmark is unknown\. In VIA add a region attribute 'landmark'.*"
                                        r"landmark_attribute='@order' \(--landmark-attribute @order\)"):
        read_annotations(path)
    with caplog.at_level(logging.WARNING, logger="cnnkit"):
        t = read_annotations(path, landmark_attribute="@order")
    assert t.landmarks == ("p0", "p1", "p2")
    assert t.points()[1, 0].tolist() == [15, 16]  # region order, not names
    assert "points are named p0..pK-1 by the order they were clicked" in caplog.text


def _with_attributes(tmp_path: Path, name_attr: str) -> Path:
    """A VIA 2 project: a dropdown naming the points plus a radio 'occluded' on every point, a text
    file attribute; image b was clicked in another order than image a."""
    def region(name: str, x: float, occluded: str) -> dict:
        return {"shape_attributes": {"name": "point", "cx": x, "cy": x + 1},
                "region_attributes": {name_attr: name, "occluded": occluded}}
    meta = {"a.png1": {"filename": "a.png", "size": 1, "file_attributes": {"comment": "ok"},
                       "regions": [region("nose", 1, "no"), region("tail", 2, "yes")]},
            "b.png1": {"filename": "b.png", "size": 1, "file_attributes": {"comment": ""},
                       "regions": [region("tail", 12, "no"), region("nose", 11, "no")]}}
    attrs = {"region": {name_attr: {"type": "dropdown", "options": {"nose": "", "tail": ""}},
                        "occluded": {"type": "radio", "options": {"yes": "", "no": ""}}},
             "file": {"comment": {"type": "text"}}}
    path = tmp_path / "project.json"
    path.write_text(json.dumps({"_via_settings": {"project": {"name": "mice"}}, "_via_img_metadata": meta,
                                "_via_attributes": attrs}))
    _touch(tmp_path, "a.png", "b.png")
    return path


@pytest.mark.parametrize("name_attr", ["landmark", "BodyPart"])
def test_a_landmark_attribute_beside_others_names_the_points(tmp_path: Path, name_attr: str) -> None:
    t = read_annotations(_with_attributes(tmp_path, name_attr))
    assert t.landmarks == ("nose", "tail")  # not p0, p1 by click order
    assert t.points().tolist() == [[[1, 2], [2, 3]], [[11, 12], [12, 13]]]


def test_several_attributes_none_named_landmark_are_refused_with_the_list(tmp_path: Path) -> None:
    path = _with_attributes(tmp_path, "part")
    with pytest.raises(DataError, match=r"project\.json: the points carry the attributes \['part', 'occluded'\] "
                                        r"and none is named 'landmark' or 'bodypart'.*--landmark-attribute <name>"):
        read_annotations(path)
    t = read_annotations(path, landmark_attribute="part")
    assert t.landmarks == ("nose", "tail") and t.points()[1].tolist() == [[11, 12], [12, 13]]


def test_count_mismatch_names_the_image(tmp_path: Path) -> None:
    path = _points_via1(tmp_path)
    data = json.loads(path.read_text())
    for entry in data.values():
        for r in entry["regions"].values():
            r["region_attributes"] = {}
    del data["b.png10"]["regions"]["2"]
    data["c.png10"]["regions"] = {"0": {"shape_attributes": {"name": "point", "cx": 1, "cy": 1}}} | {
        str(i): {"shape_attributes": {"name": "point", "cx": i, "cy": i}} for i in range(1, 3)}
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"image 'b.png10' has 2 points but the set has 3"):
        read_annotations(path, landmark_attribute="@order")


def test_duplicate_name_in_one_image(tmp_path: Path) -> None:
    path = _points_via1(tmp_path)
    data = json.loads(path.read_text())
    data["a.png10"]["regions"]["1"]["region_attributes"]["part"] = "nose"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"image 'a.png10' has the landmark 'nose' twice"):
        read_annotations(path, landmark_attribute="part")


def test_unknown_landmark_attribute_suggests(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"attribute 'prt'.*Did you mean 'part'"):
        read_annotations(_points_via1(tmp_path), landmark_attribute="prt")


def test_official_via1_json_and_csv_parse_alike(via_examples: Path) -> None:
    js = parse_via_json(json.loads((via_examples / "via1_json_official_testdata_points_rect_circle_ellipse_polygon.json")
                                   .read_text(encoding="utf-8")), "j")
    cs = parse_via_csv(via_examples / "via1_csv_official_testdata_points_rect_circle_ellipse_polygon.csv")
    assert [i.filename for i in js.images] == [i.filename for i in cs.images]
    assert [i.regions for i in js.images] == [i.regions for i in cs.images]
    shapes = [s["name"] for i in js.images for s, _ in i.regions]
    assert shapes.count("point") == 5 and len(shapes) == 12
    assert js.images[0].regions[2][1] == {"name": 'red "dot"'}


@pytest.mark.parametrize("name", ["via1_json_official_testdata_points_rect_circle_ellipse_polygon.json",
                                  "via1_csv_official_testdata_points_rect_circle_ellipse_polygon.csv"])
def test_official_mixed_shapes_warn_then_reject_uneven_counts(via_examples: Path, name: str) -> None:
    # 4 of its 5 points carry a free-text 'name' (one has none): not a name per point, so refused ...
    with pytest.warns(UserWarning, match=r"ignored 7 non-point regions \(ellipse x3, rect x2, circle x1, polygon x1\)"):
        with pytest.raises(DataError, match=r"the points carry one attribute, 'name', whose values do not name each "
                                            r"point once per image"):
            read_annotations(via_examples / name)
    # ... and by click order the images hold different counts
    with pytest.warns(UserWarning, match=r"ignored 7 non-point regions"):
        with pytest.raises(DataError, match=r"image 'a_swan_swimming_in_geneve_lake.jpg62201' has 1 points "
                                            r"but the set has 4"):
            read_annotations(via_examples / name, landmark_attribute="@order")


@pytest.mark.parametrize(("name", "found"), [
    ("via1_json_rect_keras_tutorials.json", r"4 images: only non-point regions \(rect x4\)"),
    ("via1_csv_rect_with_empty_rows_faceRecog.csv", r"89 images: only non-point regions \(rect x41\)"),
    ("via2_csv_export_circle_with_empty_rows.csv", r"5 images: only non-point regions \(circle x1\)"),
    ("via2_csv_export_rect_receipts.csv", r"6 images: only non-point regions \(rect x18\)"),
    ("via2_json_export_rect_receipts.json", r"6 images: only non-point regions \(rect x18\)"),
    ("via2_json_export_official_sherlock_rect_fileattrs.json", r"266 images: only non-point regions \(rect x427\)"),
    ("via2_project_polygon_rect_ellipse_checkbox_attrs.json",
     r"2 images: only non-point regions \(rect x3, polygon x1, ellipse x1\)"),
    ("via3_project_video_temporal_segment.json", r"1 images: only non-point regions \(temporal_segment x1\)"),
])
def test_examples_without_points_are_rejected_clearly(via_examples: Path, name: str, found: str) -> None:
    with pytest.raises(DataError, match=rf"{name}: no point regions in {found}\. .*annotate points"):
        read_annotations(via_examples / name)


def test_receipts_json_and_csv_pair_match(via_examples: Path) -> None:
    js = parse_via_json(json.loads((via_examples / "via2_json_export_rect_receipts.json").read_text()), "j")
    cs = parse_via_csv(via_examples / "via2_csv_export_rect_receipts.csv")
    assert [i.key for i in js.images] == [i.key for i in cs.images]
    assert [i.regions for i in js.images] == [i.regions for i in cs.images]
    assert js.images[0].regions[0][1] == {"Info": "Date"}


def test_via2_annotation_only_list_regions_and_prefix(via_examples: Path) -> None:
    p = parse_via_json(json.loads((via_examples / "via2_json_export_official_sherlock_rect_fileattrs.json")
                                  .read_text()), "s")
    assert len(p.images) == 266 and p.images[0].filename == "./images/00011384.jpg"
    assert p.images[0].regions[0][1] == {"track": 320}


def test_via2_project_needs_img_metadata(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"_via_settings": {}, "_via_attributes": {}}))
    with pytest.raises(DataError, match=r"must have the key '_via_img_metadata'"):
        read_annotations(path)


def test_via2_csv_export_of_points_with_windows_uris(tmp_path: Path) -> None:
    rows = ["filename,file_size,file_attributes,region_count,region_id,region_shape_attributes,region_attributes"]
    for name in ("a.png", "b.png"):
        for i, (x, y) in enumerate([(1, 2), (3, 4)]):
            shape = json.dumps({"name": "point", "cx": x, "cy": y}).replace('"', '""')
            attr = json.dumps({"lm": f"k{i}"}).replace('"', '""')
            rows.append(f'file://C:\\Users\\me\\{name},-1,"{{}}",2,{i},"{shape}","{attr}"')
    (tmp_path / "ann.csv").write_text("\n".join(rows) + "\n")
    _touch(tmp_path / "imgs", "a.png", "b.png")
    t = read_annotations(tmp_path / "ann.csv", images=tmp_path / "imgs")
    assert t.landmarks == ("k0", "k1")
    assert t.images == [str(tmp_path / "imgs" / "a.png"), str(tmp_path / "imgs" / "b.png")]
    assert t.points()[1].tolist() == [[1, 2], [3, 4]]


def _via3(tmp_path: Path) -> Path:
    data = {
        "project": {"pid": "x", "vid_list": ["1", "2"]},
        "config": {"file": {"loc_prefix": {"1": "", "2": "", "3": "", "4": ""}}},
        "attribute": {"1": {"aname": "landmark", "anchor_id": "FILE1_Z0_XY1", "type": 4,
                            "options": {"0": "tip", "1": "base"}, "default_option_id": ""}},
        "file": {"1": {"fid": "1", "fname": "a.png", "type": 2, "loc": 1, "src": ""},
                 "2": {"fid": "2", "fname": "b.png", "type": 2, "loc": 1, "src": ""}},
        "view": {"1": {"fid_list": ["1"]}, "2": {"fid_list": ["2"]}},
        "metadata": {
            "1_a": {"vid": "1", "flg": 0, "z": [], "xy": [1, 10.5, 20.5], "av": {"1": "1"}},
            "1_b": {"vid": "1", "flg": 0, "z": [], "xy": [1, 30, 40], "av": {"1": "0"}},
            "2_a": {"vid": "2", "flg": 0, "z": [], "xy": [1, 5, 6], "av": {"1": "0"}},
            "2_b": {"vid": "2", "flg": 0, "z": [], "xy": [2, 1, 1, 4, 4], "av": {}},
        },
    }
    path = tmp_path / "via3.json"
    path.write_text(json.dumps(data))
    _touch(tmp_path, "a.png", "b.png")
    return path


def test_via3_points_named_by_select_attribute(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match=r"ignored 1 non-point regions \(rect x1\)"):
        t = read_annotations(_via3(tmp_path))
    assert t.landmarks == ("tip", "base")
    pts = t.points()
    assert pts[0].tolist() == [[30, 40], [10.5, 20.5]]
    assert pts[1, 0].tolist() == [5, 6] and np.isnan(pts[1, 1]).all()


def test_dropdown_value_outside_options_and_unused_option_warn(tmp_path: Path) -> None:
    path = _via3(tmp_path)
    data = json.loads(path.read_text())
    data["attribute"]["1"]["options"] = {"0": "tip", "1": "base", "2": "mid"}
    data["metadata"]["2_b"] = {"vid": "2", "flg": 0, "z": [], "xy": [1, 7, 7], "av": {"1": "odd"}}
    path.write_text(json.dumps(data))
    with pytest.warns(UserWarning) as rec:
        t = read_annotations(path)
    text = " ".join(str(w.message) for w in rec)
    assert "not among its options ['tip', 'base', 'mid']: ['odd']" in text
    assert "landmarks ['mid'] are never annotated" in text
    assert t.landmarks == ("tip", "base", "mid", "odd")
    assert t.points()[1, 3].tolist() == [7, 7]


def test_project_without_regions_is_images_only_when_kept(tmp_path: Path) -> None:
    _touch(tmp_path, "a.png")
    data = {"_via_settings": {}, "_via_attributes": {},
            "_via_img_metadata": {"a.png1": {"filename": "a.png", "size": 1, "regions": [], "file_attributes": {}}}}
    (tmp_path / "p.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"no point regions in 1 images: no regions at all"):
        read_annotations(tmp_path / "p.json")
    t = read_annotations(tmp_path / "p.json", unannotated="keep")
    assert t.task == "none" and t.images == [str(tmp_path / "a.png")]
