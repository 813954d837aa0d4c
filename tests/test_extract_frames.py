"""extract_frames: frames chosen uniformly or by k-means, saved by decoded index, a VIA project to label."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cnnkit import extract_frames, read_annotations
from cnnkit.data.frames import choose_frames, kmeans_pick
from cnnkit.errors import DataError

SCENES = [("A", 0, 60), ("B", 60, 65), ("C", 65, 100)]  # B: a rare posture, 5 of 100 frames


def _scene(i: int) -> str:
    return next(name for name, lo, hi in SCENES if lo <= i < hi)


def index_image(i: int) -> np.ndarray:
    """Frame ``i`` with its index as 16 px black/white blocks, as tests/conftest.py (read_frame_index)."""
    img = np.zeros((128, 192, 3), np.uint8)
    for bit in range(12):
        if (i >> bit) & 1:
            r, c = divmod(bit, 6)
            img[r * 16:(r + 1) * 16, c * 16:(c + 1) * 16] = 255
    return img


def _scene_video(path: Path) -> Path:
    """100 index-coded frames (top left) whose lower 3/4 shows one of three scenes."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 192, 128, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 30)
        for i in range(100):
            img = index_image(i)
            img[32:] = {"A": 0, "B": 255, "C": 0}[_scene(i)]
            if _scene(i) == "C":
                img[32:, :96] = 255
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode())
    return path


@pytest.fixture
def scene_video(tmp_path: Path) -> Path:
    return _scene_video(tmp_path / "mouse 1.mp4")


def test_kmeans_finds_the_rare_scene_that_uniform_misses(scene_video: Path) -> None:
    uniform = choose_frames(scene_video, 3, method="uniform")
    assert uniform == [0, 50, 99] and "B" not in {_scene(i) for i in uniform}
    picked = choose_frames(scene_video, 3, method="kmeans")
    assert sorted(_scene(i) for i in picked) == ["A", "B", "C"]
    assert choose_frames(scene_video, 3, method="kmeans", seed=0) == picked  # seeded


def test_frames_project_and_table(scene_video: Path, tmp_path: Path, read_frame_index) -> None:
    out = tmp_path / "label me"
    result = extract_frames(scene_video, out, n=4, method="uniform", landmarks=["nose", "tail"])
    assert result.frames["frame"].tolist() == [0, 33, 66, 99]
    assert result.frames["time_s"].tolist() == pytest.approx([0, 33 / 30, 66 / 30, 99 / 30], abs=1e-6)
    for _, row in result.frames.iterrows():  # the file named frame N shows decoded frame N
        assert Path(row["image"]).name == f"mouse 1_frame{row['frame']:06d}.png"
        assert read_frame_index(np.asarray(Image.open(row["image"]))) == row["frame"]
    assert pd.read_csv(out / "frames.csv")["image"].tolist()[0] == "mouse 1_frame000000.png"
    data = json.loads(result.project.read_text())
    assert list(data["_via_attributes"]["region"]["landmark"]["options"]) == ["nose", "tail"]
    assert data["_via_settings"]["core"]["default_filepath"] == out.resolve().as_uri() + "/"
    assert [e["filename"] for e in data["_via_img_metadata"].values()] == [
        Path(p).name for p in result.frames["image"]]
    back = read_annotations(result.project, unannotated="keep")
    assert back.images == result.frames["image"].tolist()


def test_refuses_to_replace_a_labelled_project(scene_video: Path, tmp_path: Path) -> None:
    result = extract_frames(scene_video, tmp_path / "f", n=2, method="uniform", landmarks=["nose"])
    data = json.loads(result.project.read_text())
    next(iter(data["_via_img_metadata"].values()))["regions"] = [
        {"shape_attributes": {"name": "point", "cx": 3, "cy": 4}, "region_attributes": {"landmark": "nose"}}]
    result.project.write_text(json.dumps(data))
    before = result.project.read_bytes()
    with pytest.raises(DataError, match="already exists and holds annotations for 1"):
        extract_frames(scene_video, tmp_path / "f", n=2, landmarks=["nose"])
    assert result.project.read_bytes() == before


