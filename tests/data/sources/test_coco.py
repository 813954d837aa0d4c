from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cnnkit import DataError
from cnnkit.data.sources import read_annotations

NAMES = ["nose", "left_eye", "right_eye", "left_ear", "right_ear"]


def _coco(tmp_path: Path, **changes: object) -> Path:
    data = {
        "info": {"description": "tiny"},
        "images": [{"id": 1, "file_name": "000001.jpg", "width": 640, "height": 480},
                   {"id": 2, "file_name": "000002.jpg", "width": 640, "height": 480},
                   {"id": 3, "file_name": "000003.jpg", "width": 640, "height": 480}],
        "annotations": [
            {"id": 11, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [10, 10, 100, 100], "num_keypoints": 4,
             "keypoints": [50, 60, 2, 40, 50, 2, 60, 50, 1, 0, 0, 0, 70, 55, 2]},
            {"id": 12, "image_id": 2, "category_id": 1, "iscrowd": 0, "bbox": [0, 0, 5, 5], "num_keypoints": 5,
             "keypoints": [1, 2, 2, 3, 4, 2, 5, 6, 2, 7, 8, 2, 9, 10, 2]},
        ],
        "categories": [{"id": 1, "name": "person", "supercategory": "person", "keypoints": NAMES,
                        "skeleton": [[1, 2], [1, 3]]}],
    }
    data.update(changes)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "person_keypoints.json"
    path.write_text(json.dumps(data))
    for img in data["images"]:  # type: ignore[union-attr]
        (tmp_path / img["file_name"]).write_bytes(b"x")
    return path


def test_coco_keypoints_visibility_and_flip_pairs(tmp_path: Path) -> None:
    t = read_annotations(_coco(tmp_path))
    assert t.landmarks == tuple(NAMES) and len(t) == 2  # image 3 has no annotation: dropped
    pts = t.points()
    assert pts[0, 2].tolist() == [60, 50]  # v = 1 (hidden) kept
    assert np.isnan(pts[0, 3]).all()  # v = 0 -> NaN
    assert t.flip_pairs == (("left_eye", "right_eye"), ("left_ear", "right_ear"))
    assert t.df["annotation_id"].tolist() == [11, 12]
    assert len(read_annotations(_coco(tmp_path / "k"), unannotated="keep")) == 3


def test_coco_bad_keypoint_length(tmp_path: Path) -> None:
    path = _coco(tmp_path)
    data = json.loads(path.read_text())
    data["annotations"][1]["keypoints"] = [1, 2, 2]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"annotations\[1\]\.keypoints has 3 numbers; expected 3 x 5"):
        read_annotations(path)


def test_forced_coco_on_via_file(lips_dir: Path) -> None:
    with pytest.raises(DataError, match=r"a COCO file needs the keys 'images', 'annotations', 'categories'"):
        read_annotations(lips_dir / "via_project.json", format="coco")
