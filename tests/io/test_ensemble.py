"""The ensemble manifest and what a model argument may be (a file, an ensemble, a run folder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cnnkit.errors import CheckpointError
from cnnkit.io.checkpoint import FORMAT_VERSION, save_model
from cnnkit.io.ensemble import (
    EnsembleManifest,
    find_model,
    is_ensemble,
    members_entry,
    read_manifest,
    read_model_meta,
    write_manifest,
)
from cnnkit.model.builder import build_model


def _model(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    net = build_model([["conv", {"filter_size": 3, "layer_depth": 2}]], size=(8, 8), channels=1, outputs=2, head="gap")
    meta = {"format_version": FORMAT_VERSION, "task": "landmarks", "landmarks": ["a"], "size": [8, 8]}
    with torch.no_grad():
        return save_model(path, net, meta)


def _ensemble(folder: Path, n: int = 2, done: bool = True) -> Path:
    members = []
    for k in range(1, n + 1):
        _model(folder / f"member-{k}" / "best.safetensors")
        members.append(members_entry(f"member-{k}", f"member-{k}/best.safetensors", seed=k - 1,
                                     done=done or k == 1))
    return write_manifest(EnsembleManifest(folder / "ensemble.json", tuple(members), calibration={"x": 1}))


def test_manifest_round_trip_and_relative_members(tmp_path: Path) -> None:
    path = _ensemble(tmp_path / "ens")
    moved = tmp_path / "elsewhere"
    (tmp_path / "ens").rename(moved)  # member paths are relative: the folder moves whole
    manifest = read_manifest(moved / "ensemble.json")
    assert manifest.files == [moved / "member-1" / "best.safetensors", moved / "member-2" / "best.safetensors"]
    assert manifest.calibration == {"x": 1} and [m["seed"] for m in manifest.members] == [0, 1]
    assert json.loads((moved / "ensemble.json").read_text())["format"] == "cnnkit-ensemble"
    assert path.name == "ensemble.json"


def test_find_model_takes_files_ensembles_and_run_folders(tmp_path: Path) -> None:
    model = _model(tmp_path / "run" / "last.safetensors")
    assert find_model(model).file == model and find_model(tmp_path / "run").file == model  # no best: last
    best = _model(tmp_path / "run" / "best.safetensors")
    assert find_model(tmp_path / "run").file == best
    _ensemble(tmp_path / "ens")
    for arg in (tmp_path / "ens", tmp_path / "ens" / "ensemble.json"):
        ref = find_model(arg)
        assert ref.file is None and ref.manifest is not None and len(ref.files) == 2
        assert is_ensemble(arg)
    assert not is_ensemble(tmp_path / "run") and not is_ensemble(best)
    meta = read_model_meta(tmp_path / "ens")
    assert meta["landmarks"] == ["a"] and meta["ensemble"]["files"][1].endswith("member-2/best.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="a folder without ensemble.json, best.safetensors or last"):
        find_model(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="model file not found"):
        find_model(tmp_path / "nothing.safetensors")


def test_an_unfinished_or_broken_ensemble_is_refused(tmp_path: Path) -> None:
    _ensemble(tmp_path / "half", done=False)
    with pytest.raises(CheckpointError, match="not finished: member-2.*--resume"):
        read_manifest(tmp_path / "half" / "ensemble.json")
    path = _ensemble(tmp_path / "gone")
    (tmp_path / "gone" / "member-2" / "best.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing: .*member-2/best.safetensors"):
        read_manifest(path)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "version": 7}))
    with pytest.raises(CheckpointError, match="version 7; this cnnkit reads version 1"):
        read_manifest(path)
    path.write_text(json.dumps({"_via_img_metadata": {}}))
    with pytest.raises(CheckpointError, match="not a cnnkit ensemble manifest"):
        read_manifest(path)
