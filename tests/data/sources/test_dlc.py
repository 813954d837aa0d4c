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
    with pytest.raises(DataError, match=r"not an HDF5 file \(cut short, or renamed\?\)"):
        read_annotations(h5)


def test_collected_data_moved_away_from_its_project(tmp_path: Path) -> None:
    csv = _project(tmp_path, CLASSIC)
    moved = tmp_path / "elsewhere" / csv.name
    moved.parent.mkdir()
    csv.rename(moved)
    t = read_annotations(moved, images=csv.parent)  # --images <the folder of frames>
    assert t.images == [str(csv.parent / "img001.png"), str(csv.parent / "img007.png")]


# --- CollectedData_*.h5: written here exactly as DeepLabCut writes it (pandas' fixed layout, key
# df_with_missing: generate_training_dataset/trainingsetmanipulation.py, DC.to_hdf(fn, key="df_with_missing",
# mode="w")), read back without pandas/PyTables.

def _dlc_frame(index, individuals=None):
    import pandas as pd

    levels = [["Mackenzie"], ["snout", "leftear", "rightear"], ["x", "y"]]
    names = ["scorer", "bodyparts", "coords"]
    if individuals:
        levels.insert(1, individuals)
        names.insert(1, "individuals")
    columns = pd.MultiIndex.from_product(levels, names=names)
    values = np.arange(len(index) * len(columns), dtype=float).reshape(len(index), -1) + 0.25
    values[1, 2:4] = np.nan  # img007's first individual's leftear: not labelled
    return pd.DataFrame(values, index=index, columns=columns)


@pytest.mark.parametrize("layout", ["multiindex", "path"])
def test_collected_data_h5_gives_the_same_table_as_its_csv_twin(tmp_path: Path, layout: str) -> None:
    pytest.importorskip("tables")
    import pandas as pd

    csv = _project(tmp_path, CLASSIC)
    parts = [("labeled-data", "reach1", "img001.png"), ("labeled-data", "reach1", "img007.png")]
    index = pd.MultiIndex.from_tuples(parts) if layout == "multiindex" else ["/".join(p) for p in parts]
    frame = _dlc_frame(index)
    h5 = csv.with_suffix(".h5")
    frame.to_hdf(h5, key="df_with_missing", mode="w")
    csv.write_text(frame.to_csv())  # DeepLabCut writes the CSV twin with to_csv
    from_h5, from_csv = read_annotations(h5), read_annotations(csv)
    assert from_h5.landmarks == from_csv.landmarks == ("snout", "leftear", "rightear")
    assert from_h5.images == from_csv.images == [str(csv.parent / "img001.png"), str(csv.parent / "img007.png")]
    np.testing.assert_array_equal(from_h5.points(), from_csv.points())
    expected = frame.to_numpy().reshape(2, 3, 2)
    np.testing.assert_array_equal(from_h5.points(), expected)
    assert np.isnan(from_h5.points()[1, 1]).all() and not np.isnan(from_h5.points()[0]).any()


def test_collected_data_h5_multi_animal_and_napari_key(tmp_path: Path) -> None:
    pytest.importorskip("tables")
    csv = _project(tmp_path, CLASSIC)
    frame = _dlc_frame(["labeled-data/reach1/img001.png", "labeled-data/reach1/img007.png"], ["m1", "m2"])
    h5 = csv.parent / "CollectedData_Mackenzie.h5"
    frame.to_hdf(h5, key="keypoints", mode="w")  # napari-deeplabcut's writer uses this key
    t = read_annotations(h5)
    assert t.landmarks[:3] == ("m1_snout", "m1_leftear", "m1_rightear") and len(t.landmarks) == 6
    np.testing.assert_array_equal(t.points(), frame.to_numpy().reshape(2, 6, 2))


def test_collected_data_h5_with_pickled_labels_is_refused_unread(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("tables")
    import pickle

    import pandas as pd

    csv = _project(tmp_path, CLASSIC)
    frame = _dlc_frame(pd.Index(["labeled-data/reach1/img001.png", 7], dtype=object))  # mixed: pandas pickles it
    h5 = csv.with_suffix(".h5")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas' PerformanceWarning about pickling
        frame.to_hdf(h5, key="df_with_missing", mode="w")

    def no_unpickling(*args, **kwargs):
        raise AssertionError("a user's file was unpickled")

    monkeypatch.setattr(pickle, "loads", no_unpickling)
    with pytest.raises(DataError, match=r"pickled Python objects are not read\); read the CollectedData CSV"):
        read_annotations(h5)


def test_an_h5_that_is_not_deeplabcut_labels(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "CollectedData_x.h5"
    with h5py.File(path, "w") as f:
        f.create_group("df_with_missing").create_dataset("table", data=np.zeros(3))
    with pytest.raises(DataError, match="not in pandas' fixed layout"):
        read_annotations(path)
