from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path

import pytest

from cnnkit import DataError
from cnnkit.data.sources.paths import file_name, resolve_members, resolve_paths


def test_file_name_of_foreign_paths() -> None:
    assert file_name("file://C:\\a\\b c.png") == "b c.png"
    assert file_name("/home/x/y.jpg") == "y.jpg"
    assert file_name("./images/z.png") == "z.png"


def test_relative_absolute_and_rerooted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "sub").mkdir()
    for n in ("sub/a.png", "b.png", "c.png"):
        (tmp_path / n).write_bytes(b"x")
    raw = ["sub/a.png", str(tmp_path / "b.png"), "/elsewhere/old/c.png", "C:\\old\\b.png"]
    with caplog.at_level(logging.INFO, logger="cnnkit"):
        out = resolve_paths(raw, [tmp_path], source="s", images_given=True, annotation_dir=None)
    assert out == [str(tmp_path / "sub/a.png"), str(tmp_path / "b.png"), str(tmp_path / "c.png"),
                   str(tmp_path / "b.png")]
    assert caplog.text.count("re-rooted 2 of 4 image paths") == 1


def test_missing_names_rows_and_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(DataError, match=r"ann.csv: 2 of 3 images not found: row 1: 'b.png'; row 2: 'c.png'\..*"
                                        r"Pass images="):
        resolve_paths(["a.png", "b.png", "c.png"], [tmp_path], source="ann.csv", images_given=False,
                      annotation_dir=tmp_path)


def test_second_root_is_tried(tmp_path: Path) -> None:
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "a.png").write_bytes(b"x")
    out = resolve_paths(["a.png"], [tmp_path, tmp_path / "extra"], source="s", images_given=False,
                        annotation_dir=tmp_path)
    assert out == [str(tmp_path / "extra" / "a.png")]


def test_100k_rows_cost_a_listing_per_folder_not_a_stat_per_row(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """What keeps 100k rows fast, counted instead of timed (no test reads the wall clock to decide)."""
    for i in range(200):
        (tmp_path / f"{i}.png").write_bytes(b"")
    raw = [f"/other/computer/{i % 200}.png" for i in range(100_000)]
    calls = {"listdir": 0, "stat": 0}
    real_listdir, real_stat = os.listdir, os.stat

    def listdir(path: object = ".") -> list[str]:
        calls["listdir"] += 1
        return real_listdir(path)  # type: ignore[arg-type]

    def stat(path: object, *args: object, **kwargs: object) -> os.stat_result:
        calls["stat"] += 1
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "listdir", listdir)
    monkeypatch.setattr(os, "stat", stat)
    out = resolve_paths(raw, [tmp_path], source="s", images_given=True, annotation_dir=None)
    monkeypatch.undo()
    assert out[100_000 - 1] == str(tmp_path / "199.png")
    assert calls["listdir"] <= 5 and calls["stat"] <= 20, calls  # a few folders, never one call per row


def test_zip_members_checked_without_extracting(tmp_path: Path) -> None:
    zpath = tmp_path / "imgs.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("data/a.png", b"x")
        zf.writestr("data/b.png", b"x")
    out = resolve_members(["data/a.png", "b.png", "/old/pc/a.png"], zpath, prefix="data", source="s")
    assert out == ["data/a.png", "data/b.png", "data/a.png"]
    with pytest.raises(DataError, match=r"1 of 1 images are not members of .*imgs.zip: row 0: 'c.png'"):
        resolve_members(["c.png"], zpath, prefix=None, source="s")


def test_relative_paths_rerooted_into_images_when_all_are_there(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """A DeepLabCut table moved away from its project, pointed at the folder of frames."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for n in ("img001.png", "img007.png"):
        (frames / n).write_bytes(b"x")
    raw = ["labeled-data/reach1/img001.png", "./labeled-data/reach1/img007.png", "img001.png"]
    with caplog.at_level(logging.INFO, logger="cnnkit"):
        out = resolve_paths(raw, [frames], source="s", images_given=True, annotation_dir=tmp_path)
    assert out == [str(frames / "img001.png"), str(frames / "img007.png"), str(frames / "img001.png")]
    assert caplog.text.count(f"re-rooted 2 of 3 image paths by file name into {frames}") == 1
    with pytest.raises(DataError, match=r"2 of 2 images not found: row 0: .*; row 1: 'labeled-data/reach1/img002.png'"):
        resolve_paths(raw[:1] + ["labeled-data/reach1/img002.png"], [frames], source="s", images_given=True,
                      annotation_dir=tmp_path)  # all or none: one name is not there, so none is re-rooted
    with pytest.raises(DataError, match="2 of 2 images not found"):  # two videos' img001.png: one file
        resolve_paths(["labeled-data/a/img001.png", "labeled-data/b/img001.png"], [frames], source="s",
                      images_given=True, annotation_dir=tmp_path)


def test_relative_paths_keep_their_last_folders_when_those_are_there(tmp_path: Path) -> None:
    for video in ("a", "b"):
        (tmp_path / "ld" / video).mkdir(parents=True)
        (tmp_path / "ld" / video / "img001.png").write_bytes(b"x")
    out = resolve_paths(["labeled-data/a/img001.png", "labeled-data/b/img001.png"], [tmp_path / "ld"],
                        source="s", images_given=True, annotation_dir=tmp_path)
    assert out == [str(tmp_path / "ld/a/img001.png"), str(tmp_path / "ld/b/img001.png")]
