from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cnnkit import DataError
from cnnkit.data.sources import read_annotations


def test_hymenoptera_train(hymenoptera_dir: Path) -> None:
    t = read_annotations(hymenoptera_dir / "train")
    assert len(t) == 244 and t.classes == ("ants", "bees")
    assert t.task == "classes" and set(t.df["label"]) == {"ants", "bees"}
    assert all(p.startswith(str(hymenoptera_dir / "train")) for p in t.images)


def test_hymenoptera_root_reads_both_splits(hymenoptera_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cnnkit"):
        t = read_annotations(hymenoptera_dir)
    assert len(t) == 397 and t.classes == ("ants", "bees")
    assert t.df["split"].value_counts().to_dict() == {"train": 244, "val": 153}
    assert "found split folders train/val" in caplog.text


def test_nested_nonimage_and_empty_class(tmp_path: Path) -> None:
    (tmp_path / "cat" / "deep").mkdir(parents=True)
    (tmp_path / "dog").mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "cat" / "a.JPG").write_bytes(b"x")
    (tmp_path / "cat" / "deep" / "b.png").write_bytes(b"x")
    (tmp_path / "cat" / "notes.txt").write_text("x")
    (tmp_path / "dog" / "c (1).jpeg").write_bytes(b"x")
    with pytest.warns(UserWarning, match=r"class 'empty' has no images"):
        t = read_annotations(tmp_path)
    assert t.classes == ("cat", "dog", "empty")
    assert t.df["label"].tolist() == ["cat", "cat", "dog"]
    assert t.images[1] == str(tmp_path / "cat" / "deep" / "b.png")


def test_folder_without_class_folders(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(DataError, match=r"no class folders found"):
        read_annotations(tmp_path)
