"""Tests for cnnkit.io.checkpoint and cnnkit.atomic."""

from __future__ import annotations

import json
import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch
from torch import nn

import cnnkit.atomic as atomic
from cnnkit.atomic import atomic_open, atomic_write_text
from cnnkit.errors import CheckpointError
from cnnkit.io.checkpoint import (
    FORMAT_VERSION,
    capture_rng,
    load_model,
    load_state,
    load_weights_into,
    read_meta,
    restore_rng,
    save_model,
    save_state,
)

META = {"task": "landmarks", "landmarks": ["l", "r"], "classes": [], "size": [16, 12], "channels": 3,
        "normalisation": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}, "flip_pairs": [["l", "r"]],
        "note": np.float32(1.5)}  # fmt: skip


class Tiny(nn.Module):
    """Stand-in with the build_model config() interface: spec, size, channels, outputs, head."""

    def __init__(self, spec: list[Any], size: list[int], channels: int, outputs: int, head: str = "gap") -> None:
        super().__init__()
        self._cfg = {"spec": spec, "size": list(size), "channels": channels, "outputs": outputs, "head": head}
        width = int(spec[0][1]["layer_depth"])
        self.body = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.fc = nn.Linear(width, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).mean(dim=(2, 3)))

    def config(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._cfg))


def build_tiny(cfg: dict[str, Any]) -> nn.Module:
    return Tiny(cfg.pop("spec"), **cfg)


def _trained_tiny(width: int = 4) -> Tiny:
    torch.manual_seed(0)
    model = Tiny([["conv", {"layer_depth": width}]], [16, 12], 3, 4)
    model.train()
    model(torch.randn(4, 3, 12, 16))  # move the BN running statistics off their defaults
    return model.eval()


def test_round_trip_gives_same_outputs_and_meta(tmp_path: Path) -> None:
    model, x = _trained_tiny(), torch.randn(2, 3, 12, 16)
    path = save_model(tmp_path / "m.safetensors", model, META)
    loaded, meta = load_model(path, builder=build_tiny)
    assert not loaded.training
    assert torch.equal(loaded(x), model(x))
    assert meta["format_version"] == FORMAT_VERSION and meta["landmarks"] == ["l", "r"]
    assert meta["model"] == model.config() and meta["note"] == 1.5
    assert read_meta(path) == meta
    assert not list(tmp_path.glob(".*tmp"))


def test_load_weights_into_existing_model_and_meta_defaults(tmp_path: Path) -> None:
    model, x = _trained_tiny(), torch.randn(2, 3, 12, 16)
    path = save_model(tmp_path / "m.safetensors", model, {"task": "classes", "classes": ["a", "b", "c", "d"]})
    target = build_tiny(model.config()).eval()
    assert not torch.equal(target(x), model(x))
    meta = load_weights_into(target, path)
    assert torch.equal(target(x), model(x))
    assert meta["size"] == [16, 12] and meta["channels"] == 3  # taken from model.config()
    with pytest.raises(CheckpointError, match="shape mismatches: \\['body.0.bias: file \\(4,\\) vs model \\(6,\\)"):
        load_weights_into(_trained_tiny(width=6), path)


def test_version_mismatch_names_file_found_and_expected(tmp_path: Path) -> None:
    path = tmp_path / "old.safetensors"
    record = {"format_version": 99, "model": _trained_tiny().config()}
    safetensors.torch.save_file({"w": torch.zeros(1)}, str(path), metadata={"cnnkit": json.dumps(record)})
    with pytest.raises(CheckpointError, match=rf"old\.safetensors: format_version 99; .* {FORMAT_VERSION}\b"):
        load_model(path, builder=build_tiny)


def test_foreign_safetensors_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "raw.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(1)}, str(path))
    with pytest.raises(CheckpointError, match="without 'cnnkit' metadata"):
        load_model(path, builder=build_tiny)
    with pytest.raises(CheckpointError, match="nope.safetensors: model file not found"):
        load_model(tmp_path / "nope.safetensors")


def test_mismatched_weights_list_missing_and_unexpected_keys(tmp_path: Path) -> None:
    path = save_model(tmp_path / "m.safetensors", _trained_tiny(), META)

    def build_other(cfg: dict[str, Any]) -> nn.Module:
        model = build_tiny(cfg)
        model.extra = nn.Linear(2, 2)
        del model.fc
        return model

    with pytest.raises(CheckpointError, match=r"Missing keys: \['extra\.bias', 'extra\.weight'\]; "
                       r"unexpected keys: \['fc\.bias', 'fc\.weight'\]"):  # fmt: skip
        load_model(path, builder=build_other)