def test_several_videos_short_video_and_same_stems(tmp_path: Path, index_video) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    v1 = index_video(tmp_path / "a" / "clip.mp4", 5)
    v2 = index_video(tmp_path / "b" / "clip.mp4", 12)
    result = extract_frames([v1, v2], tmp_path / "out", n=8, landmarks=["p"])
    names = [Path(p).name for p in result.frames["image"]]
    assert names[:5] == [f"clip_frame{i:06d}.png" for i in range(5)]  # shorter than n: every frame
    assert len(names) == 13 and all(n.startswith("clip-2_") for n in names[5:])


def test_kmeans_pick_distinct_rows_nearest_centres() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(c, 0.1, (n, 2)) for c, n in ((0, 50), (5, 3), (10, 30))])
    picked = kmeans_pick(x, 3)
    assert len(set(picked)) == 3
    assert sorted(np.round(x[picked].mean(axis=1) / 5).astype(int).tolist()) == [0, 1, 2]


def test_cli(scene_video: Path, tmp_path: Path) -> None:
    from cnnkit.cli import main

    assert main(["extract-frames", str(scene_video), "--n", "3", "--out", str(tmp_path / "o"),
                 "--landmarks", "nose,tail"]) == 0
    table = read_annotations(tmp_path / "o" / "via_project.json", unannotated="keep")
    assert sorted(_scene(int(Path(p).stem[-6:])) for p in table.images) == ["A", "B", "C"]
    assert main(["extract-frames", str(scene_video), "--out", str(tmp_path / "p")]) == 2  # no names


# -- issue 26: a frames folder is added to, never overwritten ------------------------------------------
def _same_named_lips_videos(tmp_path: Path, lips_video_dir: Path) -> tuple[Path, Path]:
    """Two cameras' files of one name in two folders: d1/cam.avi and d2/cam.avi (different lips videos)."""
    for d, name in (("d1", "002_cal.avi"), ("d2", "008_xaud.avi")):
        (tmp_path / d).mkdir()
        (tmp_path / d / "cam.avi").write_bytes((lips_video_dir / name).read_bytes())
    return tmp_path / "d1" / "cam.avi", tmp_path / "d2" / "cam.avi"


def test_a_second_video_of_the_same_name_never_replaces_frames(tmp_path: Path, lips_video_dir: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    d1, d2 = _same_named_lips_videos(tmp_path, lips_video_dir)
    out = tmp_path / "E"
    first = extract_frames(d1, out, n=2, method="uniform", landmarks=["tip"])
    pictures = {p.name: p.read_bytes() for p in out.glob("*.png")}
    table_before = (out / "frames.csv").read_bytes()
    assert sorted(pictures) == ["cam_frame000000.png", "cam_frame000363.png"]
    with caplog.at_level(logging.WARNING, logger="cnnkit"):
        second = extract_frames(d2, out, n=2, method="uniform", landmarks=["tip"])
    assert {p: (out / p).read_bytes() for p in pictures} == pictures  # the labelled pictures are untouched
    assert [Path(p).name for p in second.frames["image"]] == ["cam-2_frame000000.png", "cam-2_frame000288.png"]
    assert f"{out} already holds frames named cam_frame*.png: the frames of {d2} are named cam-2_frame*.png" \
        in caplog.text
    table = (out / "frames.csv").read_bytes()
    assert table.startswith(table_before)  # its rows as they were, then the new ones
    rows = pd.read_csv(out / "frames.csv")
    assert rows["image"].tolist() == ["cam_frame000000.png", "cam_frame000363.png", "cam-2_frame000000.png",
                                      "cam-2_frame000288.png"]
    assert rows["video"].tolist() == [str(d1)] * 2 + [str(d2)] * 2
    project = read_annotations(out / "via_project.json", unannotated="keep")  # lists every frame of the folder
    assert project.images == [str((out / n).resolve()) for n in rows["image"]]
    assert first.project == second.project


def test_frames_table_that_is_not_ours_or_links_stop_before_any_frame(tmp_path: Path, scene_video: Path) -> None:
    out = tmp_path / "E"
    out.mkdir()
    (out / "frames.csv").write_text("image,x,y\nmine.png,1,2\n")
    with pytest.raises(DataError, match=r"frames\.csv is not a frames table of extract-frames .*nothing was written"):
        extract_frames(scene_video, out, n=2, method="uniform", landmarks=["nose"])
    assert sorted(p.name for p in out.iterdir()) == ["frames.csv"]
    (out / "frames.csv").unlink()
    precious = tmp_path / "precious.csv"
    precious.write_text("keep me\n")
    (out / "frames.csv").symlink_to(precious)
    with pytest.raises(DataError, match=r"frames\.csv \(the frames table\) is a symbolic link to .*nothing was written"):
        extract_frames(scene_video, out, n=2, method="uniform", landmarks=["nose"])
    (out / "frames.csv").unlink()
    (out / "via_project.json").symlink_to(precious)
    with pytest.raises(DataError, match=r"via_project\.json \(the frames' VIA project\) is a symbolic link"):
        extract_frames(scene_video, out, n=2, method="uniform", landmarks=["nose"])
    assert precious.read_text() == "keep me\n" and not list(out.glob("*.png"))


def test_a_planted_link_is_never_written_through(tmp_path: Path, scene_video: Path) -> None:
    out = tmp_path / "E"
    out.mkdir()
    target = tmp_path / "elsewhere.png"
    target.write_bytes(b"not yours")
    (out / "mouse 1_frame000000.png").symlink_to(target)  # the name the first frame would get
    result = extract_frames(scene_video, out, n=2, method="uniform", landmarks=["nose"])
    assert target.read_bytes() == b"not yours" and (out / "mouse 1_frame000000.png").is_symlink()
    assert [Path(p).name for p in result.frames["image"]] == ["mouse 1-2_frame000000.png",
                                                              "mouse 1-2_frame000099.png"]


def test_write_new_file_refuses_any_existing_name(tmp_path: Path) -> None:
    from cnnkit.data.guard import write_new_file

    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "file.png").write_bytes(b"old")
    for name in ("dangling.png", "file.png"):
        with pytest.raises(DataError, match=rf"{name} \(a frame\) already exists; nothing was replaced"):
            write_new_file(tmp_path / name, lambda fh: fh.write(b"new"), what="a frame")
    assert (tmp_path / "file.png").read_bytes() == b"old" and not (tmp_path / "nowhere.png").exists()
    write_new_file(tmp_path / "new.png", lambda fh: fh.write(b"new"))
    assert (tmp_path / "new.png").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling.png", "file.png", "new.png"]  # no temp left


