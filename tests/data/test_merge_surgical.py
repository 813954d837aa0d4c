"""merge is a surgical edit: only the merged points change; names never come from click order;
links are written through, read-only targets refused (issue 26, "Labels are sacred")."""

from __future__ import annotations

import copy
import json
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cnnkit import AnnotationTable, merge_annotations, read_annotations, write_via
from cnnkit.errors import DataError

NAMES = ("tip", "base")
pytestmark = pytest.mark.filterwarnings("ignore:.*non-point regions:UserWarning")  # the lab's rectangle, kept


def _images(folder: Path, n: int = 6) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"f{i}.png").write_bytes(b"png" * (i + 1))
    return [str(folder / f"f{i}.png") for i in range(n)]


def _point(name: str, x: float, y: float, occluded: str = "no", attr: str = "landmark") -> dict:
    return {"shape_attributes": {"name": "point", "cx": x, "cy": y},
            "region_attributes": {attr: name, "occluded": occluded}}


def _lab_project(tmp_path: Path, attr: str = "landmark") -> Path:
    """A lab's VIA 2 project: landmark dropdown + radio 'occluded' + file attribute 'comment', a project name,
    its own UI settings, a rectangle, points clicked in a different order per image, and an image listed
    without points. Images in imgs/, shown through default_filepath."""
    imgs = _images(tmp_path / "imgs")
    rect = {"shape_attributes": {"name": "rect", "x": 1, "y": 1, "width": 5, "height": 4},
            "region_attributes": {"occluded": "no"}}
    entries = [
        ("f0.png", [_point("tip", 1, 2, attr=attr), _point("base", 3, 4, "yes", attr=attr)], {"comment": "good"}),
        ("f1.png", [_point("base", 7, 8, attr=attr), rect, _point("tip", 5, 6, "yes", attr=attr)], {"comment": ""}),
        ("f2.png", [], {"comment": "not yet"}),
        ("f5.png", [_point("base", 30, 40, attr=attr), _point("tip", 10, 20, attr=attr)], {"comment": "x"}),
    ]
    meta = {f"{name}{os.path.getsize(tmp_path / 'imgs' / name)}": {
        "filename": name, "size": os.path.getsize(tmp_path / "imgs" / name), "regions": regions,
        "file_attributes": files} for name, regions, files in entries}
    assert len(imgs) == 6
    project = {
        "_via_settings": {"ui": {"annotation_editor_height": 30, "image": {"region_label": attr}},
                          "core": {"buffer_size": 18, "filepath": {},
                                   "default_filepath": (tmp_path / "imgs").as_uri() + "/"},
                          "project": {"name": "mouse lab 2024"}},
        "_via_img_metadata": meta,
        "_via_attributes": {
            "region": {attr: {"type": "dropdown", "description": "", "options": {"tip": "", "base": ""},
                              "default_options": {}},
                       "occluded": {"type": "radio", "description": "", "options": {"yes": "", "no": ""},
                                    "default_options": {"no": True}}},
            "file": {"comment": {"type": "text", "description": "", "default_value": ""}}},
        "_via_data_format_version": "2.0.10",
        "_via_image_id_list": list(meta),
    }
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(project, indent=1))
    return path


def _review(tmp_path: Path, rows: dict[int, list[float]]) -> Path:
    """A corrected project as suggest writes it (attribute 'landmark', nothing else)."""
    imgs = [str(tmp_path / "imgs" / f"f{i}.png") for i in rows]
    arr = np.array(list(rows.values()), dtype=float).reshape(len(rows), 2, 2)
    df = pd.DataFrame({"image": imgs, "tip_x": arr[:, 0, 0], "tip_y": arr[:, 0, 1],
                       "base_x": arr[:, 1, 0], "base_y": arr[:, 1, 1]})
    return write_via(AnnotationTable(df, NAMES), tmp_path / "review" / "review.json")


def _entries(doc: dict) -> dict[str, dict]:
    return {e["filename"]: e for e in doc["_via_img_metadata"].values()}


