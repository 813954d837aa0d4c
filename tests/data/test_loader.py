"""make_loader / EpochSampler: order is a pure function of (seed, epoch); workers match."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from cnnkit.data.dataset import TableDataset
from cnnkit.data.loader import EpochSampler, make_loader
from cnnkit.data.table import AnnotationTable
from cnnkit.errors import DataError


class _Range(Dataset[int]):
    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int) -> int:
        return i


def _epoch(loader: torch.utils.data.DataLoader, epoch: int) -> list[int]:  # type: ignore[type-arg]
    loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
    return [int(x) for batch in loader for x in batch]


def test_order_depends_only_on_seed_and_epoch() -> None:
    a = make_loader(_Range(), batch_size=3, shuffle=True, seed=7)
    b = make_loader(_Range(), batch_size=3, shuffle=True, seed=7)
    e2 = _epoch(a, 2)
    _epoch(b, 0), _epoch(b, 1)
    assert _epoch(b, 2) == e2  # resume at epoch 2 == run that went through 0 and 1
    assert _epoch(a, 0) != e2 and sorted(e2) == list(range(10))
    assert _epoch(make_loader(_Range(), batch_size=3, shuffle=True, seed=8), 2) != e2


def test_no_shuffle_is_sequential_and_drop_last() -> None:
    loader = make_loader(_Range(), batch_size=4, shuffle=False, drop_last=True)
    assert _epoch(loader, 5) == list(range(8))


def test_sampler_interface() -> None:
    s = EpochSampler(4, shuffle=True, seed=0)
    assert len(s) == 4
    s.set_epoch(1)
    assert list(s) == np.random.default_rng([0, 1]).permutation(4).tolist()
    with pytest.raises(DataError, match="set_epoch"):
        make_loader(_Range(), batch_size=2, shuffle=False, sampler=[0, 1])  # type: ignore[arg-type]


def test_loader_settings() -> None:
    loader = make_loader(_Range(), batch_size=2, shuffle=True, pin_memory=False)
    assert loader.pin_memory is False and loader.num_workers == 0
    assert loader.worker_init_fn is not None and loader.worker_init_fn.__name__ == "seed_worker"
    assert isinstance(loader.sampler, EpochSampler)


def test_workers_give_the_same_batches(tmp_path: Path) -> None:
    images = []
    for i in range(6):
        Image.new("L", (12, 10), 40 * i).save(tmp_path / f"{i}.png")
        images.append(str(tmp_path / f"{i}.png"))
    ds = TableDataset(AnnotationTable(pd.DataFrame({"image": images})), size=(6, 5), grayscale=True)
    single = make_loader(ds, batch_size=2, shuffle=True, seed=3)
    multi = make_loader(ds, batch_size=2, shuffle=True, seed=3, workers=2, pin_memory=False)
    for epoch in (0, 1):
        single.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
        multi.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
        a = [(b["index"].tolist(), b["image"][:, 0, 0, 0].tolist()) for b in single]
        b = [(b["index"].tolist(), b["image"][:, 0, 0, 0].tolist()) for b in multi]
        assert a == b and all(v == [40 * i for i in idx] for idx, v in a)


@pytest.mark.parametrize("pad", [True, False])
def test_rank_shards_cover_every_row_once_per_epoch(pad: bool) -> None:
    shards = [EpochSampler(7, shuffle=True, seed=4, rank=r, world_size=3, pad=pad) for r in range(3)]
    for s in shards:
        s.set_epoch(2)
    rows = [list(s) for s in shards]
    full = EpochSampler(7, shuffle=True, seed=4)
    full.set_epoch(2)
    assert sorted({i for r in rows for i in r}) == list(range(7))
    assert [len(r) for r in rows] == ([3, 3, 3] if pad else [3, 2, 2])
    assert [r[0] for r in rows] == list(full)[:3]  # rank r starts at position r of the shared order
