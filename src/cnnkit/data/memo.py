"""Decoded images kept in memory after their first decode: the default ``data.cache`` (``memory``).

Training and validation read every row once an epoch, and on small sets decoding is a large share of an
epoch once the network step is fast (bf16 on the CPU): v0.2's validation pass on lips-via spent 4.8 s
of an 18.6 s epoch decoding its 108 PNGs, and the decoded cache gave 1.2x an epoch on top of bf16 +
channels-last on lips-via and faces68 (docs/PERFORMANCE.md, "Training step candidates"). The on-disk
cache (``data.cache: <folder>``) does the same for sets of any size and across runs; this one needs
no folder and no first pass: rows are kept as they are first decoded, up to a byte budget per
dataset, and decoded each time beyond it. The pixels are the decoder's, so a run reads exactly what
it reads without the memo.

Each process holds its own memo: with loader workers (each of which would hold a copy) the
default is no cache (``cnnkit.train.resolve``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import numpy as np

#: ``data.cache`` value for this cache (a folder of that name is written ``./memory``).
MEMORY = "memory"
#: Largest budget of one dataset's memo; smaller on machines with little memory (``memo_budget``).
MAX_BUDGET_BYTES = 2 << 30

Row = TypeVar("Row", bound=tuple)


def memo_budget(max_bytes: int = MAX_BUDGET_BYTES) -> int:
    """Bytes one dataset may keep: ``max_bytes``, or an eighth of the machine's memory when that is less."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not POSIX: the fixed budget
        return max_bytes
    return int(min(max_bytes, total // 8))


class DecodedMemo:
    """Row index -> its decoded (pixels, geometry), kept while the budget lasts; pickles with what it holds."""

    def __init__(self, budget_bytes: int | None = None) -> None:
        self.budget = memo_budget() if budget_bytes is None else int(budget_bytes)
        self.rows: dict[int, tuple[np.ndarray, object]] = {}
        self.bytes = 0

    def get(self, i: int, decode: Callable[[], Row]) -> Row:
        """Row ``i`` as ``decode()`` returns it: decoded now (and kept if it fits) or as kept."""
        kept = self.rows.get(i)
        if kept is not None:
            return kept  # type: ignore[return-value]
        row = decode()
        size = int(row[0].nbytes)
        if self.bytes + size <= self.budget:  # items are copied out of it (CHW tensors, batches stacked)
            self.rows[i] = row
            self.bytes += size
        return row
