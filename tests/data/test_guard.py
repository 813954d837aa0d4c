"""refuse_to_overwrite_labels: which files count as holding labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnkit.data.guard import labelled_count, refuse_to_overwrite_labels
from cnnkit.errors import DataError


def _via(path: Path, regions: list[list[dict]]) -> Path:
    meta = {f"{i}.png1": {"filename": f"{i}.png", "size": 1, "regions": r, "file_attributes": {}}
            for i, r in enumerate(regions)}
    path.write_text(json.dumps({"_via_settings": {}, "_via_img_metadata": meta, "_via_attributes": {}}))
    return path


POINT = {"shape_attributes": {"name": "point", "cx": 1, "cy": 2}, "region_attributes": {}}


@pytest.mark.parametrize(("name", "content", "count"), [
    ("labels.csv", "image,a_x,a_y\n1.png,1,2\n2.png,3,4\n", 2),
    ("preds.csv", "image,a_x,a_y,a_likelihood\n1.png,1,2,0.9\n", 0),
    ("classes.csv", "image,label,confidence\n1.png,cat,0.9\n", 0),
    ("empty.csv", "", 0),
    ("coco.json", json.dumps({"images": [{"id": 1}], "annotations": [{"image_id": 1}, {"image_id": 1}]}), 1),
    ("odd.json", "[1, 2]", 1),
    ("notes.bin", "something", 1),
])
def test_labelled_count(tmp_path: Path, name: str, content: str, count: int) -> None:
    (tmp_path / name).write_text(content)
    assert labelled_count(tmp_path / name) == count


def test_via_projects_count_images_with_regions(tmp_path: Path) -> None:
    assert labelled_count(_via(tmp_path / "a.json", [[], [POINT], [POINT, POINT]])) == 2
    assert labelled_count(_via(tmp_path / "b.json", [[], []])) == 0
    assert labelled_count(tmp_path / "missing.json") == 0


def test_refuse_names_the_file_and_the_way_out(tmp_path: Path) -> None:
    path = _via(tmp_path / "review.json", [[POINT]])
    with pytest.raises(DataError, match=r"review\.json \(--via\) already exists and holds annotations for 1 .*merge"):
        refuse_to_overwrite_labels(path, what="--via")
    refuse_to_overwrite_labels(_via(tmp_path / "empty.json", [[]]))  # nothing to lose: no error


def test_links_and_read_only_targets_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cnnkit.cli import main

    real = tmp_path / "real.csv"
    real.write_text("image,a_x,a_y,a_likelihood\n1.png,1,2,0.9\n")  # predictions: replaceable by content
    link = tmp_path / "preds.csv"
    link.symlink_to(real)
    with pytest.raises(DataError, match=r"preds\.csv \(--out\) is a symbolic link to .*real\.csv; nothing was written"):
        refuse_to_overwrite_labels(link, what="--out")
    real.chmod(0o444)
    try:
        with pytest.raises(DataError, match=r"real\.csv \(--out\) is read-only; nothing was written\. Make it "
                                            r"writable \(chmod u\+w\)"):
            refuse_to_overwrite_labels(real, what="--out")
    finally:
        real.chmod(0o644)
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(DataError, match=r"locked \(the folder of --out\) is read-only"):
            refuse_to_overwrite_labels(folder / "new" / "p.csv", what="--out")  # a folder it would make in there
        review = _via(tmp_path / "r.json", [[POINT]])
        assert main(["convert", str(review), str(folder / "out.csv")]) == 2
    finally:
        folder.chmod(0o755)
    assert "(the folder of the output) is read-only" in capsys.readouterr().err
    assert list(folder.iterdir()) == [] and link.is_symlink()
