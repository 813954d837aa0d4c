from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cnnkit import DataError
from cnnkit.data.sources import read_annotations

# Realistic DeepLabCut project: <project>/labeled-data/<video>/CollectedData_<scorer>.csv, paths from <project>.
CLASSIC = """scorer,Mackenzie,Mackenzie,Mackenzie,Mackenzie,Mackenzie,Mackenzie
bodyparts,snout,snout,leftear,leftear,rightear,rightear
coords,x,y,x,y,x,y
labeled-data/reach1/img001.png,105.2,200.5,90.0,180.25,120.0,181.0
labeled-data/reach1/img007.png,110.0,205.0,,,125.5,185.0
"""
NEW = """scorer,,,Mackenzie,Mackenzie,Mackenzie,Mackenzie
bodyparts,,,snout,snout,tail,tail
coords,,,x,y,x,y
labeled-data,reach1,img001.png,1.5,2.5,3.5,4.5
labeled-data,reach1,img007.png,5,6,7,8
"""
MULTI = """scorer,S,S,S,S
individuals,mouse1,mouse1,mouse2,mouse2
bodyparts,snout,snout,snout,snout
coords,x,y,x,y
labeled-data/reach1/img001.png,1,2,3,4
"""


def _project(tmp_path: Path, text: str) -> Path:
    video = tmp_path / "proj" / "labeled-data" / "reach1"
    video.mkdir(parents=True)
    for n in ("img001.png", "img007.png"):
        (video / n).write_bytes(b"x")
    path = video / "CollectedData_Mackenzie.csv"
    path.write_text(text)
    return path


def test_classic_layout(tmp_path: Path) -> None:
    t = read_annotations(_project(tmp_path, CLASSIC))
    assert t.landmarks == ("snout", "leftear", "rightear")
    assert t.images == [str(tmp_path / "proj/labeled-data/reach1/img001.png"),
                        str(tmp_path / "proj/labeled-data/reach1/img007.png")]
    pts = t.points()
    assert pts[0, 1].tolist() == [90.0, 180.25] and np.isnan(pts[1, 1]).all()
    assert read_annotations(_project(tmp_path / "b", CLASSIC), flip_pairs="auto").flip_pairs == (
        ("leftear", "rightear"),)


def test_new_three_index_layout(tmp_path: Path) -> None:
    t = read_annotations(_project(tmp_path, NEW))
    assert t.landmarks == ("snout", "tail")
    assert t.images[1].endswith("labeled-data/reach1/img007.png")
    assert t.points()[1].tolist() == [[5, 6], [7, 8]]


def test_multi_animal_names(tmp_path: Path) -> None:
    t = read_annotations(_project(tmp_path, MULTI))
    assert t.landmarks == ("mouse1_snout", "mouse2_snout") and t.points()[0].tolist() == [[1, 2], [3, 4]]


def test_bad_cell_and_forced_format(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"line 4, column 2: 'abc' is not a number"):
        read_annotations(_project(tmp_path, CLASSIC.replace("105.2", "abc")))
    other = tmp_path / "plain.csv"
    other.write_text("image,a_x,a_y\n")
    with pytest.raises(DataError, match=r"not a DeepLabCut CollectedData CSV"):
        read_annotations(other, format="dlc")
    h5 = tmp_path / "CollectedData_x.h5"
    h5.write_bytes(b"\x89HDF")
    with pytest.raises(DataError, match=r"HDF5 files are not read; use the CollectedData_\*\.csv"):
        read_annotations(h5)


def test_collected_data_moved_away_from_its_project(tmp_path: Path) -> None:
    csv = _project(tmp_path, CLASSIC)
    moved = tmp_path / "elsewhere" / csv.name
    moved.parent.mkdir()
    csv.rename(moved)
    t = read_annotations(moved, images=csv.parent)  # --images <the folder of frames>
    assert t.images == [str(csv.parent / "img001.png"), str(csv.parent / "img007.png")]
