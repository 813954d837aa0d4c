from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

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
    entry = data["_via_img_metadata"]["1.png11"]  # VIA's image id: filename + size
    assert entry["filename"] == "1.png" and entry["size"] == 11
    assert data["_via_settings"]["core"]["default_filepath"] == (tmp_path / "imgs").as_uri() + "/"
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
    data = json.loads((tmp_path / "lips.json").read_text())
    first = next(iter(data["_via_img_metadata"].values()))
    assert first["size"] == Path(t.images[0]).stat().st_size
    # 38 folders: VIA loads default_filepath + filename, the common folder + a relative path
    assert first["filename"] == Path(t.images[0]).relative_to(lips_dir / "images").as_posix()
    assert [_via_loads(data, e) for e in data["_via_img_metadata"].values()] == t.images


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


def _via_loads(project: dict[str, Any], entry: dict[str, Any]) -> str:
    """The file VIA 2 shows for an entry: default_filepath + filename (via.js), as a local path."""
    url = project["_via_settings"]["core"]["default_filepath"] + entry["filename"]
    assert url.startswith("file:///"), url
    return url2pathname(urlparse(url).path)


def _via_add_files(project: dict[str, Any], chosen: list[Path]) -> list[str | None]:
    """VIA 2's "Add Files": the entry whose filename equals the chosen file's bare name, or None (new)."""
    names = [project["_via_img_metadata"][k]["filename"] for k in project["_via_image_id_list"]]
    return [project["_via_image_id_list"][names.index(p.name)] if p.name in names else None for p in chosen]


def test_via_project_shows_images_from_anywhere(tmp_path: Path) -> None:
    """A project written away from its images: VIA's path is the images' folder, names are bare."""
    t = _table(tmp_path)
    data = json.loads(write_via(t, tmp_path / "elsewhere" / "proj.json").read_text())
    assert [_via_loads(data, e) for e in data["_via_img_metadata"].values()] == t.images
    assert [e["filename"] for e in data["_via_img_metadata"].values()] == ["0.png", "1.png", "2.png"]
    back = read_annotations(tmp_path / "elsewhere" / "proj.json", unannotated="keep")
    assert back.images == t.images
    np.testing.assert_array_equal(back.points(), t.points())


def test_via_project_odd_folder_names(tmp_path: Path) -> None:
    """Spaces, '#', '%' and non-ASCII in the folder survive VIA's string concatenation."""
    folder = tmp_path / "my frames #1 %20 é"
    folder.mkdir()
    (folder / "a b.png").write_bytes(b"x")
    t = AnnotationTable(pd.DataFrame({"image": [str(folder / "a b.png")], "p_x": [1.0], "p_y": [2.0]}), ("p",))
    data = json.loads(write_via(t, tmp_path / "proj.json").read_text())
    assert " " not in data["_via_settings"]["core"]["default_filepath"]  # percent-encoded URI
    assert _via_loads(data, data["_via_img_metadata"]["a b.png1"]) == str(folder / "a b.png")
    back = read_annotations(tmp_path / "proj.json")
    assert back.images == t.images and back.points().tolist() == [[[1.0, 2.0]]]


def test_via_project_moved_with_images(tmp_path: Path) -> None:
    """Project and images moved together (the old default_filepath is gone): same table, and
    VIA's Add Files re-attaches every moved image to its labelled entry, none as a new one."""
    t = _table(tmp_path)
    write_via(t, tmp_path / "imgs" / "proj.json")
    shutil.move(tmp_path / "imgs", tmp_path / "moved")
    back = read_annotations(tmp_path / "moved" / "proj.json", unannotated="keep")
    assert back.images == [str(tmp_path / "moved" / Path(p).name) for p in t.images]
    np.testing.assert_array_equal(back.points(), t.points())
    data = json.loads((tmp_path / "moved" / "proj.json").read_text())
    chosen = sorted((tmp_path / "moved").glob("*.png"))
    assert _via_add_files(data, chosen) == ["0.png10", "1.png11", "2.png12"]


def test_via_project_saved_from_browser_elsewhere(tmp_path: Path) -> None:
    """VIA's 'Save Project' downloads the JSON (settings included) to another folder: still readable."""
    t = _table(tmp_path)
    out = write_via(t, tmp_path / "imgs" / "proj.json")
    (tmp_path / "Downloads").mkdir()
    saved = shutil.copy(out, tmp_path / "Downloads" / "via_project_30Nov2026.json")
    back = read_annotations(saved, unannotated="keep")
    assert back.images == t.images
    np.testing.assert_array_equal(back.points(), t.points())
