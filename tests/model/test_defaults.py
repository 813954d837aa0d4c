"""One rule for the default head, loss and start of every build path (name, list, file)."""

from __future__ import annotations

import torch
import yaml

from cnnkit.model.builder import build_model
from cnnkit.model.defaults import default_head, default_loss, preset_of
from cnnkit.model.summary import summary
from cnnkit.spec.parse import dump_spec_yaml, load_spec, preset_spec

OWN = [["conv", {"filter_size": 3, "layer_depth": 8, "strides": [1, 2, 2, 1]}], ["relu"]]


def test_a_preset_saved_by_cnnkit_spec_is_the_same_preset(tmp_path) -> None:
    path = tmp_path / "net.yaml"
    path.write_text(dump_spec_yaml(load_spec("resnet18")), encoding="utf-8")
    assert preset_of(path) == preset_of(preset_spec("resnet18")) == preset_of("resnet18") == "resnet18"
    assert preset_of(OWN) is None


def test_name_list_and_file_get_the_same_landmark_model(tmp_path) -> None:
    # Before: 'resnet18' trained with the heatmap head, the identical list from `cnnkit spec` with 'gap'.
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump(preset_spec("resnet18")), encoding="utf-8")
    heads = {str(s): build_model(s, size=(64, 48), outputs=8, task="landmarks").head
             for s in ("resnet18", path)}
    heads["list"] = build_model(preset_spec("resnet18"), size=(64, 48), outputs=8, task="landmarks").head
    assert set(heads.values()) == {"heatmap"}
    assert build_model("resnet18", size=(64, 48), outputs=3, task="classes").head == "gap"
    assert build_model(OWN, size=(64, 48), outputs=8, task="landmarks").head == "flatten"


def test_fit_builds_the_same_module_from_name_and_list() -> None:
    import pandas as pd

    from cnnkit.config import DataConfig
    from cnnkit.data.table import AnnotationTable
    from cnnkit.train.parts import build_for_table

    table = AnnotationTable(pd.DataFrame({"image": ["a.png"], "p_x": [1.0], "p_y": [2.0]}), landmarks=("p",), source="t")
    nets = []
    for spec in ("resnet18", preset_spec("resnet18")):
        torch.manual_seed(0)
        nets.append(build_for_table(spec, table, DataConfig(size=(64, 48)))[0])
    a, b = (n.state_dict() for n in nets)
    assert nets[0].head == nets[1].head == "heatmap" and all(torch.equal(a[k], b[k]) for k in a)


def test_default_loss_follows_the_head() -> None:
    assert default_loss("landmarks", "heatmap") == "l1"
    assert default_loss("landmarks", "flatten") == "mse"
    assert default_loss("classes", None) == "cross_entropy"
    assert default_head("resnet34", None) == "gap"


def test_summary_counts_a_saved_preset_like_the_name(tmp_path) -> None:
    path = tmp_path / "net.yaml"
    path.write_text(dump_spec_yaml(load_spec("resnet18")), encoding="utf-8")
    assert summary(path, size=(224, 224)).params == summary("resnet18", size=(224, 224)).params == 11_689_512
