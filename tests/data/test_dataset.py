"""TableDataset: item keys, shapes and values; collate; NaN kept; zip; cache; pickling."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import default_collate

from cnnkit.data.dataset import TableDataset
from cnnkit.data.table import AnnotationTable
from cnnkit.errors import DataError


def _save(folder: Path, name: str, size: tuple[int, int], value: int) -> str:
    p = folder / name
    Image.new("RGB", size, (value, value, value)).save(p)
    return str(p)


@pytest.fixture
def landmark_table(tmp_path: Path) -> AnnotationTable:
    images = [_save(tmp_path, "a.png", (200, 100), 10), _save(tmp_path, "b.png", (100, 100), 20)]
    df = pd.DataFrame(
        {"image": images, "p_x": [100.0, 50.0], "p_y": [50.0, np.nan], "q_x": [0.0, 10.0], "q_y": [0.0, 10.0]}
    )
    return AnnotationTable(df, landmarks=("p", "q"))


def test_item_holds_every_key_with_values(landmark_table: AnnotationTable) -> None:
    item = TableDataset(landmark_table, size=(50, 50))[0]
    assert set(item) == {"image", "points", "label", "index", "scale", "offset", "orig_size"}
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 50, 50)
    assert int(item["image"][0, 5, 5]) == 10
    assert item["points"].dtype == torch.float32 and item["points"].tolist() == [[25.0, 25.0], [0.0, 0.0]]
    assert item["scale"].tolist() == [0.25, 0.5] and item["offset"].tolist() == [0.0, 0.0]
    assert item["orig_size"].tolist() == [200.0, 100.0]
    assert int(item["label"]) == -1 and int(item["index"]) == 0


def test_nan_points_kept_and_letterbox_offsets(landmark_table: AnnotationTable) -> None:
    item = TableDataset(landmark_table, size=(50, 50), letterbox=True)[1]
    pts = item["points"].numpy()
    assert np.isnan(pts[0, 1]) and pts[0, 0] == 25.0  # x kept, missing y stays NaN
    a = TableDataset(landmark_table, size=(50, 50), letterbox=True)[0]
    assert a["offset"].tolist() == [0.0, 12.0] and a["points"][0].tolist() == [25.0, 24.5]


def test_collate_shapes_and_grey(landmark_table: AnnotationTable) -> None:
    ds = TableDataset(landmark_table, size=(32, 24), grayscale=True)
    batch = default_collate([ds[0], ds[1]])
    assert batch["image"].shape == (2, 1, 24, 32) and batch["points"].shape == (2, 2, 2)
    assert batch["label"].shape == (2,) and batch["index"].tolist() == [0, 1]
    assert batch["orig_size"].tolist() == [[200.0, 100.0], [100.0, 100.0]]


def test_class_table_labels_and_empty_points(tmp_path: Path) -> None:
    images = [_save(tmp_path, f"{i}.png", (20, 20), i) for i in range(3)]
    t = AnnotationTable(
        pd.DataFrame({"image": images, "label": ["bee", "ant", "bee"]}), classes=("ant", "bee")
    )
    ds = TableDataset(t, size=(8, 8))
    assert [int(ds[i]["label"]) for i in range(3)] == [1, 0, 1]
    assert ds[0]["points"].shape == (0, 2)
    assert default_collate([ds[0], ds[1]])["points"].shape == (2, 0, 2)
    assert int(ds[-1]["index"]) == 2
    with pytest.raises(IndexError):
        ds[3]


def test_zip_table_and_pickling(tmp_path: Path) -> None:
    _save(tmp_path, "z.png", (40, 20), 99)
    with zipfile.ZipFile(tmp_path / "i.zip", "w") as zf:
        zf.write(tmp_path / "z.png", "dir/z.png")
    t = AnnotationTable(
        pd.DataFrame({"image": ["dir/z.png"], "p_x": [40.0], "p_y": [20.0]}),
        landmarks=("p",),
        zip=tmp_path / "i.zip",
    )
    ds = TableDataset(t, size=(10, 10))
    first = ds[0]
    copy = pickle.loads(pickle.dumps(ds))
    again = copy[0]
    assert int(again["image"][0, 0, 0]) == 99 and again["points"].tolist() == [[10.0, 10.0]]
    assert torch.equal(first["image"], again["image"])


def test_cache_items_equal_direct(landmark_table: AnnotationTable, tmp_path: Path) -> None:
    direct = TableDataset(landmark_table, size=(16, 16))
    cached = TableDataset(landmark_table, size=(16, 16), cache=tmp_path / "cache")
    assert len(list((tmp_path / "cache").iterdir())) == 1
    for i in range(2):
        a, b = direct[i], cached[i]
        assert all(torch.equal(a[k], b[k]) for k in a if k != "points")
        assert torch.allclose(a["points"], b["points"], equal_nan=True)
    assert pickle.loads(pickle.dumps(cached))[1]["image"].shape == (3, 16, 16)


def test_missing_image_error_names_file(tmp_path: Path) -> None:
    ds = TableDataset(AnnotationTable(pd.DataFrame({"image": [str(tmp_path / "gone.png")]})), size=(8, 8))
    with pytest.raises(DataError, match="gone.png"):
        ds[0]


def test_bad_size_rejected(landmark_table: AnnotationTable) -> None:
    with pytest.raises(DataError, match="width, height"):
        TableDataset(landmark_table, size=(0, 8))
