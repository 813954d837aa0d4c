"""predict on a video that ends early: every decoded frame gets its row, one line says so, exit status 3
unless --accept-partial, and the progress bar is not rewritten to 100 % (issue 26)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from cnnkit.cli import main
from cnnkit.infer.predict import Predictor
from cnnkit.infer.video_predict import predict_video
from cnnkit.io.checkpoint import save_model
from cnnkit.model.builder import build_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import video_damage  # noqa: E402


def _model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = build_model([["conv", {"filter_size": 1, "layer_depth": 3}]], size=(48, 32), channels=3, outputs=2,
                        head="gap")
    meta = {"task": "landmarks", "landmarks": ["p"], "classes": [], "size": [48, 32], "channels": 3,
            "normalisation": {"mean": [0.0] * 3, "std": [1.0] * 3}, "grayscale": False, "letterbox": False,
            "flip_pairs": []}
    return save_model(tmp_path / "m.safetensors", model, meta)


@pytest.fixture
def cut_video(tmp_path: Path, lips_video_dir: Path) -> Path:
    return video_damage.cut_in_half(lips_video_dir / "002_cal.avi", tmp_path / "cam.avi")


LINE = ("{video}: partial video: 177 frames decoded, 2.94 s of the 6.06 s it declares (728 frames in its header); "
        "the file ends inside frame 177. Every decoded frame is kept; the file is truncated or damaged.")
STATUS = ("cnnkit predict: 1 video(s) ended before their declared length (lines above); their decoded frames were "
          "used. Exit status 3: pass --accept-partial to accept partial videos.")


def test_cli_predict_keeps_every_decoded_frame_and_exits_3(tmp_path: Path, cut_video: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    ckpt = _model(tmp_path)
    out = tmp_path / "cam.csv"
    assert main(["-q", "predict", str(ckpt), str(cut_video), "--out", str(out), "--device", "cpu"]) == 3
    assert pd.read_csv(out)["frame"].tolist() == list(range(177))
    assert [r.getMessage() for r in caplog.records if "partial video" in r.getMessage()] == [
        LINE.format(video=cut_video)]
    assert capsys.readouterr().err.splitlines() == [STATUS]
    caplog.clear()
    assert main(["-q", "predict", str(ckpt), str(cut_video), "--out", str(tmp_path / "b.csv"), "--device", "cpu",
                 "--accept-partial"]) == 0
    assert len(pd.read_csv(tmp_path / "b.csv")) == 177
    assert sum("partial video" in r.getMessage() for r in caplog.records) == 1 and not capsys.readouterr().err


def test_cli_predict_partial_video_in_a_real_process(tmp_path: Path, cut_video: Path) -> None:
    """The lines a user sees on the terminal, and the exit status a script sees."""
    import subprocess

    ckpt = _model(tmp_path)
    run = subprocess.run([sys.executable, "-m", "cnnkit", "-q", "predict", str(ckpt), str(cut_video), "--out",
                          str(tmp_path / "cam.csv"), "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 3, run.stderr
    lines = run.stderr.splitlines()
    assert LINE.format(video=cut_video) in lines and lines[-1] == STATUS and "Traceback" not in run.stderr


def test_cli_predict_on_a_video_without_frames_is_an_error(tmp_path: Path, lips_video_dir: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    empty = video_damage.no_frames(lips_video_dir / "002_cal.avi", tmp_path / "empty.avi")
    out = tmp_path / "empty.csv"
    assert main(["-q", "predict", str(_model(tmp_path)), str(empty), "--out", str(out), "--device", "cpu"]) == 2
    assert not out.exists()  # was: a header-only CSV and exit 0
    assert "empty.avi: no frame could be decoded (0 decoded, 0 declared)" in capsys.readouterr().err


class _Bar:
    made: list[_Bar] = []

    def __init__(self, total: int | None = None, **_: object) -> None:
        self.total, self.n = total, 0
        _Bar.made.append(self)

    def update(self, k: int) -> None:
        self.n += k

    def close(self) -> None:
        pass


def test_the_progress_bar_of_a_partial_video_stays_short(tmp_path: Path, cut_video: Path, index_video,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tqdm.auto.tqdm", _Bar)
    _Bar.made = []
    predictor = Predictor.from_checkpoint(_model(tmp_path), device="cpu")
    predict_video(predictor, cut_video, batch_size=64)
    predict_video(predictor, index_video(tmp_path / "whole.mp4", 9))
    partial, whole = _Bar.made
    assert (partial.n, partial.total) == (177, 728)  # 24 %, not rewritten to 177/177
    assert (whole.n, whole.total) == (9, 9)  # a complete video: the decoded count is the total
