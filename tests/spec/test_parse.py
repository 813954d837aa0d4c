"""Tests for cnnkit.spec.parse: raw lists, files, presets, YAML dump."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cnnkit.errors import SpecError
from cnnkit.spec.parse import PRESET_NAMES, dump_spec_yaml, load_spec, parse_spec, preset_name_of, preset_spec


def test_bare_kind_and_empty_options_parse_the_same() -> None:
    a, b = parse_spec([["bn"], ["bn", {}]])
    assert (a.kind, dict(a.params)) == (b.kind, dict(b.params)) == ("bn", {})
    assert (a.index, b.index) == (0, 1)


def test_params_are_read_only_copies() -> None:
    raw = [["conv", {"filter_size": 3, "strides": [1, 2, 2, 1]}]]
    spec = parse_spec(raw)[0]
    with pytest.raises(TypeError):
        spec.params["filter_size"] = 5  # type: ignore[index]
    spec.params["strides"].append(9)
    assert raw[0][1]["strides"] == [1, 2, 2, 1]  # caller untouched


def test_every_malformed_element_is_listed() -> None:
    raw = [["conv"], "relu", [3, {}], ["bn", [1]], ["a", {}, "extra"], []]
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    problems = err.value.problems
    assert [p.split(":")[0] for p in problems] == ["layer 1", "layer 2", "layer 3 (bn)", "layer 4", "layer 5"]
    assert "expected ['type'] or ['type', {options}]. Received: 'relu'" in problems[0]
    assert "the type must be a string" in problems[1]
    assert "options must be a mapping" in problems[2]


@pytest.mark.parametrize("raw", [[], ()])
def test_empty_spec(raw: list) -> None:
    with pytest.raises(SpecError, match="the spec is empty"):
        parse_spec(raw)


@pytest.mark.parametrize("raw", ["conv", {"conv": {}}, 3])
def test_non_list_spec(raw: object) -> None:
    with pytest.raises(SpecError, match="must be a list of layers"):
        parse_spec(raw)  # type: ignore[arg-type]


def test_load_spec_from_list_copies_and_normalises_tuples() -> None:
    raw = [("conv", {"strides": (1, 2, 2, 1)})]
    out = load_spec(raw)
    assert out == [["conv", {"strides": [1, 2, 2, 1]}]]
    out[0][1]["strides"][1] = 7
    assert raw[0][1]["strides"] == (1, 2, 2, 1)


def test_numpy_scalars_become_python_numbers() -> None:
    np = pytest.importorskip("numpy")
    out = load_spec([["conv", {"layer_depth": np.int64(4), "strides": np.array([1, 2, 2, 1]).tolist()}]])
    assert out == [["conv", {"layer_depth": 4, "strides": [1, 2, 2, 1]}]]
    assert type(out[0][1]["layer_depth"]) is int


def test_preset_names_resolve_to_fresh_lists() -> None:
    a = load_spec("resnet50")
    a[0][1]["layer_depth"] = 1
    assert load_spec("resnet50")[0][1]["layer_depth"] == 64
    assert set(PRESET_NAMES) == {
        "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
        "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
    }  # fmt: skip


def test_preset_structure_follows_the_paper() -> None:
    spec = preset_spec("resnet50")
    blocks = spec[4:]
    assert len(blocks) == 16 and all(b[0] == "res_131" for b in blocks)
    strided = [i for i, b in enumerate(blocks) if b[1].get("stride") == 2]
    assert strided == [3, 7, 13]  # first block of stages 2, 3, 4
    assert blocks[-1][1]["depths"] == [512, 512, 2048]
    assert [b[0] for b in preset_spec("resnet34")[4:]].count("res_33") == 16


def _lite_stages(name: str) -> list[tuple[int, int, int, int]]:
    """(kernel, stride, channels, blocks) per stage of an EfficientNet-Lite preset's mbconv list."""
    stages: list[list[int]] = []
    for _, opts in (item for item in preset_spec(name) if item[0] == "mbconv"):
        stride = opts.get("strides", [1, 1, 1, 1])[1]
        if not stages or stride > 1 or opts["layer_depth"] != stages[-1][2]:
            stages.append([opts["filter_size"], stride, opts["layer_depth"], 0])
        stages[-1][3] += 1
    return [tuple(s) for s in stages]  # type: ignore[misc]