def test_merge_changes_only_the_points_it_merges(tmp_path: Path) -> None:
    labels = _lab_project(tmp_path)
    original = json.loads(labels.read_text())
    before = labels.read_bytes()
    # f0 the same; f1's base moved 5 px; f2 filled in; f3 new; f5 not in the review
    review = _review(tmp_path, {0: [1, 2, 3, 4], 1: [5, 6, 7, 13], 2: [9, 9, 8, 8], 3: [1, 1, 2, 2]})
    report = merge_annotations(review, labels, prefer="corrected")
    assert [Path(p).name for p in report.added + report.filled + report.unchanged] == ["f3.png", "f2.png", "f0.png"]
    merged = json.loads(labels.read_text())
    # everything the merge did not touch is as it was, parsed
    assert merged["_via_settings"] == original["_via_settings"]  # project name, UI, default_filepath
    assert merged["_via_attributes"] == original["_via_attributes"]  # occluded radio, comment file attribute
    assert merged["_via_data_format_version"] == "2.0.10"
    old, new = _entries(original), _entries(merged)
    assert new["f0.png"] == old["f0.png"] and new["f5.png"] == old["f5.png"]
    # f1: only base's cx/cy changed; its 'occluded', the rectangle, tip and the region order stay
    expect_f1 = copy.deepcopy(old["f1.png"])
    expect_f1["regions"][0]["shape_attributes"].update(cx=7.0, cy=13.0)
    assert new["f1.png"] == expect_f1
    # f2: its file attribute kept, the points added with the project's attribute name
    assert new["f2.png"]["file_attributes"] == {"comment": "not yet"}
    assert [(r["region_attributes"], r["shape_attributes"]["cx"]) for r in new["f2.png"]["regions"]] == [
        ({"landmark": "tip"}, 9.0), ({"landmark": "base"}, 8.0)]
    # f3 appended, named relative to default_filepath, and listed
    assert list(new) == ["f0.png", "f1.png", "f2.png", "f5.png", "f3.png"]
    assert merged["_via_image_id_list"] == [*original["_via_image_id_list"], f"f3.png{os.path.getsize(tmp_path / 'imgs' / 'f3.png')}"]
    assert report.backup is not None and report.backup.read_bytes() == before
    back = read_annotations(labels)
    assert back.landmarks == NAMES
    np.testing.assert_array_equal(back.points()[:, 1], [[3, 4], [7, 13], [8, 8], [30, 40], [2, 2]])


def test_a_point_removed_in_review_removes_only_its_region(tmp_path: Path) -> None:
    labels = _lab_project(tmp_path)
    old = _entries(json.loads(labels.read_text()))
    review = _review(tmp_path, {1: [5, 6, np.nan, np.nan]})
    merge_annotations(review, labels, prefer="corrected")
    regions = _entries(json.loads(labels.read_text()))["f1.png"]["regions"]
    assert regions == [old["f1.png"]["regions"][1], old["f1.png"]["regions"][2]]  # the rect and tip, in order


def test_names_come_from_the_landmark_attribute_not_click_order(tmp_path: Path) -> None:
    """The issue's case: a 'landmark' dropdown plus a radio gave p0, p1 by click order (f1 and f5 were
    clicked base first), so the merge compared tip with base."""
    labels = _lab_project(tmp_path)
    table = read_annotations(labels, unannotated="keep")
    assert table.landmarks == ("tip", "base")
    np.testing.assert_array_equal(table.points()[[0, 1, 3]], [[[1, 2], [3, 4]], [[5, 6], [7, 8]], [[10, 20], [30, 40]]])
    review = _review(tmp_path, {1: [5, 6, 7, 8], 5: [10, 20, 30, 40]})
    report = merge_annotations(review, labels)  # the same points: no conflict
    assert len(report.unchanged) == 2 and not report.conflicts


def test_ambiguous_attributes_are_refused_and_the_option_applies_to_both_files(tmp_path: Path) -> None:
    labels = _lab_project(tmp_path, attr="part")  # 'part' and 'occluded': which names the points?
    before = labels.read_bytes()
    review = _review(tmp_path, {1: [5, 6, 7, 13]})
    with pytest.raises(DataError, match=r"the attributes \['part', 'occluded'\] and none is named 'landmark'.*"
                                        r"--landmark-attribute <name>"):
        merge_annotations(review, labels, prefer="corrected")
    assert labels.read_bytes() == before
    merge_annotations(review, labels, prefer="corrected", landmark_attribute="part")  # review reads 'landmark'
    f1 = _entries(json.loads(labels.read_text()))["f1.png"]["regions"][0]
    assert f1 == {"shape_attributes": {"name": "point", "cx": 7.0, "cy": 13.0},
                  "region_attributes": {"part": "base", "occluded": "no"}}
    with pytest.raises(DataError, match=r"labels\.json: no point region has the attribute 'prt'\. Did you mean 'part'"):
        merge_annotations(review, labels, prefer="corrected", landmark_attribute="prt")
    (tmp_path / "lm.json").write_text(review.read_text())
    with pytest.raises(DataError, match=r"landmark_attribute 'lm': neither .* has points with that region attribute"):
        merge_annotations(review, tmp_path / "lm.json", prefer="corrected", landmark_attribute="lm")


