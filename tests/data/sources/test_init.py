"""read_annotations: dispatch, shared options and bad-input messages."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from cnnkit import ConfigError, DataError
from cnnkit.data.sources import read_annotations


def _lm_frame(names: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"image": names, "a_x": range(len(names)), "a_y": range(len(names))})


def test_malformed_json_reports_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"_via_img_metadata": {\n  "a": {"filename": "a.png",\n  "regions": [}\n}')
    with pytest.raises(DataError, match=r"bad.json: invalid JSON at line 3, column 15: Expecting value"):
        read_annotations(path)


def test_unknown_json_lists_keys(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"hello": 1}))
    with pytest.raises(DataError, match=r"not a VIA file.*Top-level keys: \['hello'\]"):
        read_annotations(path)


def test_missing_source_and_bad_options(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no such file or folder"):
        read_annotations(tmp_path / "nope.csv")
    with pytest.raises(ConfigError, match=r"unknown format 'vai'\. Did you mean 'via'"):
        read_annotations(tmp_path, format="vai")
    with pytest.raises(ConfigError, match=r"unannotated must be 'drop' or 'keep'"):
        read_annotations(tmp_path, unannotated="skip")  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"images='.*nothere' is not a folder"):
        read_annotations(_lm_frame(["a.png"]), images=tmp_path / "nothere")


def test_duplicates_warn_and_all_unannotated_fails(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.warns(UserWarning, match=r"2 rows share an image with another row"):
        t = read_annotations(_lm_frame(["a.png", "a.png"]), images=tmp_path)
    assert len(t) == 2
    empty = pd.DataFrame({"image": ["a.png"], "a_x": [float("nan")], "a_y": [float("nan")]})
    with pytest.raises(DataError, match=r"none of the 1 images has a landmark point"):
        read_annotations(empty, images=tmp_path)


def test_zip_option_gives_member_names(tmp_path: Path) -> None:
    zpath = tmp_path / "imgs.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("set/a.png", b"x")
        zf.writestr("set/b.png", b"x")
    t = read_annotations(_lm_frame(["a.png", "b.png"]), zip=zpath, images="set")
    assert t.images == ["set/a.png", "set/b.png"] and t.zip == zpath


def test_via_default_filepath_is_a_root(tmp_path: Path) -> None:
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.png").write_bytes(b"x")
    data = {"_via_settings": {"core": {"default_filepath": "pics/"}}, "_via_attributes": {"region": {}},
            "_via_img_metadata": {"a.png1": {"filename": "a.png", "size": 1, "file_attributes": {}, "regions": [
                {"shape_attributes": {"name": "point", "cx": 1, "cy": 2}, "region_attributes": {}}]}}}
    (tmp_path / "p.json").write_text(json.dumps(data))
    t = read_annotations(tmp_path / "p.json", landmark_attribute="@order")  # unnamed points: click order, opted in
    assert t.images == [str(tmp_path / "pics" / "a.png")] and t.landmarks == ("p0",)


def test_flip_pairs_explicit_and_checked(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    df = pd.DataFrame({"image": ["a.png"], "l_x": [1], "l_y": [1], "r_x": [2], "r_y": [2]})
    assert read_annotations(df, images=tmp_path, flip_pairs=[("l", "r")]).flip_pairs == (("l", "r"),)
    assert read_annotations(df, images=tmp_path).flip_pairs == ()
    with pytest.raises(DataError, match=r"flip pair \('l', 'x'\) names a landmark not in"):
        read_annotations(df, images=tmp_path, flip_pairs=[("l", "x")])


def test_flip_pairs_are_inferred_from_names_by_default_for_every_format(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    df = pd.DataFrame({"image": ["a.png"], **{f"{n}_{c}": [1.0] for n in ("nose", "leftear", "rightear", "tailbase")
                                               for c in "xy"}})
    assert read_annotations(df, images=tmp_path).flip_pairs == (("leftear", "rightear"),)
    df.to_csv(tmp_path / "labels.csv", index=False)
    assert read_annotations(tmp_path / "labels.csv").flip_pairs == (("leftear", "rightear"),)
    assert read_annotations(tmp_path / "labels.csv", flip_pairs="none").flip_pairs == ()
    with pytest.raises(ConfigError, match="flip_pairs must be 'auto', 'none' or a list"):
        read_annotations(df, images=tmp_path, flip_pairs="off")
