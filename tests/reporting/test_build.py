"""``report`` on tiny trained runs: page structure, self-containment, and numbers equal to ``evaluate``'s."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cnnkit import cli
from cnnkit.engine.metrics import normalisers
from cnnkit.infer.evaluate import evaluate
from cnnkit.reporting import landmarks as L
from cnnkit.reporting import report
from cnnkit.reporting.analysis import pck_curve

# "uncertainty": the model carries a calibration (trained with a validation split and a likelihood that varies)
LANDMARK_SECTIONS = ["overview", "settings", "curves", "per-landmark", "pck", "histogram", "uncertainty", "worst",
                     "typical", "confusions"]
CLASS_SECTIONS = ["overview", "settings", "curves", "per-class", "confusion-matrix", "wrong"]


def assert_self_contained(page: Any) -> None:
    assert page.images, "no images on the page"
    for image in page.images:
        assert image["src"].startswith(("data:image/png;base64,", "data:image/jpeg;base64,")), image["src"][:40]
    for url in page.urls:
        assert not url.lower().startswith(("http://", "https://", "//")), url
    assert page.scripts == 0


def test_landmark_page_has_every_section_and_evaluates_numbers(landmark_run, parse_page, as_number,
                                                               tmp_path: Path) -> None:
    run, test = landmark_run["run"], landmark_run["test"]
    ev = evaluate(run.best, test)
    path = report(run.out_dir, test, out=tmp_path / "r.html")
    page = parse_page(path)
    assert page.sections == LANDMARK_SECTIONS
    assert_self_contained(page)
    shown = {row["metric"]: as_number(row["value"]) for row in page.table("overview")}
    numeric = {k: float(v) for k, v in ev.metrics.items() if isinstance(v, (int, float))}
    assert shown.keys() == numeric.keys()
    for key, value in numeric.items():
        assert shown[key] == pytest.approx(value, rel=1e-5, nan_ok=True), key
    assert as_number(page.cards["mean error, px"]) == pytest.approx(ev.metrics["error_px_mean"], rel=1e-3)
    assert as_number(page.cards["mean-shape baseline, px"]) == pytest.approx(ev.metrics["baseline_px_mean"], rel=1e-3)
    per_landmark = page.table("per-landmark")
    assert len(per_landmark) == 8
    for row in per_landmark:
        assert as_number(row["mean px"]) == pytest.approx(ev.metrics[f"error_px/{row['landmark']}"], rel=1e-3)
    likelihood = ev.per_image[[f"{row['landmark']}_likelihood" for row in per_landmark]].mean()
    for row, expected in zip(per_landmark, likelihood, strict=True):
        assert as_number(row["mean likelihood"]) == pytest.approx(expected, rel=1e-3)
    aucs = {row["signal"]: as_number(row["ROC AUC, error > 10 px"]) for row in page.table("uncertainty")}
    assert aucs.keys() == {"1 - likelihood", "calibrated uncertainty (px)"}
    assert aucs["calibrated uncertainty (px)"] == pytest.approx(ev.metrics["uncertainty_auc_10px"], rel=1e-3,
                                                                nan_ok=True)


def test_pck_curve_at_the_threshold_is_evaluates_pck(landmark_run) -> None:
    run, test = landmark_run["run"], landmark_run["test"]
    ev = evaluate(run.best, test)
    s = L.scored(ev, test, {"landmarks": list(test.landmarks), "flip_pairs": []})
    relative = s.errors / normalisers(s.true)[:, None]
    assert pck_curve(relative, np.array([L.PCK_THRESHOLD]))[0] == pytest.approx(ev.metrics["pck"])
    worst = s.per_image["error_px_mean"].to_numpy()
    assert worst[0] == np.nanmax(worst)  # per_image is worst first, so the 'worst' section shows the worst


def test_run_without_val_or_test_gets_curves_and_settings(tmp_path: Path, parse_page, landmark_run,
                                                          small_spec) -> None:
    from cnnkit.train.fit import fit

    train = landmark_run["test"]
    run = fit(small_spec, train, None, out_dir=tmp_path / "run", head="gap", size=(32, 32), epochs=2, batch_size=8,
              quiet=True, device="cpu", plots=False)
    page = parse_page(report(run.out_dir))
    assert page.sections == ["overview", "settings", "curves"]
    assert_self_contained(page)
    assert "no test or validation split" in page.text
    settings = {row[0]: row[1] for row in page.tables["settings"][0]}
    assert settings["epochs (run / planned)"] == "2 / 2 (train.epochs 2)" and settings["validation data"] == "none"


def test_cli_report_and_errors(landmark_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, test = landmark_run["run"], landmark_run["test"]
    csv = tmp_path / "test.csv"
    test.df.to_csv(csv, index=False)
    out = tmp_path / "page.html"
    assert cli.main(["--quiet", "report", str(run.out_dir), "--data", str(csv), "--out", str(out)]) == 0
    assert f"report: {out}" in capsys.readouterr().out
    assert out.stat().st_size > 20_000
    assert cli.main(["--quiet", "report", str(tmp_path / "nowhere")]) == 2
    assert "run folder not found" in capsys.readouterr().err


def test_classification_run(tmp_path: Path, parse_page, as_number, small_spec) -> None:
    from PIL import Image

    from cnnkit.data.sources import read_annotations
    from cnnkit.train.fit import fit

    rng = np.random.default_rng(0)
    for cls, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(10):
            noise = rng.integers(-60, 60, size=(24, 32, 3))
            Image.fromarray(np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)).save(
                tmp_path / "imgs" / cls / f"{i}.png")
    train, test = read_annotations(tmp_path / "imgs").split((0.6, 0.4), seed=0)
    run = fit(small_spec, train, test, out_dir=tmp_path / "run", size=(32, 24), epochs=1, batch_size=4, quiet=True,
              device="cpu", plots=False)
    ev = evaluate(run.best, test)
    page = parse_page(report(run.out_dir, test))
    assert page.sections == CLASS_SECTIONS
    assert_self_contained(page)
    assert as_number(page.cards["accuracy"]) == pytest.approx(ev.metrics["accuracy"], rel=1e-3)
    for row in page.table("per-class"):
        for col in ("precision", "recall"):
            want = ev.metrics[f"{col}/{row['class']}"]
            assert as_number(row[col]) == pytest.approx(want, rel=1e-3, nan_ok=True), (row, col)
    positive = page.table("per-class")[1]  # two classes: index 1 is evaluate's positive class
    assert as_number(positive["specificity"]) == pytest.approx(ev.metrics["specificity"], rel=1e-3, nan_ok=True)
    assert as_number(positive["recall"]) == pytest.approx(ev.metrics["sensitivity"], rel=1e-3, nan_ok=True)
    wrong = int((~ev.per_image["correct"]).sum())
    thumbs = [i for i in page.images if i["src"].startswith("data:image/jpeg")]
    assert len(thumbs) == min(wrong, 12)


def test_train_writes_the_report_and_report_finds_the_split_again(tmp_path: Path, parse_page, landmark_run,
                                                                   small_spec,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """cnnkit train writes RUN/report.html; cnnkit report RUN, run from elsewhere, finds the same test split
    from experiment.yaml's relative paths."""
    import yaml

    project = tmp_path / "project"
    shutil.copytree(landmark_run["root"] / "data", project / "data")
    exp = {"model": {"spec": small_spec, "head": "gap"},
           "data": {"source": "../data/demo_via.json", "split": [0.6, 0.2, 0.2], "size": "32x32",
                    "flip_pairs": "auto"},
           "train": {"epochs": 1, "batch_size": 8, "device": "cpu", "plots": False}, "output": "../runs/exp"}
    (project / "experiments").mkdir()
    (project / "experiments" / "exp.yaml").write_text(yaml.safe_dump(exp))
    assert cli.main(["--quiet", "train", str(project / "experiments" / "exp.yaml")]) == 0
    page_path = project / "runs" / "exp" / "report.html"
    printed = capsys.readouterr().out.split("report: ")[-1].strip()
    assert Path(printed).resolve() == page_path.resolve()
    first = parse_page(page_path)
    assert first.sections == LANDMARK_SECTIONS
    metrics = {row["metric"]: row["value"] for row in first.table("overview")}
    page_path.unlink()
    assert cli.main(["--quiet", "report", str(page_path.parent)]) == 0
    again = parse_page(page_path)
    assert {row["metric"]: row["value"] for row in again.table("overview")} == metrics
    assert "test split of ../data/demo_via.json" in again.text
    assert not math.isnan(float(metrics["error_px_mean"]))


