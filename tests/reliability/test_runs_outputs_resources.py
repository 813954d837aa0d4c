"""The careless user: runs, outputs and resources (issue 26, "Labels are sacred").

Each test is a thing a user did on a fresh clone, and asserts what they now see: one line and exit 2
(or the library's error), with nothing of theirs replaced. docs/RELIABILITY.md, "The careless user",
lists the cases with their messages.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import safetensors
import safetensors.torch
import torch
import yaml

import cnnkit
from cnnkit import atomic
from cnnkit.cli import main
from cnnkit.data.check import check_data
from cnnkit.data.dataset import TableDataset
from cnnkit.data.sources import read_annotations
from cnnkit.errors import CheckpointError, ConfigError, DataError
from cnnkit.io.checkpoint import load_model, load_state, save_model
from cnnkit.model.builder import build_model
from cnnkit.train import fit as fit_module
from cnnkit.train.lock import LOCK_NAME

TINY_SPEC = [["conv", {"filter_size": 3, "layer_depth": 4}], ["relu"]]
FIT = {"size": (16, 16), "batch_size": 8, "device": "cpu", "quiet": True, "plots": False, "seed": 0, "epochs": 2}
NOTES = "# my notes on this experiment: keep them\n"


def _experiment(folder: Path, *, name: str = "exp.yaml", output: str = "run", **train: object) -> Path:
    """An experiment file with a comment (a user's own file) beside ``data/ann.csv``."""
    settings = {"model": {"spec": TINY_SPEC, "head": "gap"},
                "data": {"source": "data/ann.csv", "size": "16x16", "split": [0.75, 0.25]},
                "train": {"epochs": 2, "batch_size": 8, "device": "cpu", "plots": False, **train}, "output": output}
    path = folder / name
    path.write_text(NOTES + yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    return path


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``cnnkit -q ARGS`` in-process: (exit code, stderr)."""
    code = main(["-q", *args])
    return code, capsys.readouterr().err


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("cnnkit ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- one run per folder ---------------------------------------------------------------------------
def _wait_for_lock(folder: Path, proc: subprocess.Popen[bytes], timeout_s: float = 300) -> dict[str, object]:
    """The lock file's holder once the process has written it (the timeout only stops a hung test)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and proc.poll() is None:
        try:
            return json.loads((folder / LOCK_NAME).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            time.sleep(0.05)
    raise AssertionError(f"no lock appeared in {folder} (process ended with {proc.poll()})")


def test_a_second_concurrent_run_is_refused_naming_the_first_and_a_killed_ones_lock_is_cleared(
        landmark_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    exp = _experiment(tmp_path, epochs=100_000)  # the first run: a real `cnnkit train` that goes on and on
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    first = subprocess.Popen([sys.executable, "-m", "cnnkit", "-q", "train", str(exp)], cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        holder = _wait_for_lock(tmp_path / "run", first)
        assert holder["pid"] == first.pid
        code, err = _cli(capsys, "train", str(exp))  # the second run, in this process
        line = _one_line(err)
        assert code == 2 and f"run is in use by another run: pid {first.pid} on host" in line
        assert f"command `cnnkit -q train {exp}`" in line and "Wait for it to end" in line
        code, err = _cli(capsys, "train", str(exp), "--overwrite")  # --overwrite does not break a live run's lock
        assert code == 2 and "in use by another run" in err
    finally:
        first.send_signal(signal.SIGKILL)  # no clean-up: the lock file stays behind
        first.wait(timeout=60)
    assert (tmp_path / "run" / LOCK_NAME).is_file()
    with caplog.at_level(logging.WARNING, logger="cnnkit"):
        code, err = _cli(capsys, "train", str(exp), "--overwrite", "--set", "train.epochs=1")
    assert code == 0, err
    assert f"cleared the lock of a run that is no longer running (pid {first.pid} on host" in caplog.text
    assert not (tmp_path / "run" / LOCK_NAME).exists()
    assert list(pd.read_csv(tmp_path / "run" / "metrics.csv")["epoch"]) == [1]


def test_a_finished_or_stopped_run_is_not_replaced_without_resume_or_overwrite(
        landmark_set: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = read_annotations(landmark_set)
    train, val = table.split((0.75, 0.25), seed=0)
    out = tmp_path / "run"
    cnnkit.fit(TINY_SPEC, train, val, out_dir=out, **FIT)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ConfigError, match=r"run already holds this run, finished after epoch 2\. Nothing was "
                                          r"replaced: --resume \(resume=True\) continues it"):
        cnnkit.fit(TINY_SPEC, train, val, out_dir=out, **FIT)
    with pytest.raises(ConfigError, match=r"run holds a different run \(train\.lr: 0\.001 in the folder, 0\.01 now; "
                                          r"train\.seed: 0 in the folder, 1 now\)\. Nothing was replaced.*overwrite"):
        cnnkit.fit(TINY_SPEC, train, val, out_dir=out, **{**FIT, "lr": 0.01, "seed": 1})
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # not a byte changed
    with pytest.raises(ConfigError, match="resume and overwrite: choose one"):
        cnnkit.fit(TINY_SPEC, train, val, out_dir=out, resume=True, overwrite=True, **FIT)
    assert list(cnnkit.fit(TINY_SPEC, train, val, out_dir=out, resume=True, **{**FIT, "epochs": 3}).history["epoch"]) \
        == [1, 2, 3]
    (out / "report.html").write_text("the earlier run's page")
    run = cnnkit.fit(TINY_SPEC, train, val, out_dir=out, overwrite=True, **{**FIT, "lr": 0.01})
    assert list(run.history["epoch"]) == [1, 2] and not (out / "report.html").exists()  # its results went with it
    assert json.loads((out / "settings.json").read_text())["train"]["lr"] == 0.01

    real_epoch, calls = cnnkit.train.epochs.train_one_epoch, []

    def stopped_in_epoch_two(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(cnnkit.train.epochs, "train_one_epoch", stopped_in_epoch_two)
    assert cnnkit.fit(TINY_SPEC, train, val, out_dir=tmp_path / "stopped", **FIT).interrupted
    monkeypatch.undo()
    with pytest.raises(ConfigError, match=r"stopped already holds this run, stopped after epoch 1"):
        cnnkit.fit(TINY_SPEC, train, val, out_dir=tmp_path / "stopped", **FIT)


def test_a_run_never_writes_over_its_own_inputs(landmark_set: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    # `output: .` beside an experiment file named experiment.yaml: the run folder's copy would replace it
    exp = _experiment(tmp_path, name="experiment.yaml", output=".")
    text = exp.read_bytes()
    for extra in ([], ["--overwrite"]):
        code, err = _cli(capsys, "train", str(exp), *extra)
        assert code == 2 and "the run would write its experiment.yaml over" in _one_line(err)
    assert exp.read_bytes() == text and text.startswith(NOTES.encode())  # comments and all
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "experiment.yaml"]  # nothing written
    # an annotation file with a run file's name in the output folder
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "metrics.csv").write_bytes((tmp_path / "data" / "ann.csv").read_bytes().replace(b"img", b"../data/img"))
    table = read_annotations(labels / "metrics.csv")
    with pytest.raises(ConfigError, match=r"would write its metrics\.csv over .*labels/metrics\.csv, which this run "
                                          r"reads\. Nothing was written"):
        cnnkit.fit(TINY_SPEC, table, None, out_dir=labels, overwrite=True, **FIT)
    # ... and so is a folder that is no run's but holds a file with a run file's name: the user's other
    # experiment file named experiment.yaml, their own report.html
    plain = _experiment(tmp_path, output=".")
    code, err = _cli(capsys, "train", str(plain))
    assert code == 2 and "holds experiment.yaml, which no cnnkit run made there" in _one_line(err)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "report.html").write_text("my own page")
    code, err = _cli(capsys, "train", str(plain), "--set", "output=mine")
    assert code == 2 and "mine holds report.html, which no cnnkit run made there" in _one_line(err)
    assert (tmp_path / "mine" / "report.html").read_text() == "my own page"
    # `output: .` beside exp.yaml alone is a run folder beside the user's files: allowed, nothing of theirs replaced
    exp.unlink()
    code, err = _cli(capsys, "train", str(plain))
    assert code == 0, err
    assert plain.read_bytes().startswith(NOTES.encode()) and (tmp_path / "settings.json").is_file()


# -- outputs that cannot be written ---------------------------------------------------------------
def test_an_output_that_is_a_file_or_cannot_be_written_is_one_line_before_training(
        landmark_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    exp = _experiment(tmp_path)
    (tmp_path / "taken").write_text("a file of the user's")
    code, err = _cli(capsys, "train", str(exp), "--set", "output=taken")
    assert code == 2 and f"output {tmp_path / 'taken'} is a file, not a folder" in _one_line(err)
    assert (tmp_path / "taken").read_text() == "a file of the user's"
    code, err = _cli(capsys, "train", str(exp), "--set", "output=taken/run")
    assert code == 2 and "a part of that path is a file, not a folder" in _one_line(err)

    trained = []
    monkeypatch.setattr(fit_module.EpochRunner, "run", lambda self, state: trained.append(1))
    real_mkstemp = atomic.tempfile.mkstemp

    def read_only(*args: object, **kwargs: object) -> object:  # what a read-only file system answers
        if "probe" in str(kwargs.get("prefix", "")):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(kwargs.get("dir")))
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(atomic.tempfile, "mkstemp", read_only)
    code, err = _cli(capsys, "train", str(exp))
    assert code == 2 and "cannot write there (Read-only file system). Nothing was trained" in _one_line(err)
    assert trained == []  # the probe write comes before the first epoch
    monkeypatch.undo()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="permissions do not bind root: as root this case is covered by the simulated read-only "
                           "file system in the test above")
def test_a_read_only_output_folder_is_one_line(landmark_set: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    exp = _experiment(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run").chmod(0o555)
    try:
        code, err = _cli(capsys, "train", str(exp))
    finally:
        (tmp_path / "run").chmod(0o755)
    assert code == 2 and "cannot write there (Permission denied)" in _one_line(err)


def test_a_full_disk_during_a_background_commit_is_one_line_and_the_run_resumes(
        landmark_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    exp = _experiment(tmp_path, epochs=3)
    real_save, saves = torch.save, []

    def full_disk_at_the_second_state(obj: object, f: object, *args: object, **kwargs: object) -> None:
        saves.append(1)
        if len(saves) == 2:  # as torch.save fails on a full disk: the OSError, and a RuntimeError raised over it
            try:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk_at_the_second_state)
    code, err = _cli(capsys, "train", str(exp))
    monkeypatch.undo()
    line = _one_line(err)
    assert code == 2 and f"{tmp_path / 'run' / 'last.state.pt'}: No space left on device [ENOSPC]" in line
    assert "run the same command with --resume" in line
    assert int(load_state(tmp_path / "run" / "last.state.pt")["epoch"]) == 1  # the previous commit, intact
    assert not [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]  # no temp, no lock
    code, err = _cli(capsys, "train", str(exp), "--resume")
    assert code == 0, err
    assert list(pd.read_csv(tmp_path / "run" / "metrics.csv")["epoch"]) == [1, 2, 3]


def test_checkpoints_follow_the_umask_like_every_other_file(landmark_set: Path, tmp_path: Path) -> None:
    train, val = read_annotations(landmark_set).split((0.75, 0.25), seed=0)
    for umask, mode in ((0o022, 0o644), (0o027, 0o640)):
        old = os.umask(umask)
        try:
            out = tmp_path / f"umask{umask:o}"
            cnnkit.fit(TINY_SPEC, train, val, out_dir=out, **FIT)
        finally:
            os.umask(old)
        modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
        assert {"best.safetensors", "last.safetensors", "last.state.pt", "settings.json"} <= modes.keys()
        assert modes == dict.fromkeys(modes, mode), modes  # a colleague on the lab's server can read the model


# -- resources ------------------------------------------------------------------------------------
def test_an_input_size_that_cannot_fit_is_refused_before_anything_is_allocated(
        landmark_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    exp = _experiment(tmp_path)

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the real model was built")

    monkeypatch.setattr(fit_module, "build_for_table", never)
    monkeypatch.setattr("cnnkit.train.start.available_bytes", lambda device: 64 * 10**9)  # any machine's answer
    code, err = _cli(capsys, "train", str(exp), "--set", "data.size=100000x100000")
    line = _one_line(err)
    assert code == 2 and "training at 100000x100000 with batch 8 needs about" in line
    assert "GB is available. Give a smaller data.size or train.batch_size" in line and "64.0 GB" in line
    assert not (tmp_path / "run").exists()


def test_predict_refuses_a_model_whose_input_size_cannot_fit(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    model = build_model(TINY_SPEC, size=(16, 16), outputs=4, head="gap")  # gap: weights independent of the size
    path = save_model(tmp_path / "m.safetensors", model, {"task": "landmarks", "landmarks": ["a", "b"]})
    with safetensors.safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["cnnkit"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    meta["model"]["size"] = meta["size"] = [60000, 60000]
    safetensors.torch.save_file(tensors, str(path), metadata={"cnnkit": json.dumps(meta)})
    monkeypatch.setattr("cnnkit.model.memory.available_bytes", lambda device: 16 * 10**9)
    with pytest.raises(CheckpointError, match=r"m\.safetensors: one prediction at its input size 60000x60000 needs "
                                              r"about [\d,.]+ GB .* and 16\.0 GB is available"):
        load_model(path)
    (tmp_path / "a.png").write_bytes(b"not read")
    code, err = _cli(capsys, "predict", str(path), str(tmp_path / "a.png"), "--out", str(tmp_path / "p.csv"))
    assert code == 2 and "60000x60000 needs about" in _one_line(err)


def test_a_zip_member_too_large_to_be_an_image_is_refused_by_name_before_it_is_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, image_bytes: Callable[..., bytes]) -> None:
    archive = tmp_path / "imgs.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ok.png", image_bytes(np.zeros((20, 24, 3), np.uint8)))
        zf.writestr("bomb.png", b"\0" * 200_000)  # deflates to a few hundred bytes
        zf.writestr("text.png", b"name,x,y\nnot an image\n")
    pd.DataFrame({"image": ["ok.png", "bomb.png", "text.png"], "a_x": [1.0] * 3, "a_y": [1.0] * 3}).to_csv(
        tmp_path / "ann.csv", index=False)
    table = read_annotations(tmp_path / "ann.csv", zip=archive)
    monkeypatch.setattr("PIL.Image.MAX_IMAGE_PIXELS", 10_000)  # 80,000 bytes at 8 a pixel: the member is larger
    real_read = zipfile.ZipFile.read

    def read(self: zipfile.ZipFile, name: object, *args: object) -> bytes:
        assert "bomb" not in str(getattr(name, "filename", name)), "the member was read"
        return real_read(self, name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(zipfile.ZipFile, "read", read)
    data = TableDataset(table, size=(16, 16))
    assert data[0]["image"].shape == (3, 16, 16)
    with pytest.raises(DataError, match=rf"member 'bomb\.png' of zip archive '{archive}': 200,000 bytes, more than "
                                        r"any image within Pillow's decompression-bomb limit \(10,000 pixels"):
        data[1]
    with pytest.raises(DataError, match=rf"cannot decode image '{archive}:text\.png' \(22 bytes\): cannot identify "
                                        r"image file \(not a format Pillow reads\)") as info:
        data[2]
    assert "BytesIO" not in str(info.value)
    report = check_data(table, on_error="skip")
    assert [(p.row, p.kind) for p in report.problems] == [(1, "unreadable"), (2, "unreadable")]
    assert "bomb.png" in report.problems[0].detail and not any("BytesIO" in p.detail for p in report.problems)
