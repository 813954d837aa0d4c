"""CheckpointMeta (one record, written and read in one place) and RunFolder (one owner of the run's files)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from cnnkit.errors import CheckpointError, ConfigError
from cnnkit.io import run_folder as RF
from cnnkit.io.checkpoint import read_meta, save_model, update_meta
from cnnkit.io.meta import FORMAT_VERSION, CheckpointMeta
from cnnkit.model.builder import build_model


def _meta(**over: object) -> CheckpointMeta:
    values = dict(task="landmarks", landmarks=["leftear", "rightear"], classes=[],
                  flip_pairs=[["leftear", "rightear"]], normalisation={"mean": [0.5], "std": [0.25]},
                  size=[32, 24], channels=1)
    values.update(over)
    return CheckpointMeta.for_run(**values)  # type: ignore[arg-type]


def test_the_record_round_trips_through_json_with_unknown_keys_kept() -> None:
    stored = {**_meta().to_dict(), "written_by": "a later cnnkit", "epoch": 7}
    back = CheckpointMeta.from_dict(json.loads(json.dumps(stored)))
    assert back.landmarks == ("leftear", "rightear")
    assert back.flip_pairs == (("leftear", "rightear"),)
    assert back.size == (32, 24) and back.epoch == 7
    assert back.extra == {"written_by": "a later cnnkit"}
    assert back.to_dict() == stored  # unknown keys are written back unchanged
    assert back["task"] == "landmarks" and dict(back)["size"] == [32, 24]  # a read-only mapping over the JSON


def test_another_format_version_and_a_missing_task_are_refused_naming_the_file() -> None:
    good = _meta().to_dict()
    with pytest.raises(CheckpointError, match=r"m\.safetensors: format_version 2; this cnnkit reads format_version 1"):
        CheckpointMeta.from_dict({**good, "format_version": 2}, where="m.safetensors")
    with pytest.raises(CheckpointError, match="'task' must be 'landmarks' or 'classes'; found None"):
        CheckpointMeta.from_dict({k: v for k, v in good.items() if k != "task"})
    assert FORMAT_VERSION == 1


def test_with_values_sets_fields_and_extras_and_identity_ignores_what_a_run_learns() -> None:
    first = _meta(subject_share=0.123456)
    later = first.with_values(epoch=12, selected_by="val_error_px", note="kept")
    assert (later.epoch, later.selected_by, later.extra["note"]) == (12, "val_error_px", "kept")
    assert first.epoch is None  # frozen: the copy changed, not the record
    assert later.identity() == first.identity()
    assert first.identity()["subject_share"] == 0.1235
    assert _meta(size=[64, 48]).identity() != first.identity()


def test_a_model_file_stores_the_record_and_update_meta_keeps_the_weights(tmp_path: Path) -> None:
    net = build_model([["conv", {"layer_depth": 4}], ["relu"]], size=(32, 24), channels=1, outputs=4, head="gap")
    path = save_model(tmp_path / "m.safetensors", net, _meta().to_dict())
    meta = read_meta(path)
    assert isinstance(meta, CheckpointMeta) and meta.model is not None and "spec" in meta.model
    before = {k: v.clone() for k, v in net.state_dict().items()}
    update_meta(path, views_measured={"two-pass": 1.5, "full-frame": 9.0})
    assert read_meta(path).views_measured == {"two-pass": 1.5, "full-frame": 9.0}
    from safetensors.torch import load_file

    after = load_file(str(path))
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(CheckpointError, match="describe the weights"):
        update_meta(path, model={})


def test_the_run_folder_names_every_file_once_and_reads_what_is_there(tmp_path: Path) -> None:
    folder = RF.RunFolder(tmp_path)
    assert len(set(RF.OUTPUTS)) == len(RF.OUTPUTS)  # no name twice
    assert folder.checkpoint() is None and folder.read_settings() == {} and folder.read_history().empty
    folder.write_settings({"epochs": 3})
    folder.update_settings(epochs=5, time_plan=None)
    assert json.loads((tmp_path / RF.SETTINGS).read_text()) == {"epochs": 5, "time_plan": None}
    folder.write_history(pd.DataFrame({"epoch": [1, 2], "train_loss": [0.5, 0.25]}))
    assert folder.read_history()["train_loss"].tolist() == [0.5, 0.25]
    (tmp_path / RF.LAST).write_bytes(b"x")
    assert folder.checkpoint() == tmp_path / RF.LAST
    (tmp_path / RF.BEST).write_bytes(b"x")
    assert folder.checkpoint() == tmp_path / RF.BEST  # best is preferred
    assert folder.present() == [RF.METRICS, RF.BEST, RF.LAST]
    folder.write_test_results({"error_px_mean": 1.25}, pd.DataFrame({"image": ["a.png"], "error_px_mean": [1.25]}))
    assert folder.read_test_metrics() == {"error_px_mean": 1.25}
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*tmp"))


def test_a_damaged_settings_or_experiment_file_is_named(tmp_path: Path) -> None:
    (tmp_path / RF.SETTINGS).write_text("{not json")
    with pytest.raises(ConfigError, match=r"settings\.json: not valid JSON .* the run folder is damaged"):
        RF.RunFolder(tmp_path).read_settings()
    (tmp_path / RF.EXPERIMENT).write_text("data: [unclosed")
    with pytest.raises(ConfigError, match=r"experiment\.yaml: not valid YAML"):
        RF.RunFolder(tmp_path).read_experiment()
