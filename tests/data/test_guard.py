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
