"""The default decoded cache: each image decoded once, kept in memory, the same pixels as without it."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

from cnnkit.config import CropConfig, DataConfig
from cnnkit.data.dataset import TableDataset
from cnnkit.data.memo import MEMORY, DecodedMemo, memo_budget
from cnnkit.data.views import ViewDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from crop_fixtures import small_subject_table  # noqa: E402


def _counting(ds, monkeypatch) -> list[int]:
    """Row numbers ``ds`` decodes, in order."""
    calls: list[int] = []
    decode = ds._decode

    def counted(i, *args):
        calls.append(i)
        return decode(i, *args)

    monkeypatch.setattr(ds, "_decode", counted)
    return calls


def _assert_same_item(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:  # points outside a view are NaN in both
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy(), err_msg=key)


def test_the_memo_keeps_rows_while_its_budget_lasts() -> None:
    memo = DecodedMemo(budget_bytes=250)
    decoded: list[int] = []

    def row(i: int):
        return lambda: (decoded.append(i), (np.full(100, i, np.uint8), f"geometry {i}"))[1]

    for _ in range(3):
        for i in range(4):
            arr, geo = memo.get(i, row(i))
            assert arr[0] == i and geo == f"geometry {i}"
    # rows 0 and 1 fit (200 of 250 bytes) and are decoded once; 2 and 3 every time
    assert decoded == [0, 1, 2, 3, 2, 3, 2, 3] and memo.bytes == 200
    assert 0 < memo_budget() <= 2 << 30


def test_table_dataset_in_memory_decodes_once_and_reads_the_same_pixels(lips_dir, monkeypatch) -> None:
    from cnnkit import read_annotations

    table = read_annotations(lips_dir / "via_project.json").subset(range(0, 60, 10))
    plain = TableDataset(table, size=(80, 60))
    kept = TableDataset(table, size=(80, 60), cache=MEMORY)
    calls = _counting(kept, monkeypatch)
    for _epoch in range(3):
        for i in range(len(table)):
            a, b = plain[i], kept[i]
            _assert_same_item(a, b)
    assert calls == list(range(len(table)))  # once per row over three epochs


def test_crop_views_in_memory_are_the_views_without_it(tmp_path, monkeypatch) -> None:
    table = small_subject_table(tmp_path / "img", 6, size=(160, 120))
    crop = CropConfig(size=(64, 64))
    plain = ViewDataset(table, crop=crop, seed=3)
    kept = ViewDataset(table, crop=crop, seed=3, cache=MEMORY)
    calls = _counting(kept, monkeypatch)
    for k in range(24):  # four epochs of six rows: views of every scale the sampler draws
        a, b = plain[k], kept[k]
        _assert_same_item(a, b)
    assert sorted(calls) == list(range(6))  # each frame decoded once, at full size
    assert not (tmp_path / MEMORY).exists()


def test_auto_cache_is_memory_without_workers_and_none_with_them(lips_dir, tmp_path, caplog) -> None:
    import torch

    from cnnkit import read_annotations
    from cnnkit.config import TrainConfig
    from cnnkit.data.augment import Augment
    from cnnkit.train.distributed import DistContext
    from cnnkit.train.job import TrainingJob
    from cnnkit.train.resolve import resolve_job

    table = read_annotations(lips_dir / "via_project.json").subset(range(0, 40, 4))
    job = TrainingJob(model="resnet18", train=table, val=None, data=DataConfig(size=(64, 48)),
                      cfg=TrainConfig(epochs=1), augment=Augment(), out_dir=tmp_path)
    with caplog.at_level("INFO", logger="cnnkit"):
        resolved = resolve_job(job, torch.device("cpu"), DistContext(), started=0.0)
    assert resolved.data.cache == MEMORY and "data.cache: auto -> memory" in caplog.text
    workers = dataclasses.replace(job, data=dataclasses.replace(job.data, workers=2))
    assert resolve_job(workers, torch.device("cpu"), DistContext(), started=0.0).data.cache is None
    folder = dataclasses.replace(job, data=dataclasses.replace(job.data, cache=str(tmp_path / "c")))
    assert resolve_job(folder, torch.device("cpu"), DistContext(), started=0.0).data.cache == str(tmp_path / "c")
    assert DataConfig().cache == "auto"
