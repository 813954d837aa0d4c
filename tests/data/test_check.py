"""check_data: one report of every problem; raise vs skip; real images from ../shared/data."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cnnkit.data.check import check_data
from cnnkit.data.dataset import TableDataset
from cnnkit.data.table import AnnotationTable
from cnnkit.errors import DataError


@pytest.fixture
def broken(tmp_path: Path) -> AnnotationTable:
    good = tmp_path / "good.png"
    Image.new("RGB", (100, 50)).save(good)
    jpg = io.BytesIO()
    Image.effect_noise((128, 128), 40).convert("RGB").save(jpg, "JPEG")
    (tmp_path / "trunc.jpg").write_bytes(jpg.getvalue()[: len(jpg.getvalue()) // 2])
    (tmp_path / "text.jpg").write_text("hello")
    rows = [
        (good, 10.0, 10.0),  # 0 fine
        (tmp_path / "gone.png", 1.0, 1.0),  # 1 missing
        (tmp_path / "trunc.jpg", 1.0, 1.0),  # 2 truncated
        (tmp_path / "text.jpg", 1.0, 1.0),  # 3 not an image
        (good, 10.0, 10.0),  # 4 duplicate of 0
        (tmp_path / "zero.png", 1.0, 1.0),  # 5 zero bytes
        (tmp_path / "tall.png", 100.0, 60.0),  # 6 y outside the 100x50 image
        (tmp_path / "nan.png", np.nan, 3.0),  # 7 NaN: counted, not an error
        (tmp_path / "inf.png", np.inf, 3.0),  # 8 infinite
    ]
    (tmp_path / "zero.png").write_bytes(b"")
    for name in ("tall.png", "nan.png", "inf.png"):
        Image.new("RGB", (100, 50)).save(tmp_path / name)
    df = pd.DataFrame(
        {"image": [str(r[0]) for r in rows], "tip_x": [r[1] for r in rows], "tip_y": [r[2] for r in rows]}
    )
    return AnnotationTable(df, landmarks=("tip",), source="broken.csv")


def test_report_lists_every_problem(broken: AnnotationTable) -> None:
    report = check_data(broken, on_error="skip")
    kinds = {(p.row, p.kind) for p in report.problems}
    assert kinds == {
        (1, "missing"), (2, "unreadable"), (3, "unreadable"), (4, "duplicate"),
        (5, "unreadable"), (6, "outside"), (8, "infinite"),
    }  # fmt: skip
    assert report.counts == {"missing": 1, "unreadable": 3, "duplicate": 1, "outside": 1, "infinite": 1}
    assert report.nan_values == 1 and report.n_rows == 9 and not report.ok
    assert report.table.images == [broken.images[0], broken.images[7]]
    text = str(report)
    assert "9 rows, 7 problems in 7 rows" in text and "broken.csv" in text
    assert "row 1: " in text and "gone.png" in text and "missing" in text
    assert "landmark 'tip' at (100.0, 60.0) outside the 100x50 image" in text
    assert "same image as row 0" in text and "truncated" in text


def test_raise_carries_the_report(broken: AnnotationTable) -> None:
    with pytest.raises(DataError, match=r"(?s)7 problems.*row 2: .*trunc\.jpg.*on_error='skip'"):
        check_data(broken)


def test_header_only_misses_truncation_but_finds_the_rest(broken: AnnotationTable) -> None:
    report = check_data(broken, on_error="skip", decode=False, workers=2)
    assert (2, "unreadable") not in {(p.row, p.kind) for p in report.problems}
    assert {(p.row, p.kind) for p in report.problems} >= {(1, "missing"), (3, "unreadable"), (6, "outside")}


def test_empty_table_is_an_error() -> None:
    with pytest.raises(DataError, match="no rows"):
        check_data(AnnotationTable(pd.DataFrame({"image": []})))


def test_bad_on_error_value(broken: AnnotationTable) -> None:
    with pytest.raises(DataError, match="'raise' or 'skip'"):
        check_data(broken, on_error="ignore")  # type: ignore[arg-type]


def _real_table(paths: list[Path]) -> AnnotationTable:
    return AnnotationTable(pd.DataFrame({"image": [str(p) for p in paths]}), source="real")


def test_real_lips_pngs(lips_dir: Path) -> None:
    paths = sorted((lips_dir / "images").rglob("*.png"))[:3]
    report = check_data(_real_table(paths))
    assert report.ok and "3 rows, no problems" in str(report)
    item = TableDataset(_real_table(paths), size=(64, 48))[0]
    assert item["image"].shape == (3, 48, 64) and item["orig_size"].tolist() in (
        [320.0, 240.0],
        [372.0, 248.0],
    )


def test_real_faces_rgba_pngs(faces_dir: Path) -> None:
    paths = sorted((faces_dir / "Images").glob("*.png"))[:3]
    assert Image.open(paths[0]).mode == "RGBA"
    assert check_data(_real_table(paths)).ok
    item = TableDataset(_real_table(paths), size=(32, 32), grayscale=True)[0]
    w, h = Image.open(paths[0]).size
    assert item["image"].shape == (1, 32, 32) and item["orig_size"].tolist() == [float(w), float(h)]


def test_real_hymenoptera_jpegs(hymenoptera_dir: Path) -> None:
    paths = sorted((hymenoptera_dir / "train" / "ants").glob("*.jpg"))[:4]
    report = check_data(_real_table(paths), workers=2)
    assert report.ok
    for i, p in enumerate(paths):
        item = TableDataset(_real_table(paths), size=(92, 64))[i]
        w, h = Image.open(p).size  # none of these carry an EXIF rotation
        assert item["scale"].tolist() == pytest.approx([92 / w, 64 / h])
