"""DataLoaders with seeded per-epoch order, worker seeding and pinned memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sized
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cnnkit.errors import DataError
from cnnkit.rng import make_generator, seed_worker


class EpochSampler(Sampler[int]):
    """Row order for one epoch, a pure function of (seed, epoch); DistributedSampler's interface.

    Call :meth:`set_epoch` before each epoch (as with ``DistributedSampler``); resuming at
    epoch ``e`` then replays exactly the order a run that never stopped would have used.

    Under DDP each rank takes every ``world_size``-th position of the SAME (seed, epoch)
    order, starting at ``rank``. With ``pad`` (training) the order is first extended with
    its own first rows to a multiple of ``world_size``, as ``DistributedSampler`` does, so
    every rank runs the same number of steps; ``real_count`` says how many of this rank's
    rows are not such repeats (they are always the last ones). Without ``pad``
    (evaluation) ranks get unequal shards and no row twice.

    Example:
        >>> s = EpochSampler(5, shuffle=True, seed=1); s.set_epoch(3); a = list(s)
        >>> s2 = EpochSampler(5, shuffle=True, seed=1); s2.set_epoch(3); a == list(s2)
        True
        >>> list(EpochSampler(3, shuffle=False, seed=0))
        [0, 1, 2]
        >>> [list(EpochSampler(5, shuffle=False, rank=r, world_size=2)) for r in (0, 1)]
        [[0, 2, 4], [1, 3, 0]]
    """

    def __init__(
        self, n: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1, pad: bool = True
    ) -> None:
        if n < 0:
            raise DataError(f"EpochSampler needs n >= 0 rows. Received: n={n}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise DataError(
                f"EpochSampler needs 0 <= rank < world_size. Received: rank={rank}, world_size={world_size}"
            )
        self.n, self.shuffle, self.seed, self.epoch = int(n), bool(shuffle), int(seed), 0
        self.rank, self.world_size, self.pad = int(rank), int(world_size), bool(pad)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def full_order(self) -> np.ndarray:
        """This epoch's order of all rows (every rank computes the same), (n,) int64."""
        if not self.shuffle:
            return np.arange(self.n, dtype=np.int64)
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.n)

    def order(self) -> np.ndarray:
        """This rank's row positions for this epoch, (len(self),) int64."""
        order = self.full_order()
        if self.world_size == 1:
            return order
        if self.pad and self.n:
            extra = len(self) * self.world_size - self.n
            order = np.concatenate([order, np.resize(order, extra)])
        return order[self.rank :: self.world_size]

    @property
    def real_count(self) -> int:
        """How many of this rank's rows are not padding repeats."""
        return len(range(self.rank, self.n, self.world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.order().tolist())

    def __len__(self) -> int:
        if self.pad and self.world_size > 1:
            return -(-self.n // self.world_size)
        return self.real_count


def make_loader(
    dataset: Dataset[object],
    *,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    workers: int = 0,
    drop_last: bool = False,
    sampler: Sampler[int] | None = None,
    pin_memory: bool | None = None,
    prefetch_factor: int = 2,
    persistent_workers: bool = True,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> DataLoader[object]:
    """A DataLoader over ``dataset`` whose order per epoch depends only on (seed, epoch).

    Args:
        dataset: e.g. a :class:`cnnkit.data.dataset.TableDataset` (must pickle for workers).
        batch_size: rows per batch.
        shuffle: shuffle with :class:`EpochSampler` (ignored when ``sampler`` is given).
        seed: seeds the order and the workers' base seed (explicit ``torch.Generator``).
        workers: worker processes; 0 decodes in the main process.
        drop_last: drop the last incomplete batch.
        sampler: e.g. a ``DistributedSampler``; it must offer ``set_epoch`` too.
        pin_memory: None -> True when CUDA is available.
        prefetch_factor, persistent_workers: used only with ``workers > 0``.
        collate_fn: None = torch's default (stack tensors); e.g. ``data.views.collate_frames``.

    Memory: O(batch_size x workers x prefetch_factor) decoded images, whatever the table size.
    Call ``loader.sampler.set_epoch(epoch)`` before each epoch.
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1. Received: {batch_size}")
    if workers < 0:
        raise DataError(f"workers must be >= 0. Received: {workers}")
    if sampler is None:
        sampler = EpochSampler(len(dataset) if isinstance(dataset, Sized) else 0, shuffle=shuffle, seed=seed)
    elif not hasattr(sampler, "set_epoch"):
        raise DataError(f"sampler {type(sampler).__name__} has no set_epoch(epoch); exact resume needs one")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available() if pin_memory is None else bool(pin_memory),
        prefetch_factor=prefetch_factor if workers > 0 else None,
        persistent_workers=bool(persistent_workers) and workers > 0,
        worker_init_fn=seed_worker,
        collate_fn=collate_fn,
        generator=make_generator(seed),
    )