class _Plant:
    """Unpickling this creates a marker file: proof that a loader executed pickle code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["pickle", "torch"])
def test_pickles_are_refused_without_running_them(tmp_path: Path, writer: str) -> None:
    marker, path = tmp_path / "PWNED", tmp_path / "evil.safetensors"
    if writer == "pickle":
        path.write_bytes(pickle.dumps({"w": _Plant(marker)}))
    else:
        torch.save({"w": _Plant(marker)}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="evil.safetensors: cannot read as a cnnkit model file"):
        load_model(path, builder=build_tiny)
    with pytest.raises(CheckpointError, match="evil.safetensors: not a readable cnnkit training state"):
        load_state(path)
    assert not marker.exists()


def test_failed_write_keeps_previous_file_and_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, x = _trained_tiny(), torch.randn(1, 3, 12, 16)
    path = save_model(tmp_path / "m.safetensors", old, META)
    before = path.read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device (injected)")

    monkeypatch.setattr(atomic.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match=r"No space left on device: '.*m\.safetensors'") as info:  # the target named
        save_model(path, _trained_tiny(width=6), META)
    monkeypatch.undo()
    assert info.value.errno == 28 and info.value.filename == str(path) and info.value.__suppress_context__
    assert path.read_bytes() == before
    assert torch.equal(load_model(path, builder=build_tiny)[0](x), old(x))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_failure_mid_write_of_a_stream(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "a.txt", "old")
    with pytest.raises(OSError, match="disk"):
        with atomic_open(path) as f:
            f.write(b"half of the new")
            raise OSError("disk went away")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_rng_capture_restore_repeats_torch_and_leaves_numpy_and_python_alone(tmp_path: Path) -> None:
    state = capture_rng()
    assert set(state) <= {"torch", "cuda"}  # the caller's numpy / python RNGs are not a run's to save
    first = torch.rand(3).tolist()
    np.random.seed(1)
    random.seed(1)
    restore_rng(state)
    assert torch.rand(3).tolist() == first
    assert (np.random.rand(), random.random()) == (np.random.RandomState(1).rand(), random.Random(1).random())
    # and through a weights_only round trip of the training state
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    save_state(tmp_path / "s.pt", optimizer=opt, epoch=0, rng=state)
    restore_rng(load_state(tmp_path / "s.pt")["rng"])
    assert torch.rand(3).tolist() == first
    with pytest.raises(CheckpointError, match="lacks 'torch'"):
        restore_rng({"numpy": {}})


def test_state_files_of_the_previous_layout_still_load(tmp_path: Path) -> None:
    """Files written before: a 'scaler': None key and numpy/python RNG states (ignored on restore)."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    old_rng = {"torch": torch.get_rng_state(), "numpy": {"name": "MT19937", "keys": torch.zeros(624, dtype=torch.int64)},
               "python": {"version": 3}, "generators": {}}
    torch.save({"format_version": FORMAT_VERSION, "epoch": 2, "optimizer": opt.state_dict(), "scheduler": None,
                "scaler": None, "rng": old_rng, "extra": {}}, tmp_path / "old.pt")
    np.random.seed(4)
    state = load_state(tmp_path / "old.pt")
    restore_rng(state["rng"])
    assert state["epoch"] == 2 and np.random.rand() == np.random.RandomState(4).rand()


def _adam_setup(model: nn.Module) -> tuple[torch.optim.Optimizer, Any]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=6)


