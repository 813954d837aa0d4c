"""SLEAP .slp / .pkg.slp labels -> AnnotationTable; fixtures written by sleap-io itself from lips-via."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.data.sources import read_annotations
from cnnkit.errors import DataError

sio = pytest.importorskip("sleap_io")

NAMES = ["leftLip", "rightLip", "topmidinner", "bottommidinner"]


@pytest.fixture
def lips_rows(lips_dir):
    table = read_annotations(lips_dir / "via_project.json")
    return table.df.iloc[[0, 5, 9]].reset_index(drop=True)


def _points(row) -> np.ndarray:
    return np.array([[row[f"{n}_x"], row[f"{n}_y"]] for n in NAMES], dtype=float)


def _labels(video, points: list[np.ndarray], *, frames=None, predicted_only=()):
    skeleton = sio.Skeleton(nodes=list(NAMES), symmetries=[("leftLip", "rightLip")])
    lfs = []
    for i, pts in enumerate(points):
        idx = i if frames is None else frames[i]
        if i in predicted_only:
            inst = sio.PredictedInstance.from_numpy(pts, skeleton=skeleton, point_scores=np.ones(len(NAMES)), score=1.0)
        else:
            inst = sio.Instance.from_numpy(pts, skeleton=skeleton)
        lfs.append(sio.LabeledFrame(video=video, frame_idx=idx, instances=[inst]))
    return sio.Labels(labeled_frames=lfs, videos=[video], skeletons=[skeleton])


def _image_backed(tmp_path: Path, rows, **kw) -> tuple[Path, list[np.ndarray]]:
    points = [_points(r) for _, r in rows.iterrows()]
    points[1][2] = np.nan  # frame 1's topmidinner: not labelled
    video = sio.Video.from_filename([str(p) for p in rows["image"]])
    path = tmp_path / "labels.slp"
    sio.save_slp(_labels(video, points, **kw), str(path))
    return path, points


def test_image_backed_slp_round_trip(tmp_path, lips_rows) -> None:
    path, points = _image_backed(tmp_path, lips_rows)
    back = sio.load_slp(str(path))  # what sleap-io reads back is what cnnkit reads
    np.testing.assert_array_equal(back.labeled_frames[1].user_instances[0].numpy(), points[1])
    t = read_annotations(path)
    assert t.landmarks == tuple(NAMES)
    assert t.images == lips_rows["image"].tolist()  # the image files themselves, nothing extracted
    np.testing.assert_allclose(t.points(), np.stack(points), equal_nan=True)
    assert np.isnan(t.points()[1, 2]).all() and not np.isnan(t.points()[0]).any()
    assert t.flip_pairs == (("leftLip", "rightLip"),)  # the skeleton's symmetry
    assert not list(tmp_path.glob("*_frames"))


def test_predictions_are_not_labels(tmp_path, lips_rows) -> None:
    path, _ = _image_backed(tmp_path, lips_rows, predicted_only=(0,))
    assert read_annotations(path).images == lips_rows["image"].tolist()[1:]


def test_embedded_frames_are_written_once_beside_the_file(tmp_path, lips_rows, caplog) -> None:
    (tmp_path / "copies").mkdir()
    pixels = [np.asarray(Image.open(p).convert("L")) for p in lips_rows["image"]]
    copies = lips_rows.assign(image=[str(tmp_path / "copies" / f"{i}.png") for i in range(len(lips_rows))])
    for image, copy in zip(pixels, copies["image"], strict=True):
        Image.fromarray(image).save(copy)
    path, points = _image_backed(tmp_path, copies)
    pkg = tmp_path / "labels.pkg.slp"
    sio.save_slp(sio.load_slp(str(path)), str(pkg), embed="user", verbose=False)
    for copy in copies["image"]:  # the images are gone: only the .pkg.slp holds the pixels
        Path(copy).unlink()
    with caplog.at_level(logging.INFO, logger="cnnkit"):
        t = read_annotations(pkg)
    folder = tmp_path / "labels.pkg_frames"
    assert t.images == [str(folder / f"video0_frame{i:06d}.png") for i in range(3)]
    assert "3 labelled frames written once" in caplog.text
    for image, original in zip(t.images, pixels, strict=True):
        np.testing.assert_array_equal(np.asarray(Image.open(image)), original)  # lossless
    np.testing.assert_allclose(t.points(), np.stack(points), equal_nan=True)
    stamps = [Path(p).stat().st_mtime_ns for p in t.images]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cnnkit"):
        again = read_annotations(pkg)
    assert again.images == t.images and [Path(p).stat().st_mtime_ns for p in t.images] == stamps
    assert "written once" not in caplog.text
    Image.new("L", (5, 5)).save(t.images[1])  # someone else's file under that name: refused, kept
    with pytest.raises(DataError, match="exists with size 5x5"):
        read_annotations(pkg)
    assert Image.open(t.images[1]).size == (5, 5)


def test_video_backed_frames_come_from_the_video(tmp_path, index_video, read_frame_index) -> None:
    clip = index_video(tmp_path / "clip.mp4", 10)
    video = sio.Video.from_filename(str(clip))
    points = [np.array([[10.0, 20.0], [30.0, 20.0], [20.0, np.nan], [20.0, 40.0]]), np.full((4, 2), 5.0)]
    path = tmp_path / "session.slp"
    sio.save_slp(_labels(video, points, frames=[2, 6]), str(path))
    t = read_annotations(path)
    assert [Path(p).name for p in t.images] == ["clip_frame000002.png", "clip_frame000006.png"]
    assert [read_frame_index(np.asarray(Image.open(p).convert("RGB"))) for p in t.images] == [2, 6]
    np.testing.assert_allclose(t.points(), np.stack(points), equal_nan=True)
    clip.rename(tmp_path / "moved.mp4")
    for p in t.images:
        Path(p).unlink()
    with pytest.raises(DataError, match=r"clip\.mp4 of frame 2 cannot be opened; .*\.pkg\.slp"):
        read_annotations(path)


def test_two_subjects_in_one_frame_are_refused(tmp_path, lips_rows) -> None:
    skeleton = sio.Skeleton(nodes=list(NAMES))
    video = sio.Video.from_filename([str(p) for p in lips_rows["image"]])
    pts = _points(lips_rows.iloc[0])
    frame = sio.LabeledFrame(video=video, frame_idx=0, instances=[sio.Instance.from_numpy(pts, skeleton=skeleton),
                                                                   sio.Instance.from_numpy(pts + 1, skeleton=skeleton)])
    path = tmp_path / "two.slp"
    sio.save_slp(sio.Labels(labeled_frames=[frame], videos=[video], skeletons=[skeleton]), str(path))
    with pytest.raises(DataError, match="frame 0 of .* has 2 labelled instances; cnnkit follows one subject per frame"):
        read_annotations(path)
