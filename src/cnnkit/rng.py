"""Random-number helpers. Library code takes generators as arguments; only the CLI and the
seed-compatibility layer seed the global RNGs (``seed_global``)."""

from __future__ import annotations

import random

import numpy as np
import torch


def make_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed``."""
    return torch.Generator().manual_seed(int(seed))


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: derive numpy/random seeds from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def seed_global(seed: int) -> None:
    """Seed python, numpy and torch global RNGs. Call only from entry points (CLI, compat)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
