"""`cnnkit smooth`, called in-process: the round trip, the default name, and refusals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from cnnkit.cli import main


def _members(folder, n: int = 3, frames: int = 120) -> list[str]:
    rng = np.random.default_rng(0)
    truth = np.cumsum(rng.normal(0, 1, (frames, 2)), axis=0) + 100
    paths = []
    for m in range(n):
        noisy = truth + rng.normal(0, 2, truth.shape)
        table = pd.DataFrame({"frame": np.arange(frames), "time_s": np.arange(frames) / 30, "lip_x": noisy[:, 0],
                              "lip_y": noisy[:, 1], "lip_likelihood": rng.uniform(0.5, 1, frames)})
        path = folder / f"clip_m{m}.csv"
        table.to_csv(path, index=False)
        paths.append(str(path))
    return paths


def test_smooth_an_ensemble_round_trip(tmp_path, capsys) -> None:
    paths = _members(tmp_path)
    out = tmp_path / "clip_eks.csv"
    assert main(["smooth", *paths, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    settings = json.loads((tmp_path / "clip_eks.csv.json").read_text())
    s = settings["strength_px2_per_frame"][""]["lip"]
    assert f"lip {s:.3g}" in printed and "120 frames smoothed (eks, 3 input(s))" in printed
    table = pd.read_csv(out)
    assert list(table.columns) == ["frame", "time_s", "lip_x", "lip_y", "lip_sd", "lip_likelihood", "lip_x_median",
                                   "lip_y_median", "lip_spread"]
    assert (table["lip_sd"] > 0).all() and len(table) == 120
    assert main(["smooth", *paths, "--out", str(out), "--strength", "0.5"]) == 0  # its own output: replaced
    assert json.loads((tmp_path / "clip_eks.csv.json").read_text())["strength_px2_per_frame"][""]["lip"] == 0.5


def test_one_csv_gets_the_median_filter_beside_it(tmp_path, capsys) -> None:
    (path,) = _members(tmp_path, n=1)
    assert main(["smooth", path]) == 0
    assert "(median, window 5 frames, 1 input(s))" in capsys.readouterr().out
    assert (tmp_path / "clip_m0_smoothed.csv").is_file() and (tmp_path / "clip_m0_smoothed.csv.json").is_file()
    assert main(["smooth", path, "--method", "savgol", "--window", "9", "--out", str(tmp_path / "sg.csv")]) == 0
    assert json.loads((tmp_path / "sg.csv.json").read_text())["window"] == 9


def test_smooth_refuses_to_overwrite_an_input_or_labels(tmp_path, capsys) -> None:
    paths = _members(tmp_path, n=2)
    before = open(paths[0], "rb").read()
    assert main(["smooth", *paths, "--out", paths[0]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnkit smooth: error: ") and "is one of the inputs" in err and err.count("\n") == 1
    assert open(paths[0], "rb").read() == before
    labels = tmp_path / "labels.csv"
    labels.write_text("image,lip_x,lip_y\na.png,1,2\n")
    assert main(["smooth", *paths, "--out", str(labels)]) == 2
    assert "labels.csv" in capsys.readouterr().err and labels.read_text() == "image,lip_x,lip_y\na.png,1,2\n"
    assert main(["smooth", paths[0], "--method", "eks"]) == 2
    assert "EKS needs the predictions of 2 or more models" in capsys.readouterr().err