def test_a_report_that_cannot_be_written_after_training_is_a_warning(landmark_run, tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    from cnnkit.experiment import Experiment
    from cnnkit.reporting import report_after_training

    gone = Experiment({"data": {"source": "moved_away.json", "split": [0.5, 0.5]}}, tmp_path)
    assert report_after_training(landmark_run["run"].out_dir, gone) is None
    assert "report not written" in caplog.text and "moved_away.json" in caplog.text
    assert report_after_training(landmark_run["run"].out_dir, Experiment({"data": {"source": str(
        landmark_run["root"] / "data" / "demo_via.json")}}, tmp_path)) is None  # no test or val split: no page


def test_every_image_is_listed_worst_first(landmark_run, parse_page, as_number, tmp_path: Path) -> None:
    run, test = landmark_run["run"], landmark_run["test"]
    ev = evaluate(run.best, test)
    page = parse_page(report(run.out_dir, test, out=tmp_path / "r.html", evaluation=ev))
    listed = page.table("worst")
    assert len(listed) == len(test)
    shown = [as_number(r["mean px"]) for r in listed]
    assert shown == pytest.approx(ev.per_image["error_px_mean"].tolist(), rel=1e-3, nan_ok=True)
    assert listed[0]["image"] == "/".join(Path(ev.per_image["image"][0]).parts[-2:])


def test_the_late_overfit_note_reads_the_pixel_error_and_never_divides_by_zero() -> None:
    from cnnkit.reporting.common import late_overfit_note

    # a crop run: its first epoch measured no validation loss (0 in cnnkit 0.2), its error fell 236 -> 6 px
    falling = pd.DataFrame({"epoch": [1, 2, 3, 4], "val_loss": [0.0, 0.02, 0.01, 0.009],
                            "val_error_px_mean": [236.0, 40.0, 8.0, 6.0]})
    assert late_overfit_note(falling) == ""
    rising = falling.assign(val_error_px_mean=[236.0, 5.0, 6.0, 8.0])
    assert late_overfit_note(rising).startswith("Validation error was lowest at epoch 2 and is 1.60x that at the end")
    classes = pd.DataFrame({"epoch": [1, 2, 3], "val_loss": [0.0, 0.5, 0.9]})
    assert late_overfit_note(classes) == ""  # a best value of 0 says nothing
    assert late_overfit_note(classes.assign(val_loss=[0.4, 0.2, 0.3])).startswith("Validation loss was lowest at epoch 2")


def test_cli_report_passes_views_on(landmark_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cnnkit.reporting as reporting

    seen: dict = {}
    monkeypatch.setattr(reporting, "report", lambda *a, **kw: seen.update(kw) or tmp_path / "r.html")
    assert cli.main(["--quiet", "report", str(landmark_run["run"].out_dir), "--views", "two-pass"]) == 0
    assert seen["views"] == "two-pass"
