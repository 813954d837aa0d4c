"""The uncertainty calibrated at the end of a run: the signal chosen on validation, and a single model's record."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from cnnkit.engine.scored import Outputs
from cnnkit.experiment import load_experiment, run_experiment
from cnnkit.infer.predict import predict
from cnnkit.io.checkpoint import read_meta
from cnnkit.train.uncertainty import choose_calibration

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ensemble_fixtures import write_experiment  # noqa: E402


def _outputs(rows: int, *, error_from: str, scale_px: float = 30.0, seed: int = 0) -> Outputs:
    """Validation outputs whose errors follow the spread (or the likelihood); the other signal is noise."""
    rng = np.random.default_rng(seed)
    spread, lik = rng.uniform(0.1, 1, (rows, 3)), rng.uniform(0, 1, (rows, 3))
    driver = spread if error_from == "spread" else 1 - lik
    size = driver * scale_px * np.sqrt(2 / np.pi) * rng.rayleigh(1.0, (rows, 3))  # mean error = scale * driver
    angle = rng.uniform(0, 2 * np.pi, (rows, 3))
    true = rng.uniform(0, 200, (rows, 3, 2))
    pred = true + np.stack([size * np.cos(angle), size * np.sin(angle)], axis=-1)
    return Outputs(index=np.arange(rows), pred=pred, true=true, scale=np.ones((rows, 2)), offset=np.zeros((rows, 2)),
                   likelihood=lik, spread=spread)


@pytest.mark.parametrize("driver", ["spread", "likelihood"])
def test_the_signal_that_predicts_the_error_is_chosen(driver: str) -> None:
    calibration, record = choose_calibration(_outputs(300, error_from=driver), ["a", "b", "c"])  # type: ignore[misc]
    noise = "likelihood" if driver == "spread" else "spread"
    assert record["signal"] in (driver, "both") and calibration.signal == record["signal"]
    assert record["val_auc"][driver] > 0.75 and abs(record["val_auc"][noise] - 0.5) < 0.1
    assert record["threshold_px"] == 10.0 and record["rows"] == 300 and record["points"] == 900
    # calibrated: the expected error of held-out points matches their mean error within a pixel or so
    held = _outputs(300, error_from=driver, seed=1)
    err = np.linalg.norm(held.pred - held.true, axis=-1)
    expected = calibration.expected_error(spread=held.spread, likelihood=held.likelihood,
                                          landmarks=np.broadcast_to(["a", "b", "c"], err.shape))
    assert np.mean(expected) == pytest.approx(np.mean(err), abs=1.5)


def test_small_errors_are_ranked_at_their_90th_percentile() -> None:
    out = _outputs(100, error_from="spread", scale_px=2.0)  # every error well under 10 px
    _, record = choose_calibration(out, ["a", "b", "c"], signals=("spread",))  # type: ignore[misc]
    err = np.linalg.norm(out.pred - out.true, axis=-1)
    assert record["threshold_px"] == pytest.approx(np.percentile(err, 90), rel=1e-3)
    assert record["val_auc"]["spread"] > 0.7


def test_without_a_signal_nothing_is_calibrated() -> None:
    out = _outputs(20, error_from="spread")
    bare = Outputs(index=out.index, pred=out.pred, true=out.true, scale=out.scale, offset=out.offset)
    assert choose_calibration(bare, ["a", "b", "c"]) is None


def test_a_run_with_a_validation_split_predicts_an_uncertainty(tmp_path: Path) -> None:
    # flip pairs give this direct head a likelihood that varies: the agreement of image and mirror image
    exp = load_experiment(write_experiment(tmp_path, output="one"), ["data.flip_pairs=[[p0, p1]]"])
    run_experiment(exp, quiet=True)
    best = read_meta(tmp_path / "one" / "best.safetensors")
    assert best["error_calibration"]["signal"] == "likelihood"
    record = best["uncertainty_measured"]
    assert record["rows"] == 7 and record["points"] == 14 and set(record["val_auc"]) == {"likelihood"}
    preds = predict(tmp_path / "one", exp.tables()["val"], device="cpu")  # the run folder: its best model
    assert preds["p0_uncertainty"].notna().all() and (preds["p0_uncertainty"] > 0).all()
    assert "p0_spread" not in preds.columns


def test_a_likelihood_that_never_varies_gives_no_uncertainty(tmp_path: Path) -> None:
    exp = load_experiment(write_experiment(tmp_path, output="flat"))  # direct head, no flip pairs: likelihood 1
    run_experiment(exp, quiet=True)
    assert read_meta(tmp_path / "flat" / "best.safetensors").error_calibration is None
    assert "p0_uncertainty" not in predict(tmp_path / "flat", exp.tables()["val"], device="cpu").columns
