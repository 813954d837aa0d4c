"""Loading safety: a pickle that would run code is refused, never unpickled; zip members are
read by name, never extracted.

Each planted file's ``__reduce__`` calls ``open(marker, 'w')``: unpickling it would create the
marker file, so ``not marker.exists()`` proves nothing was unpickled.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import cnnkit
from cnnkit.errors import CheckpointError
from cnnkit.io.checkpoint import load_model, load_state, load_weights_into, read_meta

TINY_SPEC = [["conv", {"filter_size": 3, "layer_depth": 4}], ["relu"]]
ROOT = Path(__file__).resolve().parents[2]


class _Evil:
    """Unpickling this calls ``open(marker, 'w')``, i.e. creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


def _plain_pickle(marker: Path) -> bytes:
    return pickle.dumps({"state_dict": _Evil(marker)})


def _torch_pickle(marker: Path) -> bytes:
    buf = io.BytesIO()
    torch.save({"epoch": 3, "optimizer": _Evil(marker)}, buf)
    return buf.getvalue()


PAYLOADS: dict[str, Callable[[Path], bytes]] = {"pickle": _plain_pickle, "torch.save": _torch_pickle}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, make_set: Callable[..., Path]) -> Path:
    """A real one-epoch run folder (last/best safetensors, last.state.pt) to copy and plant into."""
    base = tmp_path_factory.mktemp("safety")
    table = cnnkit.read_annotations(make_set(base / "data", n=8))
    out = base / "run"
    cnnkit.fit(TINY_SPEC, table, out_dir=out, size=(16, 16), epochs=1, batch_size=4, device="cpu",
               quiet=True, plots=False, head="gap")
    return out


def _fresh_run(run_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    return out


def test_payloads_would_run_code(tmp_path: Path) -> None:
    """The planted files are real exploits: unpickling them does create the marker."""
    for name, make in PAYLOADS.items():
        marker = tmp_path / f"marker-{name.replace('.', '_')}"
        data = make(marker)
        if name == "pickle":
            pickle.loads(data)  # noqa: S301 - the point of the test
        else:
            torch.load(io.BytesIO(data), weights_only=False)  # noqa: S614
        assert marker.exists(), name


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_pickle_as_model_file_is_refused(payload: str, tmp_path: Path, run_dir: Path) -> None:
    marker = tmp_path / "marker"
    bad = tmp_path / "best.safetensors"
    bad.write_bytes(PAYLOADS[payload](marker))
    for load in (read_meta, load_model, lambda p: cnnkit.predict(p, run_dir.parent / "data" / "img0.png")):
        with pytest.raises(CheckpointError, match="never loaded because unpickling can run code"):
            load(bad)
    net = cnnkit.build_model(TINY_SPEC, size=(16, 16), outputs=4, head="gap")
    with pytest.raises(CheckpointError, match=str(bad.name)):
        load_weights_into(net, bad)
    assert not marker.exists()


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_as_training_state_is_refused(payload: str, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    bad = tmp_path / "last.state.pt"
    bad.write_bytes(PAYLOADS[payload](marker))
    with pytest.raises(CheckpointError, match="not a readable cnnkit training state"):
        load_state(bad)
    assert not marker.exists()


@pytest.mark.parametrize("planted", ["last.safetensors", "best.safetensors", "last.state.pt"])
def test_resume_never_unpickles_a_planted_file(planted: str, tmp_path: Path, run_dir: Path) -> None:
    """fit(resume=True) on a run folder whose file was swapped for an exploit: a planted state is refused
    naming it; planted weights are never read (a resume reads only the state) and get replaced."""
    out = _fresh_run(run_dir, tmp_path)
    marker = tmp_path / "marker"
    (out / planted).write_bytes(PAYLOADS["torch.save"](marker))
    table = cnnkit.read_annotations(run_dir.parent / "data" / "ann.csv")
    opts = dict(size=(16, 16), epochs=2, batch_size=4, device="cpu", quiet=True, plots=False, head="gap",
                resume=True)  # no val: best follows the last epoch, so it is rewritten too
    if planted == "last.state.pt":
        with pytest.raises(CheckpointError, match=planted.replace(".", r"\.")):
            cnnkit.fit(TINY_SPEC, table, out_dir=out, **opts)
    else:
        cnnkit.fit(TINY_SPEC, table, out_dir=out, **opts)
        assert read_meta(out / planted)["epoch"] == 2
    assert not marker.exists()


def test_cli_resume_refuses_planted_pickle(tmp_path: Path, run_dir: Path) -> None:
    """The real command: exit code 2, one line naming the file, no code run."""
    out = _fresh_run(run_dir, tmp_path)
    marker = tmp_path / "marker"
    (out / "last.state.pt").write_bytes(PAYLOADS["pickle"](marker))
    exp = tmp_path / "exp.yaml"
    settings = {"model": {"spec": TINY_SPEC, "head": "gap"},
                "data": {"source": str(run_dir.parent / "data" / "ann.csv"), "size": "16x16"},
                "train": {"epochs": 2, "batch_size": 4, "device": "cpu", "plots": False}, "output": str(out)}
    exp.write_text(yaml.safe_dump(settings), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "cnnkit", "-q", "train", str(exp), "--resume"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert "last.state.pt" in proc.stderr and "not a readable cnnkit training state" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists()


def _hostile_zip(path: Path, png: bytes) -> list[str]:
    names = ["/abs_zip_test/evil_abs.png", "../evil_up.png", "a/../../evil_up2.png", "ok/fine.png"]
    with zipfile.ZipFile(path, "w") as zf:
        for n in names:
            zf.writestr(n, png)
    return names


def _outside_snapshot(tmp_path: Path) -> set[str]:
    """Every name that an extraction of the zip's members would create outside ``tmp_path/work``."""
    return {p.name for p in tmp_path.parent.iterdir()} | {p.name for p in tmp_path.iterdir()}


def test_zip_members_are_read_never_extracted(tmp_path: Path, run_dir: Path,
                                              image_bytes: Callable[..., bytes]) -> None:
    work = tmp_path / "work"
    work.mkdir()
    png = image_bytes(np.full((20, 24, 3), 90, np.uint8))
    archive = work / "hostile.zip"
    names = _hostile_zip(archive, png)
    before = _outside_snapshot(tmp_path)
    frame = pd.DataFrame({"image": names, "a_x": 5.0, "a_y": 5.0, "b_x": 9.0, "b_y": 9.0})
    table = cnnkit.read_annotations(frame, zip=archive)
    assert table.images == names  # member names, matched as written
    report = cnnkit.check_data(table)
    assert report.ok and report.n_rows == 4
    ds = cnnkit.data.dataset.TableDataset(table, size=(12, 10))
    assert all(int(ds[i]["image"][0, 0, 0]) == 90 for i in range(4))
    preds = cnnkit.predict(run_dir / "best.safetensors", archive)
    assert len(preds) == 4 and set(preds["image"]) == set(names)
    cnnkit.build_cache(table, size=(12, 10), folder=work / "cache", progress=False)
    assert _outside_snapshot(tmp_path) == before
    assert not Path("/abs_zip_test").exists()
    assert not (tmp_path / "evil_up.png").exists() and not (tmp_path / "evil_up2.png").exists()
    assert sorted(os.listdir(work)) == ["cache", "hostile.zip"]