def test_a_read_only_folder_is_refused_in_one_line(tmp_path: Path, scene_video: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from cnnkit.cli import main

    out = tmp_path / "E"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert main(["extract-frames", str(scene_video), "--n", "2", "--out", str(out), "--landmarks", "a"]) == 2
    finally:
        out.chmod(0o755)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{out} (the folder of the frames' VIA project) is read-only" in err
    assert not list(out.iterdir())


def test_fewer_usable_frames_than_n_is_said(tmp_path: Path, index_video, caplog: pytest.LogCaptureFixture) -> None:
    video = index_video(tmp_path / "short.mp4", 8)
    for method in ("uniform", "kmeans"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="cnnkit"):
            result = extract_frames(video, tmp_path / method, n=50, method=method, landmarks=["a"])
        assert len(result.frames) == 8
        assert f"{video}: 8 usable frames, fewer than the 50 asked for (n): all 8 are taken" in caplog.text


@pytest.mark.parametrize("method", ["uniform", "kmeans"])
def test_cli_extract_frames_of_a_cut_video_exits_3(tmp_path: Path, lips_video_dir: Path, method: str,
                                                   capsys: pytest.CaptureFixture[str],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    from cnnkit.cli import main

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import video_damage

    cut = video_damage.cut_in_half(lips_video_dir / "002_cal.avi", tmp_path / "cam.avi")
    args = ["extract-frames", str(cut), "--n", "3", "--method", method, "--landmarks", "a"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 3
    assert [r.getMessage() for r in caplog.records if "partial video" in r.getMessage()] == [
        f"{cut}: partial video: 177 frames decoded, 2.94 s of the 6.06 s it declares (728 frames in its header); "
        f"the file ends inside frame 177. Every decoded frame is kept; the file is truncated or damaged."]
    assert "Exit status 3: pass --accept-partial" in capsys.readouterr().err
    frames = pd.read_csv(tmp_path / "a" / "frames.csv")["frame"].tolist()
    assert len(frames) == 3 and max(frames) <= 176
    assert main([*args, "--out", str(tmp_path / "b"), "--accept-partial"]) == 0
