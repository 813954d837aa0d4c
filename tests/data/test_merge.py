"""merge_annotations: added / filled / unchanged / conflicts, --prefer, backups, formats kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cnnkit import AnnotationTable, merge_annotations, read_annotations, write_csv, write_via
from cnnkit.data.merge import MergeConflictError
from cnnkit.errors import DataError

NAMES = ("tip", "base")


def _images(tmp_path: Path, n: int = 6) -> list[str]:
    folder = tmp_path / "imgs"
    folder.mkdir(exist_ok=True)
    for i in range(n):
        (folder / f"f{i}.png").write_bytes(b"png" * (i + 1))
    return [str(folder / f"f{i}.png") for i in range(n)]


def _table(images: list[str], pts: list[list[float]], **extra: list[object]) -> AnnotationTable:
    arr = np.array(pts, dtype=float).reshape(len(images), 2, 2)
    df = pd.DataFrame({"image": images, "tip_x": arr[:, 0, 0], "tip_y": arr[:, 0, 1],
                       "base_x": arr[:, 1, 0], "base_y": arr[:, 1, 1], **extra})
    return AnnotationTable(df, NAMES)


NAN4 = [np.nan] * 4


def _setup(tmp_path: Path) -> tuple[list[str], Path, Path]:
    """labels.csv: f0, f1 labelled, f2 listed without points (and a split column);
    review.json: f0 same, f1 moved by 5 px, f2 and f3 labelled, f4 without points."""
    imgs = _images(tmp_path)
    labels = write_csv(_table(imgs[:3], [[1, 2, 3, 4], [5, 6, 7, 8], NAN4], split=["train"] * 3),
                       tmp_path / "labels.csv")
    review = write_via(_table(imgs[:5], [[1, 2, 3, 4], [5, 6, 7, 13], [9, 9, 9, 9], [1, 1, 2, 2], NAN4]),
                       tmp_path / "out" / "review.json")
    return imgs, labels, review


def test_conflict_lists_and_writes_nothing(tmp_path: Path) -> None:
    imgs, labels, review = _setup(tmp_path)
    before = labels.read_bytes()
    with pytest.raises(MergeConflictError, match=r"(?s)1 image\(s\).*f1\.png: base \(up to 5\.0 px\).*--prefer") as err:
        merge_annotations(review, labels)
    assert [c.image for c in err.value.conflicts] == [imgs[1]] and err.value.conflicts[0].differs == ("base",)
    assert labels.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs", "labels.csv", "out"]  # no backup either


@pytest.mark.parametrize(("prefer", "f1_base_y"), [("corrected", 13.0), ("existing", 8.0)])
def test_prefer_resolves_and_keeps_a_backup(tmp_path: Path, prefer: str, f1_base_y: float) -> None:
    imgs, labels, review = _setup(tmp_path)
    before = labels.read_bytes()
    report = merge_annotations(review, labels, prefer=prefer)  # type: ignore[arg-type]
    assert (report.added, report.filled, report.unchanged) == ([imgs[3]], [imgs[2]], [imgs[0]])
    assert report.skipped == [imgs[4]] and len(report.conflicts) == 1
    assert report.backup is not None and report.backup.read_bytes() == before
    assert report.backup.name.startswith("labels.backup-") and report.backup.suffix == ".csv"
    back = read_annotations(labels, unannotated="keep")
    assert back.images == imgs[:4]
    np.testing.assert_array_equal(back.points()[:, 1, 1], [4.0, f1_base_y, 9.0, 2.0])
    assert back.df["split"].tolist()[:3] == ["train"] * 3 and pd.isna(back.df["split"][3])
    assert "1 added, 1 filled in, 1 unchanged, 1 conflicts" in str(report)


def test_second_merge_is_a_no_op_and_backups_never_replace_each_other(tmp_path: Path) -> None:
    _, labels, review = _setup(tmp_path)
    first = merge_annotations(review, labels, prefer="corrected")
    second = merge_annotations(review, labels)  # everything now equal: no conflict
    assert (len(second.added), len(second.conflicts), len(second.unchanged)) == (0, 0, 4)
    assert first.backup != second.backup and first.backup.exists() and second.backup.exists()


def test_into_a_via_project_stays_a_via_project(tmp_path: Path) -> None:
    imgs = _images(tmp_path)
    project = write_via(_table(imgs[:1], [[1, 2, 3, 4]]), tmp_path / "imgs" / "labels.json", attribute="part")
    review = write_via(_table(imgs[1:3], [[5, 6, 7, 8], [1, 1, 1, 1]]), tmp_path / "review.json")
    merge_annotations(review, project)
    data = json.loads(project.read_text())
    assert list(data["_via_attributes"]["region"]) == ["part"]  # the project's own attribute name
    assert data["_via_settings"]["core"]["default_filepath"].startswith("file://")
    back = read_annotations(project)
    assert back.images == imgs[:3] and back.points()[2].tolist() == [[1, 1], [1, 1]]


def test_new_labels_file_is_created(tmp_path: Path) -> None:
    _, _, review = _setup(tmp_path)
    report = merge_annotations(review, tmp_path / "new.csv")
    assert report.backup is None and len(report.added) == 4
    assert len(read_annotations(tmp_path / "new.csv")) == 4


def test_out_leaves_labels_untouched_and_refuses_a_labelled_out(tmp_path: Path) -> None:
    _, labels, review = _setup(tmp_path)
    before = labels.read_bytes()
    merge_annotations(review, labels, prefer="existing", out=tmp_path / "merged.csv")
    assert labels.read_bytes() == before and len(read_annotations(tmp_path / "merged.csv")) == 4
    with pytest.raises(DataError, match="already exists and holds annotations"):
        merge_annotations(review, labels, prefer="existing", out=tmp_path / "merged.csv")


def test_refuses_what_it_cannot_write_back_unless_out(tmp_path: Path) -> None:
    imgs, labels, review = _setup(tmp_path)
    dlc = tmp_path / "CollectedData_me.csv"
    dlc.write_text("scorer,me,me,me,me\nbodyparts,tip,tip,base,base\ncoords,x,y,x,y\nimgs/f0.png,1,2,3,4\n")
    before = dlc.read_bytes()
    with pytest.raises(DataError, match="DeepLabCut.*out="):
        merge_annotations(review, dlc)
    merged = merge_annotations(review, dlc, out=tmp_path / "merged.csv", prefer="corrected")  # a new file: converted
    assert dlc.read_bytes() == before and len(merged.added) == 3
    assert read_annotations(tmp_path / "merged.csv").images == imgs[:4]


def test_different_landmark_names_are_an_error(tmp_path: Path) -> None:
    imgs, labels, _ = _setup(tmp_path)
    df = pd.DataFrame({"image": imgs[3:4], "a_x": [1.0], "a_y": [1.0]})
    with pytest.raises(DataError, match="landmark names differ"):
        merge_annotations(AnnotationTable(df, ("a",)), labels)


def test_a_point_removed_in_review_is_a_conflict(tmp_path: Path) -> None:
    imgs, labels, _ = _setup(tmp_path)
    corrected = _table(imgs[:1], [[1, 2, np.nan, np.nan]])
    with pytest.raises(MergeConflictError, match="a point missing on one side"):
        merge_annotations(corrected, labels)


def test_cli_merge_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cnnkit.cli import main

    _, labels, review = _setup(tmp_path)
    assert main(["merge", str(review), "--into", str(labels)]) == 2  # a conflict: stop, say how
    assert "--prefer corrected|existing" in capsys.readouterr().err
    assert main(["merge", str(review), "--into", str(labels), "--prefer", "corrected"]) == 0
    out = capsys.readouterr().out
    assert "1 added, 1 filled in" in out and "backup of the original" in out


def test_cli_convert_refuses_to_replace_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cnnkit.cli import main

    _, labels, review = _setup(tmp_path)
    before = labels.read_bytes()
    assert main(["convert", str(review), str(labels)]) == 2
    assert labels.read_bytes() == before and "already exists and holds annotations" in capsys.readouterr().err