def test_efficientnet_lite_stages_follow_tf_builder() -> None:
    # EfficientNet-B0's table (Tan & Le 2019); Lite keeps the first and last stage's repeats.
    assert _lite_stages("efficientnet_lite0") == [
        (3, 1, 16, 1), (3, 2, 24, 2), (5, 2, 40, 2), (3, 2, 80, 3), (5, 1, 112, 3), (5, 2, 192, 4), (3, 1, 320, 1)
    ]  # fmt: skip
    assert [s[3] for s in _lite_stages("efficientnet_lite1")] == [1, 3, 3, 4, 4, 5, 1]  # depth x1.1
    assert [s[2] for s in _lite_stages("efficientnet_lite2")] == [16, 24, 48, 88, 120, 208, 352]  # width x1.1
    for n in range(3):
        spec = preset_spec(f"efficientnet_lite{n}")
        assert spec[:3] == [
            ["conv", {"filter_size": 3, "layer_depth": 32, "strides": [1, 2, 2, 1], "padding": "SAME", "bias": False}],
            ["bn", {"decay": 0.99, "eps": 0.001}],
            ["relu6"],
        ]  # fmt: skip
        assert spec[-3:] == [
            ["conv", {"filter_size": 1, "layer_depth": 1280, "bias": False}], ["bn", {"decay": 0.99, "eps": 0.001}],
            ["relu6"],
        ]  # fmt: skip
        assert spec[3] == ["mbconv", {"filter_size": 3, "layer_depth": 16, "expand": 1}]


def test_printed_lite_list_is_recognised_as_the_preset(tmp_path: Path) -> None:
    # `cnnkit spec efficientnet_lite0 > net.yaml`, saved unchanged, must train like the name.
    (tmp_path / "net.yaml").write_text(dump_spec_yaml(load_spec("efficientnet_lite0")), encoding="utf-8")
    assert preset_name_of(load_spec(tmp_path / "net.yaml")) == "efficientnet_lite0"
    edited = load_spec(tmp_path / "net.yaml")
    edited[5][1]["expand"] = 4
    assert preset_name_of(edited) is None


def test_preset_name_of_recognises_unchanged_lists() -> None:
    assert [preset_name_of(preset_spec(n)) for n in PRESET_NAMES] == list(PRESET_NAMES)
    edited = preset_spec("resnet50")
    edited[0][1]["layer_depth"] = 32
    assert preset_name_of(edited) is None


def test_unknown_name_suggests_preset() -> None:
    with pytest.raises(SpecError, match=r"'resnet5' is neither a preset nor an existing file\. Did you mean"):
        load_spec("resnet5")


def test_yaml_and_json_files_round_trip(tmp_path: Path) -> None:
    raw = preset_spec("resnet18") + [["drop_out", {"prop": 0.9}], ["fc", {"n": 4}]]
    (tmp_path / "m.yaml").write_text(dump_spec_yaml(raw), encoding="utf-8")
    (tmp_path / "m.json").write_text(json.dumps(raw), encoding="utf-8")
    assert load_spec(tmp_path / "m.yaml") == raw
    assert load_spec(str(tmp_path / "m.json")) == raw
    assert yaml.safe_load(dump_spec_yaml(raw)) == raw


def test_dump_is_one_layer_per_line() -> None:
    text = dump_spec_yaml([["conv", {"filter_size": 7, "bias": False}], ["bn"]])
    assert text == "- [conv, {filter_size: 7, bias: false}]\n- [bn]\n"


def test_file_errors(tmp_path: Path) -> None:
    bad_suffix = tmp_path / "m.txt"
    bad_suffix.write_text("[]")
    with pytest.raises(SpecError, match=r"must end in \.yaml, \.yml, \.json\. Received: '\.txt'"):
        load_spec(bad_suffix)
    mapping = tmp_path / "m.yml"
    mapping.write_text("conv: {}\n")
    with pytest.raises(SpecError, match="expected a list of layers at the top level. Received: dict"):
        load_spec(mapping)
    broken = tmp_path / "b.json"
    broken.write_text("[[")
    with pytest.raises(SpecError, match="b.json: not valid JSON"):
        load_spec(broken)
