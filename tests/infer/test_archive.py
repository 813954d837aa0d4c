"""predict over a video archive: nested folders mirrored, resumable, failures listed, shares balanced."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cnnkit.cli import main
from cnnkit.errors import ConfigError
from cnnkit.infer import archive as archive_mod
from cnnkit.infer.archive import ArchiveVideo, archive_videos, balanced_shares, predict_archive
from cnnkit.infer.archive_record import ArchiveSummary, VideoResult, file_sha256, model_sha256, record_path
from cnnkit.infer.predict import Predictor, predict
from cnnkit.io.ensemble import EnsembleManifest, members_entry, write_manifest
from cnnkit.io.run_folder import BEST, ENSEMBLE, member_folder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from brightness_model import brightness_model  # noqa: E402

FRAMES = {"cam1/day1.mp4": 7, "cam1/day2.mp4": 5, "cam2/deep/day1.avi": 6}


def _model(path: Path, bias: float = 0.0) -> Path:
    """One landmark: x = mean red level, y = mean green level (every frame of an index video differs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return brightness_model(path, bias)


@pytest.fixture
def lab(tmp_path: Path, index_video) -> dict[str, Path]:
    """archive/cam1/{day1,day2}.mp4, archive/cam2/deep/day1.avi, a note and a hidden video (both left out)."""
    root = tmp_path / "archive"
    for rel, n in FRAMES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        index_video(root / rel, n, codec="mpeg4" if rel.endswith(".avi") else "libx264")
    (root / "notes.txt").write_text("camera 2 moved on day 3")
    (root / ".trash").mkdir()
    index_video(root / ".trash" / "old.mp4", 3)
    return {"root": root, "model": _model(tmp_path / "runs" / "m.safetensors"), "out": tmp_path / "preds"}


def _predict(lab: dict[str, Path], *extra: str) -> int:
    return main(["-q", "predict", str(lab["model"]), str(lab["root"]), "--out", str(lab["out"]), "--device", "cpu",
                 "--batch-size", "4", *extra])


def _summary(lab: dict[str, Path]) -> pd.DataFrame:
    return pd.read_csv(lab["out"] / "archive_summary.csv", keep_default_na=False).set_index("video")


@pytest.fixture
def scored(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Frames through the model, batch by batch (a run that skips everything scores none)."""
    counts: list[int] = []
    original = Predictor.score_batch

    def score(self: Predictor, batch: dict) -> object:
        counts.append(len(batch["index"]))
        return original(self, batch)

    monkeypatch.setattr(Predictor, "score_batch", score)
    return counts


def test_nested_folders_mirror_one_output_set_per_video(lab, capsys) -> None:
    assert _predict(lab, "--format", "csv,dlc") == 0
    out = lab["out"]
    for rel, n in FRAMES.items():
        csv = pd.read_csv(out / Path(rel).with_suffix(".csv"))
        assert csv["frame"].tolist() == list(range(n))
        direct = predict(lab["model"], lab["root"] / rel, device="cpu")
        np.testing.assert_allclose(csv[["p_x", "p_y"]], direct[["p_x", "p_y"]], rtol=1e-5)
        stem = Path(rel).stem
        assert (out / Path(rel).parent / f"{stem}DLC_cnnkit_runs-m.csv").is_file()
        record = json.loads((out / Path(rel).parent / f"{stem}.cnnkit.json").read_text())
        assert record["model_sha256"] == file_sha256(lab["model"]) and record["video"]["frames"] == n
        assert f"{stem}.csv" in record["files"] and record["formats"] == ["csv", "dlc"]
    assert not (out / ".trash").exists() and not (out / "notes.csv").exists()  # hidden and non-videos left out
    summary = _summary(lab)
    assert summary["status"].to_dict() == dict.fromkeys(FRAMES, "predicted")
    assert summary["frames"].to_dict() == FRAMES
    printed = capsys.readouterr().out
    assert "archive: 3 videos" in printed and "predicted        3          18" in printed


def test_a_rerun_skips_complete_videos_and_redoes_the_rest(lab, scored) -> None:
    assert _predict(lab) == 0
    assert sum(scored) == sum(FRAMES.values())
    before = {p: p.stat().st_mtime_ns for p in lab["out"].rglob("*.csv") if p.name != "archive_summary.csv"}
    scored.clear()
    assert _predict(lab) == 0
    assert scored == []  # nothing predicted again
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert set(_summary(lab)["status"]) == {"skipped"}
    assert _summary(lab)["frames"].to_dict() == FRAMES  # the recorded counts
    # an output cut short, a video replaced, or another model: those are predicted again
    day1 = lab["out"] / "cam1" / "day1.csv"
    day1.write_text(day1.read_text()[:-40])
    video = lab["root"] / "cam1" / "day2.mp4"
    os.utime(video, ns=(video.stat().st_atime_ns, video.stat().st_mtime_ns + 10**9))
    assert _predict(lab) == 0
    assert _summary(lab)["status"].to_dict() == {"cam1/day1.mp4": "predicted", "cam1/day2.mp4": "predicted",
                                                 "cam2/deep/day1.avi": "skipped"}
    assert len(pd.read_csv(day1)) == 7
    lab["model"] = _model(lab["model"].with_name("other.safetensors"), bias=1.0)
    scored.clear()
    assert _predict(lab) == 0 and sum(scored) == sum(FRAMES.values())


def test_the_same_weights_under_another_name_are_the_same_model(lab, scored) -> None:
    assert _predict(lab) == 0
    copy = lab["model"].with_name("copy.safetensors")
    copy.write_bytes(lab["model"].read_bytes())
    lab["model"], scored[:] = copy, []
    assert _predict(lab) == 0 and scored == []


def test_a_truncated_video_among_good_ones_is_listed_and_the_others_go_on(lab, capsys) -> None:
    good = lab["root"] / "cam1" / "day2.mp4"
    data = good.read_bytes()
    (lab["root"] / "cam2" / "cut.mp4").write_bytes(data[: len(data) // 2])  # a copy cut short: no index
    (lab["root"] / "cam2" / "empty.mp4").write_bytes(b"")
    assert _predict(lab) == 1  # some video failed
    summary = _summary(lab)
    assert summary.loc["cam2/cut.mp4", "status"] == "failed" and "cut.mp4" in summary.loc["cam2/cut.mp4", "reason"]
    assert summary.loc["cam2/empty.mp4", "status"] == "failed"
    assert all(summary.loc[v, "status"] == "predicted" for v in FRAMES)
    assert not (lab["out"] / "cam2" / "cut.csv").exists() and not (lab["out"] / "cam2" / "cut.cnnkit.json").exists()
    printed = capsys.readouterr().out
    assert "failed           2" in printed and "cam2/cut.mp4: failed: " in printed
    assert _predict(lab) == 1  # tried again on the re-run (it may have been still copying), the rest skipped
    assert _summary(lab).loc[list(FRAMES), "status"].eq("skipped").all()


def test_a_decode_failure_midway_fails_that_video_only(lab, monkeypatch) -> None:
    """A video that breaks while decoding (the decoder raises) is listed; its half-predicted frames are dropped."""
    from cnnkit.errors import DataError

    real = archive_mod.iter_frames

    def frames(path: Path):
        for frame in real(path):
            if path.name == "day2.mp4" and frame.index == 4:  # after one batch of 4
                raise DataError(f"{path}: cannot decode frame 4 (Invalid data); the file may be truncated")
            yield frame

    monkeypatch.setattr(archive_mod, "iter_frames", frames)
    assert _predict(lab) == 1
    row = _summary(lab).loc["cam1/day2.mp4"]
    assert row["status"] == "failed" and row["frames"] == 4 and "cannot decode frame 4" in row["reason"]
    assert not (lab["out"] / "cam1" / "day2.csv").exists()
    assert _summary(lab).loc[["cam1/day1.mp4", "cam2/deep/day1.avi"], "status"].eq("predicted").all()


class _Ended:
    """What data/video.py's frames report for a video that ended before its declared length."""

    def __str__(self) -> str:
        return "partial video: 4 frames decoded (5 in its header); the file stops inside frame 4"


def test_a_partial_video_keeps_its_frames_and_exits_3(lab, monkeypatch) -> None:
    real = archive_mod.iter_frames

    class Frames:
        def __init__(self, path: Path) -> None:
            self.path, self.end, self._it = path, None, iter(real(path))

        def __iter__(self):
            return self

        def __next__(self):
            frame = next(self._it)
            if self.path.name == "day2.mp4" and frame.index == 4:
                self.end = _Ended()
                raise StopIteration
            return frame

        def close(self) -> None:
            pass

    monkeypatch.setattr(archive_mod, "iter_frames", Frames)
    assert _predict(lab) == 3
    row = _summary(lab).loc["cam1/day2.mp4"]
    assert row["status"] == "partial" and row["frames"] == 4 and "stops inside frame 4" in row["reason"]
    assert len(pd.read_csv(lab["out"] / "cam1" / "day2.csv")) == 4
    assert _predict(lab) == 3  # skipped on the re-run, still reported: the same status as the first run
    assert _summary(lab).loc["cam1/day2.mp4", "status"] == "skipped"


def test_a_killed_run_rerun_with_the_same_command_continues(lab, monkeypatch, scored) -> None:
    """Killed between a video's outputs and its record: that video never looks complete and is redone."""
    real, written = archive_mod.write_record, []

    def record(path: Path, **kw: object) -> Path:
        if written:
            raise KeyboardInterrupt  # as Ctrl-C (or a kill) after the second video's CSV
        written.append(path)
        return real(path, **kw)

    monkeypatch.setattr(archive_mod, "write_record", record)
    assert _predict(lab) == 130
    assert (lab["out"] / "cam1" / "day2.csv").is_file() and not (lab["out"] / "cam1" / "day2.cnnkit.json").exists()
    assert not (lab["out"] / "archive_summary.csv").exists()
    monkeypatch.setattr(archive_mod, "write_record", real)
    scored.clear()
    assert _predict(lab) == 0
    assert _summary(lab)["status"].to_dict() == {"cam1/day1.mp4": "skipped", "cam1/day2.mp4": "predicted",
                                                 "cam2/deep/day1.avi": "predicted"}
    assert sum(scored) == FRAMES["cam1/day2.mp4"] + FRAMES["cam2/deep/day1.avi"]
    assert not [p for p in lab["out"].rglob(".*")]  # no temporary file left behind


def test_never_over_a_users_file(lab) -> None:
    labels = lab["out"] / "cam1" / "day1.csv"
    labels.parent.mkdir(parents=True)
    labels.write_text("image,p_x,p_y\nimg001.png,3,4\n")
    foreign = lab["out"] / "cam1" / "day2.cnnkit.json"
    foreign.write_text('{"my": "notes"}')
    assert _predict(lab) == 1
    summary = _summary(lab)
    assert "holds annotations" in summary.loc["cam1/day1.mp4", "reason"]
    assert "not a completion record" in summary.loc["cam1/day2.mp4", "reason"]
    assert summary.loc["cam2/deep/day1.avi", "status"] == "predicted"
    assert labels.read_text() == "image,p_x,p_y\nimg001.png,3,4\n" and foreign.read_text() == '{"my": "notes"}'


def test_formats_asked_later_are_written_then(lab, scored) -> None:
    assert _predict(lab, "--format", "csv,dlc") == 0
    scored.clear()
    assert _predict(lab) == 0 and scored == []  # csv alone: part of what is there
    (lab["out"] / "cam1" / "day1DLC_cnnkit_runs-m.csv").unlink()
    assert _predict(lab, "--format", "csv,dlc") == 0
    assert sum(scored) == FRAMES["cam1/day1.mp4"]
    assert (lab["out"] / "cam1" / "day1DLC_cnnkit_runs-m.csv").is_file()


# -- how an archive is recognised ------------------------------------------------------------------------


def test_what_counts_as_an_archive(lab, tmp_path, index_video) -> None:
    root = lab["root"]
    found = archive_videos([root], "preds")
    assert [v.rel.as_posix() for v in found] == sorted(FRAMES)
    glob = archive_videos([f"{root}/**/*.mp4"], "preds")
    assert [v.rel.as_posix() for v in glob] == ["cam1/day1.mp4", "cam1/day2.mp4"]
    files = archive_videos([root / "cam1" / "day1.mp4", root / "cam2" / "deep" / "day1.avi"], "preds/")
    assert [v.rel.as_posix() for v in files] == ["cam1/day1.mp4", "cam2/deep/day1.avi"]  # under their common folder
    assert archive_videos([root / "cam1" / "day1.mp4"], "day1.csv") is None  # one video to one CSV: as before
    images = tmp_path / "photos"
    images.mkdir()
    (images / "a.png").write_bytes(b"png")
    assert archive_videos([images], "preds.csv") is None  # a folder of images: as before
    (root / "cam1" / "still.png").write_bytes(b"png")
    with pytest.raises(ConfigError, match=r"1 images .* and 3 videos .*quoted glob"):
        archive_videos([root], "preds")


def test_archive_input_errors(lab, index_video) -> None:
    root = lab["root"]
    with pytest.raises(ConfigError, match="--out must be a folder"):
        archive_videos([root], "preds.csv")
    with pytest.raises(ConfigError, match="matches no file"):
        archive_videos([f"{root}/**/*.mkv"], "preds")
    index_video(root / "cam1" / "day1.mov", 2)
    with pytest.raises(ConfigError, match=r"day1.mov and .*day1.mp4 would write the same outputs"):
        archive_videos([root], "preds")
    assert main(["-q", "predict", str(lab["model"]), str(root / "cam2"), "--out", "p/", "--via", "v.json"]) == 2


# -- shares and the summary ---------------------------------------------------------------------------------


def test_balanced_shares_are_disjoint_complete_and_balanced() -> None:
    rng = np.random.default_rng(0)
    for ranks in (1, 2, 3, 4):
        weights = rng.integers(1, 10_000, size=37).tolist()
        shares = balanced_shares(weights, ranks)
        assert sorted(i for s in shares for i in s) == list(range(37))
        loads = [sum(weights[i] for i in s) for s in shares]
        assert max(loads) - min(loads) <= max(weights)  # longest first onto the least-loaded
    assert balanced_shares([3, 3], 4) == [[0], [1], [], []]


def test_shares_by_frame_count_and_containers_without_a_count(lab, monkeypatch) -> None:
    videos = archive_videos([lab["root"]], "preds")
    counts = {"day1.mp4": 700, "day2.mp4": 500, "day1.avi": 0}  # a container that states no count
    monkeypatch.setattr(archive_mod, "_stated_frames", lambda path: counts[path.name])
    predictor = Predictor.from_checkpoint(lab["model"], device="cpu")
    job = archive_mod._job(lab["model"], videos, lab["out"], "csv", 4, predictor, tta_flip=False)
    plan = archive_mod._plan(videos, job, 2)
    assert [[v.path.name for v in s] for s in plan.shares] == [["day1.mp4"], ["day2.mp4", "day1.avi"]]
    assert plan.weights[videos[2].path] == 600  # the median of the known counts


def test_summary_lines_and_exit_status() -> None:
    rows = (VideoResult("a.mp4", "predicted", 300, 10.0, 0), VideoResult("b.mp4", "predicted", 200, 10.0, 1),
            VideoResult("c.mp4", "skipped", 50), VideoResult("d.mp4", "failed", 0, 0.5, 1, "not a readable video"))
    summary = ArchiveSummary(rows, Path("preds"), wall_s=12.5, processes=2)
    text = "\n".join(summary.lines())
    assert "500 frames predicted in 12.5 s: 40.0 frames/s (per process: 30.0, 19.0)" in text
    assert "  d.mp4: failed: not a readable video" in text
    assert summary.exit_status() == 1
    partial = ArchiveSummary(rows[:2] + (VideoResult("e.mp4", "skipped", 9, reason="partial video"),), Path("p"), 1.0)
    assert partial.exit_status() == 3 and partial.exit_status(accept_partial=True) == 0
    assert ArchiveSummary(rows[:3], Path("p"), 1.0).exit_status() == 0


def test_seconds_come_from_the_injected_clock(lab) -> None:
    ticks = iter(np.arange(0.0, 100.0, 2.0))
    videos = archive_videos([lab["root"]], "preds")
    summary = predict_archive(lab["model"], videos, lab["out"], device="cpu", progress=False,
                              clock=lambda: float(next(ticks)))
    assert [r.seconds for r in summary.rows] == [2.0, 2.0, 2.0]
    assert summary.wall_s == 10.0  # from before the plan to after the last video
    assert isinstance(summary.rows[0], VideoResult) and all(isinstance(v, ArchiveVideo) for v in videos)


def test_python_predict_on_a_folder_of_videos_points_to_the_archive(lab) -> None:
    from cnnkit.errors import DataError

    with pytest.raises(DataError, match=r"holds 3 videos: predict them as an archive"):
        predict(lab["model"], lab["root"], device="cpu")


def test_a_video_without_frames_fails(lab) -> None:
    import av

    with av.open(str(lab["root"] / "cam2" / "none.avi"), "w") as out:  # a video stream, not a single frame
        stream = out.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        out.start_encoding()
    assert _predict(lab) == 1
    row = _summary(lab).loc["cam2/none.avi"]
    assert row["status"] == "failed" and "none.avi" in row["reason"] and row["frames"] == 0
    assert not (lab["out"] / "cam2" / "none.csv").exists()


def test_a_video_that_changes_while_predicted_is_predicted_again(lab, monkeypatch, scored) -> None:
    """The record keeps the video's fingerprint from before decoding: a copy still growing never looks done."""
    real = archive_mod.frames_table
    video = lab["root"] / "cam1" / "day1.mp4"

    def table(predictor, index, times, parts):
        if len(index) == FRAMES["cam1/day1.mp4"]:
            with video.open("ab") as fh:  # more bytes arrive while the model works
                fh.write(b"\0" * 16)
        return real(predictor, index, times, parts)

    monkeypatch.setattr(archive_mod, "frames_table", table)
    assert _predict(lab) == 0
    monkeypatch.setattr(archive_mod, "frames_table", real)
    scored.clear()
    assert _predict(lab) == 0
    assert _summary(lab)["status"].to_dict() == {"cam1/day1.mp4": "predicted", "cam1/day2.mp4": "skipped",
                                                 "cam2/deep/day1.avi": "skipped"}
    assert sum(scored) == FRAMES["cam1/day1.mp4"]


def _ensemble(folder: Path, biases: tuple[float, ...]) -> Path:
    """An ensemble folder (manifest + member-k/best.safetensors) of ``_model``s with the given biases."""
    members = []
    for k, bias in enumerate(biases, start=1):
        _model(folder / member_folder(k) / BEST, bias=bias)
        members.append(members_entry(member_folder(k), f"{member_folder(k)}/{BEST}", seed=k - 1, done=True))
    write_manifest(EnsembleManifest(folder / ENSEMBLE, tuple(members)))
    return folder


def test_an_ensemble_predicts_an_archive_and_a_video_as_one_model(lab, scored, tmp_path) -> None:
    """The members' median (of two: their mean) and spread per frame; the record hashes the manifest and
    every member, so a re-run skips and a retrained member predicts again."""
    members = [_model(tmp_path / f"m{k}.safetensors", bias=b) for k, b in ((1, 0.0), (2, 0.25))]
    lab["model"] = _ensemble(tmp_path / "ens", (0.0, 0.25))
    assert _predict(lab) == 0
    assert sum(scored) == sum(FRAMES.values())
    rel = "cam1/day1.mp4"
    csv = pd.read_csv(lab["out"] / Path(rel).with_suffix(".csv"))
    one, two = (predict(m, lab["root"] / rel, device="cpu") for m in members)
    np.testing.assert_allclose(csv[["p_x", "p_y"]], (one[["p_x", "p_y"]] + two[["p_x", "p_y"]]) / 2, rtol=1e-5)
    dx, dy = (one["p_x"] - two["p_x"]) / 2, (one["p_y"] - two["p_y"]) / 2
    np.testing.assert_allclose(csv["p_spread"], np.sqrt((dx ** 2 + dy ** 2) / 2), rtol=1e-5)
    assert (csv["p_spread"] > 1).all()  # a bias of 0.25 of the input apart: several pixels
    record = json.loads((lab["out"] / "cam1" / "day1.cnnkit.json").read_text())
    assert record["model_sha256"] == model_sha256(lab["model"]) != file_sha256(lab["model"] / ENSEMBLE)
    scored.clear()
    assert _predict(lab) == 0 and scored == []  # the same ensemble: every video skipped
    _model(lab["model"] / member_folder(2) / BEST, bias=0.5)  # member 2 retrained
    assert _predict(lab) == 0 and sum(scored) == sum(FRAMES.values())
    # one video, as `cnnkit predict ENSEMBLE_DIR video`
    single = tmp_path / "single.csv"
    assert main(["-q", "predict", str(lab["model"]), str(lab["root"] / rel), "--out", str(single),
                 "--device", "cpu"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(single)[["p_x", "p_y", "p_spread"]],
                                  pd.read_csv(lab["out"] / Path(rel).with_suffix(".csv"))[["p_x", "p_y", "p_spread"]])


def test_smoothing_asked_later_redoes_only_what_was_not_smoothed_so(lab, scored) -> None:
    assert _predict(lab) == 0
    scored.clear()
    assert _predict(lab, "--smooth") == 0  # not smoothed before: every video again, with its smoothed table
    assert sum(scored) == sum(FRAMES.values())
    for rel in FRAMES:
        csv = lab["out"] / Path(rel).with_suffix(".csv")
        raw, smoothed = pd.read_csv(csv), pd.read_csv(csv.with_name(csv.stem + "_smoothed.csv"))
        assert smoothed["frame"].tolist() == raw["frame"].tolist()
        assert json.loads(record_path(csv).read_text())["smooth"] == "auto"
        assert csv.with_name(csv.stem + "_smoothed.csv").name in json.loads(record_path(csv).read_text())["files"]
    scored.clear()
    assert _predict(lab, "--smooth") == 0 and scored == []  # the same: nothing to do
    assert _predict(lab) == 0 and scored == []  # no smoothing asked: what is there serves
    assert _predict(lab, "--smooth", "savgol") == 0 and sum(scored) == sum(FRAMES.values())
