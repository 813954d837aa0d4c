from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cnnkit import DataError
from cnnkit.data.sources import read_annotations


def _images(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{i}.png").write_bytes(b"x")
    return [f"{i}.png" for i in range(n)]


def test_faces68_stale_fullname_paths_rerooted(faces_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cnnkit"):
        t = read_annotations(faces_dir / "CSVs/faces68.csv", image_column="fullname", images=faces_dir / "Images")
    assert len(t) == 520 and len(t.landmarks) == 68
    assert t.landmarks[:2] == ("p0", "p1") and "p67_y" in t.df.columns
    assert t.images[0] == str(faces_dir / "Images/Abdel_Aziz_Al-Hakim_01.png")
    assert "re-rooted 520 of 520 image paths" in caplog.text
    raw = pd.read_csv(faces_dir / "CSVs/faces68.csv", nrows=1)
    assert t.df["p5_x"].iloc[0] == raw["x5"].iloc[0] and t.df["p5_y"].iloc[0] == raw["y5"].iloc[0]
    assert set(t.df["person"]) and "filename" in t.df.columns  # other columns kept


def test_faces68_default_finds_images_folder(faces_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cnnkit"):
        t = read_annotations(faces_dir / "CSVs/faces68.csv")
    assert len(t) == 520
    assert Path(t.images[1]).resolve().parent == (faces_dir / "Images").resolve()  # shared/ may be a symlink
    assert "using column 'filename' for image paths (also found ['fullname']" in caplog.text
    assert "found beside the annotations" in caplog.text


def test_faces68_stale_paths_without_images_folder_fail_clearly(faces_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"520 of 520 images not found: row 0: '/home/annotator/.*Pass images="):
        read_annotations(faces_dir / "CSVs/faces68.csv", image_column="fullname", images=tmp_path)


def test_named_columns_dataframe_and_missing_cells(tmp_path: Path) -> None:
    names = _images(tmp_path, 3)
    df = pd.DataFrame({"path": names, "nose_x": [1.0, None, 3.0], "nose_y": [2.0, None, 4.0],
                       "chin_x": [5, 6, 7], "chin_y": [8, 9, 10]})
    t = read_annotations(df, images=tmp_path)
    assert t.landmarks == ("nose", "chin")
    assert np.isnan(t.points()[1, 0]).all() and t.points()[1, 1].tolist() == [6, 9]
    assert list(df.columns)[0] == "path"  # the caller's frame is untouched


def test_user_named_landmarks_on_seed_layout_and_dict(tmp_path: Path) -> None:
    names = _images(tmp_path, 2)
    df = pd.DataFrame({"file": names, "x0": [1, 2], "x1": [3, 4], "y0": [5, 6], "y1": [7, 8]})
    t = read_annotations(df, images=tmp_path, landmarks=["left", "right"])
    assert t.landmarks == ("left", "right") and t.points()[0].tolist() == [[1, 5], [3, 7]]
    t2 = read_annotations(df, images=tmp_path, landmarks={"a": ("x1", "y0")})
    assert t2.points()[:, 0].tolist() == [[3, 5], [4, 6]]


def test_bom_and_semicolon_csv(tmp_path: Path) -> None:
    names = _images(tmp_path, 2)
    text = "image;a_x;a_y\n" + "".join(f"{n};{i};{i + 1}\n" for i, n in enumerate(names))
    (tmp_path / "ann.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    t = read_annotations(tmp_path / "ann.csv")
    assert t.landmarks == ("a",) and t.points()[1, 0].tolist() == [1, 2]


@pytest.mark.parametrize(("values", "classes", "labels"), [
    (["cat", "dog", "cat"], ("cat", "dog"), ["cat", "dog", "cat"]),
    ([2, 0, 2], ("0", "2"), ["2", "0", "2"]),
    (["[0, 1]", "[1, 0]", "[0, 1]"], ("0", "1"), ["1", "0", "1"]),
])
def test_class_column_names_ints_onehot(tmp_path: Path, values: list, classes: tuple, labels: list) -> None:
    df = pd.DataFrame({"image": _images(tmp_path, 3), "label": values})
    t = read_annotations(df, images=tmp_path)
    assert t.classes == classes and t.df["label"].tolist() == labels
    assert t.labels().tolist() == [classes.index(v) for v in labels]


def test_onehot_columns_named_by_user(tmp_path: Path) -> None:
    df = pd.DataFrame({"image": _images(tmp_path, 3), "ants": [1, 0, 0], "bees": [0, 1, 1]})
    t = read_annotations(df, images=tmp_path, label_column=["ants", "bees"])
    assert t.classes == ("ants", "bees") and t.df["label"].tolist() == ["ants", "bees", "bees"]


def test_bad_onehot_and_bad_numbers(tmp_path: Path) -> None:
    names = _images(tmp_path, 2)
    with pytest.raises(DataError, match=r"rows \[1\] of \['y'\] are not one-hot"):
        read_annotations(pd.DataFrame({"image": names, "y": ["[0, 1]", "[1, 1]"]}), images=tmp_path,
                         label_column="y")
    with pytest.raises(DataError, match=r"row 1, column 'a_x': 'abc' is not a number"):
        read_annotations(pd.DataFrame({"image": names, "a_x": ["1", "abc"], "a_y": [1, 2]}), images=tmp_path)


def test_column_errors(tmp_path: Path) -> None:
    names = _images(tmp_path, 1)
    with pytest.raises(DataError, match=r"image_column 'fullnme' not found\. Did you mean 'fullname'"):
        read_annotations(pd.DataFrame({"fullname": names}), image_column="fullnme")
    with pytest.raises(DataError, match=r"no image path column"):
        read_annotations(pd.DataFrame({"what": names}))
    with pytest.raises(DataError, match=r"without a partner: \['nose_x'\]"):
        read_annotations(pd.DataFrame({"image": names, "nose_x": [1], "chin_y": [2], "chin_x": [3]}))


def test_json_given_as_csv_says_so(lips_dir: Path) -> None:
    with pytest.raises(DataError, match=r"this file is a VIA project, not a CSV"):
        read_annotations(lips_dir / "via_project.json", format="csv")


def test_via_csv_given_as_csv_says_so(via_examples: Path) -> None:
    with pytest.raises(DataError, match=r"VIA CSV export, not a plain table\. Use format='via'"):
        read_annotations(via_examples / "via2_csv_export_rect_receipts.csv", format="csv")
