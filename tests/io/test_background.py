"""The background checkpoint writer: order, errors, and its low CPU priority."""

from __future__ import annotations

import os
import sys
import threading

import pytest
import torch

from cnnkit.io.background import BackgroundWriter
from cnnkit.io.checkpoint import load_state, write_state


def test_jobs_run_in_submission_order_and_errors_reach_the_caller() -> None:
    writer, done = BackgroundWriter(), []
    for i in range(5):
        writer.submit(lambda i=i: done.append(i))
    writer.wait()
    assert done == [0, 1, 2, 3, 4]
    writer.submit(lambda: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        writer.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_the_writer_thread_runs_at_the_lowest_priority_and_the_caller_keeps_its_own() -> None:
    seen: list[int] = []
    writer = BackgroundWriter()
    writer.submit(lambda: seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
    writer.wait()
    assert seen == [19]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < 19


def test_a_state_written_without_its_crc_pass_loads_back_exactly(tmp_path) -> None:
    record = {"format_version": 1, "epoch": 3, "optimizer": {"m": torch.arange(10.0)}, "scheduler": None,
              "rng": {}, "extra": {}}
    write_state(tmp_path / "s.pt", record)
    back = load_state(tmp_path / "s.pt")
    assert back["epoch"] == 3 and torch.equal(back["optimizer"]["m"], torch.arange(10.0))
    serialization = pytest.importorskip("torch.utils.serialization")
    assert serialization.config.save.compute_crc32 is True  # restored for everyone else's torch.save


def test_a_model_file_is_written_under_a_name_no_safetensors_glob_matches(tmp_path, monkeypatch) -> None:
    """A kill mid-write leaves '.best.safetensors.<random>.tmp', which '*.safetensors' never lists."""
    import safetensors.torch

    from cnnkit.io.checkpoint import ModelSnapshot, write_model

    seen: list[str] = []
    real = safetensors.torch.save_file

    def spy(tensors, filename, metadata=None):
        seen.append(str(filename))
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", spy)
    write_model(tmp_path / "best.safetensors", ModelSnapshot({"w": torch.ones(2)}, "{}"))
    assert len(seen) == 1 and seen[0].endswith(".tmp") and "/.best.safetensors." in seen[0]
    assert [p.name for p in tmp_path.glob("*.safetensors")] == ["best.safetensors"]
