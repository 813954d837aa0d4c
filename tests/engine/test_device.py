"""The arithmetic a run trains in: chosen per device when left to the library, kept when given."""

from __future__ import annotations

import json

import pytest
import torch

from cnnkit.engine import device as D

CPU = torch.device("cpu")
# a small network: what is checked is the arithmetic around it (BatchNorm included, which bf16 touches)
SMALL = [["conv", {"filter_size": 3, "layer_depth": 16, "strides": 2}], ["bn"], ["relu"],
         ["res_33", {"depths": [16, 16], "stride": 2}], ["global_avg_pool"]]


def _cpu_with(monkeypatch: pytest.MonkeyPatch, *, avx512_bf16: bool, amx: bool = False) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


def test_auto_trains_bf16_channels_last_only_where_bf16_is_native(monkeypatch) -> None:
    _cpu_with(monkeypatch, avx512_bf16=True)
    precision, channels_last, line = D.training_arithmetic(CPU, "auto", None)
    # bf16 + channels-last crashed in backward (torch 2.13 CPU, small specs): bf16 keeps the default layout
    assert (precision, channels_last) == ("bf16", False)
    assert line is not None and "precision: auto -> bf16" in line and "AVX512-BF16" in line
    assert "validation and predict run fp32" in line and "channels_last: auto -> off" in line
    _cpu_with(monkeypatch, avx512_bf16=False, amx=True)
    assert D.training_arithmetic(CPU, "auto", None)[0] == "bf16"
    assert D.training_arithmetic(CPU, "bf16", True)[:2] == ("bf16", True)  # asked for: kept
    _cpu_with(monkeypatch, avx512_bf16=False)  # emulated bf16 is slower than fp32: not chosen
    precision, channels_last, line = D.training_arithmetic(CPU, "auto", None)
    assert (precision, channels_last) == ("fp32", True) and line is not None and "no native bf16 here" in line


def test_given_settings_are_kept_and_not_announced(monkeypatch) -> None:
    _cpu_with(monkeypatch, avx512_bf16=True)
    assert D.training_arithmetic(CPU, "fp32", False) == ("fp32", False, None)
    assert D.training_arithmetic(CPU, "bf16", False) == ("bf16", False, None)
    precision, channels_last, line = D.training_arithmetic(CPU, "fp32", None)  # only the layout is left to it
    assert (precision, channels_last) == ("fp32", True) and line is not None and "precision" not in line


def test_mps_keeps_fp32_and_the_default_layout() -> None:
    assert D.training_arithmetic(torch.device("mps"), "auto", None)[:2] == ("fp32", False)


def test_a_run_records_what_auto_chose_and_validates_as_predict_scores(lips_dir, tmp_path, monkeypatch, caplog) -> None:
    """The run's own validation figure is the one ``evaluate`` (fp32, the default) gives on the same
    split, although training ran in bf16; the settings record the resolved arithmetic."""
    from cnnkit import evaluate, fit, read_annotations

    _cpu_with(monkeypatch, avx512_bf16=True)
    table = read_annotations(lips_dir / "via_project.json").subset(range(0, 240, 12))
    train, val = table.split((0.75, 0.25), seed=0)
    with caplog.at_level("INFO", logger="cnnkit"):
        run = fit(SMALL, train, val, out_dir=tmp_path, epochs=2, size=(64, 48), batch_size=8, plots=False)
    assert "train.precision: auto -> bf16" in caplog.text
    settings = json.loads((tmp_path / "settings.json").read_text())["train"]
    assert (settings["precision"], settings["channels_last"]) == ("bf16", False)
    printed = run.history["val_error_px_mean"].min()
    delivered = evaluate(run.best, val, device="cpu").metrics["error_px_mean"]
    assert delivered == pytest.approx(printed, abs=1e-3)
