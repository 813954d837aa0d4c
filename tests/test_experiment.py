from __future__ import annotations

import pytest
import yaml

from cnnkit.errors import ConfigError
from cnnkit.experiment import apply_overrides, load_experiment


def _write(tmp_path, settings):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def test_overrides_parse_yaml_values_without_touching_the_input() -> None:
    settings = {"train": {"epochs": 1}}
    out = apply_overrides(settings, ["train.epochs=5", "data.size=96x96", "train.lr=1e-4"])
    assert out["train"] == {"epochs": 5, "lr": 1e-4}
    assert out["data"] == {"size": "96x96"}
    assert settings == {"train": {"epochs": 1}}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides(settings, ["train.epochs"])


def test_errors_name_the_key_path(tmp_path) -> None:
    base = {"data": {"source": "x.csv"}}
    with pytest.raises(ConfigError, match=r"data\.sise: unknown key\. Did you mean 'size'\?"):
        load_experiment(_write(tmp_path, {"data": {"source": "x.csv", "sise": "8x8"}}))
    with pytest.raises(ConfigError, match=r"train\.lr: expected float"):
        load_experiment(_write(tmp_path, {**base, "train": {"lr": "fast"}}))
    with pytest.raises(ConfigError, match="data.source is required"):
        load_experiment(_write(tmp_path, {"train": {"epochs": 1}}))
    with pytest.raises(ConfigError, match="unknown value 'bf8'"):
        load_experiment(_write(tmp_path, {**base, "train": {"precision": "bf8"}}))
    with pytest.raises(ConfigError, match="not valid YAML"):
        (tmp_path / "bad.yaml").write_text("train: [1, 2")
        load_experiment(tmp_path / "bad.yaml")


def test_split_by_file_and_column(lips_dir, tmp_path) -> None:
    settings = {"data": {"source": str(lips_dir / "via_project.json"),
                         "split": {"file": str(lips_dir / "splits.csv"), "on": "filename", "column": "split"}}}
    exp = load_experiment(_write(tmp_path, settings))
    tables = exp.tables()
    assert len(tables["train"]) == 207
    assert len(tables["test"]) == 392
    assert "val" not in tables
    settings["data"]["split"] = [0.5, 0.5]
    halves = load_experiment(_write(tmp_path, settings)).tables()
    assert len(halves["train"]) + len(halves["val"]) == 707


def test_flip_pairs_and_test_time_flip_settings(lips_dir, tmp_path) -> None:
    data = {"source": str(lips_dir / "via_project.json"), "flip_pairs": "auto"}
    table = load_experiment(_write(tmp_path, {"data": data})).tables()["train"]
    assert set(table.flip_pairs) == {("leftLip", "rightLip"), ("topleftinner", "toprightinner"),
                                     ("bottomleftinner", "bottomrightinner")}
    given = {**data, "flip_pairs": [["leftLip", "rightLip"]]}
    assert load_experiment(_write(tmp_path, {"data": given})).tables()["train"].flip_pairs == (("leftLip", "rightLip"),)
    with pytest.raises(ConfigError, match=r"flip_pairs\[1\]: expected a \(left, right\) pair"):
        load_experiment(_write(tmp_path, {"data": {**data, "flip_pairs": [["leftLip", "rightLip"], "topmidinner"]}})).tables()
    exp = load_experiment(_write(tmp_path, {"data": data, "evaluate": {"tta_flip": True}}))
    assert exp.tta_flip and not load_experiment(_write(tmp_path, {"data": data})).tta_flip
    with pytest.raises(ConfigError, match=r"evaluate\.tta_flip: expected true or false"):
        load_experiment(_write(tmp_path, {"data": data, "evaluate": {"tta_flip": "yes"}}))
    with pytest.raises(ConfigError, match=r"evaluate\.tta: unknown key\. Allowed: tta_flip"):
        load_experiment(_write(tmp_path, {"data": data, "evaluate": {"tta": True}}))


def test_a_bare_on_key_in_hand_written_yaml_names_the_split_files_column(lips_dir, tmp_path) -> None:
    # YAML 1.1 reads `on:` as the boolean true; before, `on: frame` was ignored for 'filename'.
    import pandas as pd

    splits = pd.read_csv(lips_dir / "splits.csv").rename(columns={"filename": "frame"})
    splits.to_csv(tmp_path / "splits.csv", index=False)
    path = tmp_path / "exp.yaml"
    path.write_text(f"data:\n  source: {lips_dir / 'via_project.json'}\n"
                    f"  split: {{file: {tmp_path / 'splits.csv'}, on: frame, column: split}}\n")
    tables = load_experiment(path).tables()
    assert len(tables["train"]) == 207 and len(tables["test"]) == 392