def _steps(model: nn.Module, opt: torch.optim.Optimizer, sched: Any, n: int) -> None:
    g = torch.Generator().manual_seed(11)
    for _ in range(n):
        loss = model(torch.randn(2, 3, 12, 16, generator=g)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def test_state_save_load_with_adam_resumes_exactly(tmp_path: Path) -> None:
    model = _trained_tiny().train()
    opt, sched = _adam_setup(model)
    _steps(model, opt, sched, 3)
    save_model(tmp_path / "last.safetensors", model, META)
    save_state(tmp_path / "last.state.pt", optimizer=opt, scheduler=sched, epoch=3, rng=capture_rng(),
               extra={"best": np.float64(0.25), "history": [1.0, 2.0], "mean": np.zeros(2)})  # fmt: skip
    _steps(model, opt, sched, 3)  # the uninterrupted run

    resumed, _ = load_model(tmp_path / "last.safetensors", builder=build_tiny)
    resumed.train()
    opt2, sched2 = _adam_setup(resumed)
    state = load_state(tmp_path / "last.state.pt")
    opt2.load_state_dict(state["optimizer"])
    sched2.load_state_dict(state["scheduler"])
    assert state["epoch"] == 3 and state["extra"]["best"] == 0.25 and "scaler" not in state
    assert torch.equal(state["extra"]["mean"], torch.zeros(2, dtype=torch.float64))
    _steps(resumed, opt2, sched2, 3)
    for a, b in zip(model.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-7)
    assert sched2.get_last_lr() == sched.get_last_lr()


def test_save_state_refuses_what_weights_only_cannot_load(tmp_path: Path) -> None:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(CheckpointError, match="weights_only"):
        save_state(tmp_path / "s.pt", optimizer=opt, epoch=1, rng={}, extra={"obj": _Plant(tmp_path / "x")})
    assert not (tmp_path / "s.pt").exists() and not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("spec", "head"),
    [([["conv", {"layer_depth": 8}], ["bn"], ["relu"], ["res_131", {"depths": [4, 4, 8]}]], None),
     ("resnet18", "gap")],
)  # fmt: skip
def test_real_builder_round_trip(tmp_path: Path, spec: Any, head: str | None) -> None:
    builder = pytest.importorskip("cnnkit.model.builder")
    torch.manual_seed(0)
    model = builder.build_model(spec, size=(32, 24), channels=3, outputs=4, head=head)
    model.train()
    model(torch.randn(2, 3, 24, 32))  # non-default BN running statistics
    model.eval()
    x = torch.randn(2, 3, 24, 32)
    path = save_model(tmp_path / "m.safetensors", model, META)
    loaded, meta = load_model(path)
    assert type(loaded) is type(model) and not loaded.training
    assert torch.equal(loaded(x), model(x))
    assert meta["model"] == json.loads(json.dumps(model.config()))


def test_remove_stale_temps_touches_only_the_named_targets_temporaries(tmp_path: Path) -> None:
    from cnnkit.atomic import remove_stale_temps

    names = [".last.state.pt.k1ll.tmp", ".curves.png.x9.tmp.png", ".notes.txt.y.tmp", "keep.tmp", "last.state.pt"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    assert remove_stale_temps(tmp_path, ("last.state.pt", "curves.png")) == [".curves.png.x9.tmp.png",
                                                                             ".last.state.pt.k1ll.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.txt.y.tmp", "keep.tmp", "last.state.pt"]


def test_names_that_do_not_match_the_head_are_refused_on_load(tmp_path: Path) -> None:
    """3 landmark names on a 16-output model would predict 3 points from the first outputs; 2 class names
    on a 3-class head, probabilities that do not sum to 1. Both are refused, naming the file."""
    builder = pytest.importorskip("cnnkit.model.builder")
    spec = [["conv", {"filter_size": 3, "layer_depth": 4}]]
    landmarks = save_model(tmp_path / "points.safetensors", builder.build_model(spec, size=(16, 16), outputs=16,
                                                                               head="gap"),
                           {"task": "landmarks", "landmarks": ["a", "b", "c"]})
    with pytest.raises(CheckpointError, match=r"points\.safetensors: metadata names 3 landmarks but the model has "
                                              r"16 outputs \(2 x landmarks \(x and y\)\)"):
        load_model(landmarks)
    classes = save_model(tmp_path / "classes.safetensors", builder.build_model(spec, size=(16, 16), outputs=3),
                         {"task": "classes", "classes": ["ant", "bee"]})
    with pytest.raises(CheckpointError, match=r"names 2 classes but the model has 3 outputs \(one per class\)"):
        load_model(classes)
    with pytest.raises(CheckpointError, match="names 2 classes"):
        load_weights_into(builder.build_model(spec, size=(16, 16), outputs=3), classes)
    good = save_model(tmp_path / "good.safetensors", builder.build_model(spec, size=(16, 16), outputs=3),
                      {"task": "classes", "classes": ["ant", "bee", "wasp"]})
    assert load_model(good)[1]["classes"] == ["ant", "bee", "wasp"]


def test_a_model_file_follows_the_umask(tmp_path: Path) -> None:
    """safetensors writes a 0600 file of its own; the atomic writer gives it the usual mode before the rename."""
    old = os.umask(0o022)
    try:
        path = save_model(tmp_path / "m.safetensors", _trained_tiny(), META)
        text = atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644 == text.stat().st_mode & 0o777
