from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cnnkit import AnnotationTable
from cnnkit.data.sources import read_annotations
from cnnkit.data.sources.writers import write_csv, write_via


def _table(tmp_path: Path) -> AnnotationTable:
    (tmp_path / "imgs").mkdir(parents=True)
    paths = []
    for i in range(3):
        p = tmp_path / "imgs" / f"{i}.png"
        p.write_bytes(b"x" * (10 + i))
        paths.append(str(p))
    df = pd.DataFrame({"image": paths, "tip_x": [1.5, np.nan, 3.0], "tip_y": [2.5, np.nan, 4.0],
                       "base_x": [5.0, 6.0, 7.0], "base_y": [8.0, 9.0, 10.0]})
    return AnnotationTable(df, ("tip", "base"), source="test")


def test_via_writer_layout(tmp_path: Path) -> None:
    t = _table(tmp_path)
    out = write_via(t, tmp_path / "proj.json", attribute="lm")
    data = json.loads(out.read_text())
    assert set(data) == {"_via_settings", "_via_img_metadata", "_via_attributes", "_via_data_format_version",
                         "_via_image_id_list"}
    assert list(data["_via_attributes"]["region"]["lm"]["options"]) == ["tip", "base"]
    assert data["_via_attributes"]["region"]["lm"]["type"] == "dropdown"
    entry = data["_via_img_metadata"]["imgs/1.png11"]
    assert entry["filename"] == "imgs/1.png" and entry["size"] == 11
    assert entry["regions"] == [{"shape_attributes": {"name": "point", "cx": 6.0, "cy": 9.0},
                                 "region_attributes": {"lm": "base"}}]  # NaN tip: no region
    assert data["_via_image_id_list"] == list(data["_via_img_metadata"])
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # atomic: no temp left


def test_via_round_trip_synthetic(tmp_path: Path) -> None:
    t = _table(tmp_path)
    back = read_annotations(write_via(t, tmp_path / "proj.json"))
    assert back.landmarks == t.landmarks and back.images == t.images
    np.testing.assert_array_equal(back.points(), t.points())


def test_via_round_trip_lips(lips_dir: Path, tmp_path: Path) -> None:
    t = read_annotations(lips_dir / "via_project.json")
    back = read_annotations(write_via(t, tmp_path / "lips.json"))
    assert back.landmarks == t.landmarks and back.images == t.images
    np.testing.assert_array_equal(back.points(), t.points())
    meta = json.loads((tmp_path / "lips.json").read_text())["_via_img_metadata"]
    first = next(iter(meta.values()))
    assert first["size"] == Path(t.images[0]).stat().st_size and first["filename"] == t.images[0]


def test_csv_round_trip_relative_paths(tmp_path: Path) -> None:
    t = _table(tmp_path)
    out = write_csv(t, tmp_path / "ann.csv")
    raw = pd.read_csv(out)
    assert raw["image"].tolist() == ["imgs/0.png", "imgs/1.png", "imgs/2.png"]
    back = read_annotations(out)
    assert back.landmarks == t.landmarks and back.images == t.images
    np.testing.assert_array_equal(back.points(), t.points())


def test_class_table_to_via_and_csv(tmp_path: Path) -> None:
    t = _table(tmp_path)
    ct = AnnotationTable(pd.DataFrame({"image": t.images, "label": ["a", "b", "a"]}), classes=("a", "b"))
    data = json.loads(write_via(ct, tmp_path / "c.json").read_text())
    assert list(data["_via_attributes"]["file"]["label"]["options"]) == ["a", "b"]
    assert [e["file_attributes"]["label"] for e in data["_via_img_metadata"].values()] == ["a", "b", "a"]
    back = read_annotations(write_csv(ct, tmp_path / "c.csv"))
    assert back.classes == ("a", "b") and back.df["label"].tolist() == ["a", "b", "a"]