def test_a_symlinked_labels_file_is_edited_through_the_link(tmp_path: Path) -> None:
    real = _lab_project(tmp_path)
    link = tmp_path / "current.json"
    link.symlink_to(real)
    before = real.read_bytes()
    report = merge_annotations(_review(tmp_path, {2: [9, 9, 8, 8]}), link)
    assert link.is_symlink() and link.resolve() == real  # the link is still the link
    assert _entries(json.loads(real.read_text()))["f2.png"]["regions"]  # the real labels got the points
    assert report.written == real and report.backup is not None and report.backup.parent == real.parent
    assert report.backup.read_bytes() == before


def test_a_read_only_labels_file_or_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cnnkit.cli import main

    labels = _lab_project(tmp_path)
    review = _review(tmp_path, {2: [9, 9, 8, 8]})
    before = labels.read_bytes()
    labels.chmod(0o444)
    try:
        with pytest.raises(DataError, match=r"labels\.json \(the labels file\) is read-only; nothing was written"):
            merge_annotations(review, labels)
        assert main(["merge", str(review), "--into", str(labels)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is read-only; nothing was written" in err
    finally:
        labels.chmod(0o644)
    assert labels.read_bytes() == before
    tmp_path.chmod(0o555)
    try:
        assert main(["merge", str(review), "--into", str(labels)]) == 2  # was a traceback
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "(the folder of the labels file) is read-only" in err
    finally:
        tmp_path.chmod(0o755)
    assert labels.read_bytes() == before and not list(tmp_path.glob("labels.backup-*"))


def test_csv_labels_keep_their_text_columns_and_layout(tmp_path: Path) -> None:
    imgs = _images(tmp_path / "imgs")
    labels = tmp_path / "labels.csv"
    # the seed's x0/x1/y0/y1 layout, ';' separators, a split column, numbers as the lab wrote them
    text = ("filename;x0;x1;y0;y1;split;note\r\n"
            "imgs/f0.png;1.50;3;2;4;train;first\r\n"
            "imgs/f1.png;5;7.0;6;8;val;\r\n"
            "imgs/f2.png;;;;;train;todo\r\n")
    labels.write_bytes(b"\xef\xbb\xbf" + text.encode())
    table = read_annotations(labels, unannotated="keep")
    assert table.landmarks == ("p0", "p1")
    df = pd.DataFrame({"image": imgs[:4], "p0_x": [1.5, 5, 9, 1], "p0_y": [2, 6, 9, 1], "p1_x": [3, 7, 8, 2],
                       "p1_y": [4, 13, 8, 2]})
    report = merge_annotations(AnnotationTable(df, ("p0", "p1")), labels, prefer="corrected")
    assert (len(report.added), len(report.filled), len(report.unchanged), len(report.conflicts)) == (1, 1, 1, 1)
    assert labels.read_bytes() == b"\xef\xbb\xbf" + (
        b"filename;x0;x1;y0;y1;split;note\r\n"
        b"imgs/f0.png;1.50;3;2;4;train;first\r\n"  # untouched: its text as it was
        b"imgs/f1.png;5;7.0;6;13.0;val;\r\n"  # only the cell that differed
        b"imgs/f2.png;9.0;8.0;9.0;8.0;train;todo\r\n"  # filled in, its other cells kept
        b"imgs/f3.png;1.0;2.0;1.0;2.0;;\r\n")  # added


def test_merging_by_click_order_is_refused(tmp_path: Path) -> None:
    labels = _lab_project(tmp_path)
    with pytest.raises(DataError, match=r"merge matches points by name; landmark_attribute='@order'"):
        merge_annotations(_review(tmp_path, {2: [9, 9, 8, 8]}), labels, landmark_attribute="@order")


def test_out_in_another_folder_keeps_the_project_and_finds_the_images(tmp_path: Path) -> None:
    labels = _lab_project(tmp_path)
    original = json.loads(labels.read_text())
    original["_via_settings"]["core"]["default_filepath"] = ""  # names relative to the project's folder
    for entry in original["_via_img_metadata"].values():
        entry["filename"] = f"imgs/{entry['filename']}"
    labels.write_text(json.dumps(original))
    out = tmp_path / "elsewhere" / "merged.json"
    merge_annotations(_review(tmp_path, {2: [9, 9, 8, 8]}), labels, out=out)
    merged = json.loads(out.read_text())
    assert merged["_via_settings"]["core"]["default_filepath"] == tmp_path.as_uri() + "/"
    assert merged["_via_settings"]["project"] == {"name": "mouse lab 2024"}
    assert read_annotations(out).images == [str(tmp_path / "imgs" / f"f{i}.png") for i in (0, 1, 2, 5)]
    assert stat.S_IMODE(labels.stat().st_mode) & 0o200  # untouched, still writable
