"""Where a single-process loop meets scale-out: torchrun setup, who writes files, collectives.

Training (``train/``) and prediction over a video archive (``infer/archive.py``) ask a
``DistContext`` instead of branching on ranks themselves. A single process is
world size 1, rank 0, and every method is then a no-op or an identity. Under ``torchrun``
:meth:`DistContext.from_env` reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (and the rendezvous
variables ``MASTER_ADDR``/``MASTER_PORT``), starts the process group (``nccl`` on CUDA,
``gloo`` on CPU) and pins the process to ``cuda:LOCAL_RANK``.

Convention:
    Every collective method (``reduce_sum``, ``gather``, ``barrier``, ``main_first``) must be
    called by ALL ranks in the same order, or the job waits until the process-group timeout
    (``CNNKIT_DIST_TIMEOUT_S``, default 600 s). torchrun ends the remaining ranks as soon as
    one exits with an error, so a failure normally ends the job within seconds.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist
from torch import nn

from cnnkit.engine.device import resolve_device
from cnnkit.errors import ConfigError

log = logging.getLogger("cnnkit")

TIMEOUT_ENV = "CNNKIT_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600.0
# Waiting for rank 0 to build a decoded cache can take hours on a large table (and ranks that
# finished their share of a video archive wait for the slowest); those waits get a long-timeout
# group of their own, so the short timeout above still bounds every other hang.
CACHE_WAIT = timedelta(hours=24)


def _env_int(name: str) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r}: expected an integer (set by torchrun)") from None


def _timeout(timeout_s: float | None) -> timedelta:
    if timeout_s is None:
        raw = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
        try:
            timeout_s = float(raw)
        except ValueError:
            raise ConfigError(f"{TIMEOUT_ENV}={raw!r}: expected seconds as a number, e.g. 600") from None
    if timeout_s <= 0:
        raise ConfigError(f"process-group timeout must be > 0 seconds. Received: {timeout_s}")
    return timedelta(seconds=timeout_s)


@dataclass(frozen=True)
class DistContext:
    """Rank, world size and device of this process, and the collectives the loop needs.

    Attributes:
        rank: global rank (0 = the main process, which alone writes files and logs).
        world_size: number of processes; 1 = no process group, every method is local.
        local_rank: rank on this node (picks ``cuda:local_rank``).
        device: the device this rank trains on under torchrun; None = decide from the config.
        owns_group: True when ``from_env`` started the process group (``close`` ends it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Only the main process writes checkpoints, logs, plots and progress bars."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, device: str = "auto", *, timeout_s: float | None = None) -> DistContext:
        """The context torchrun describes in the environment; world size 1 outside torchrun.

        Args:
            device: the config's device ('auto', 'cpu', 'cuda', ...). Under torchrun a CUDA
                device becomes ``cuda:LOCAL_RANK`` (an explicit index is ignored) with ``nccl``;
                anything else uses ``gloo``.
            timeout_s: process-group timeout; None = ``$CNNKIT_DIST_TIMEOUT_S`` or 600 s.

        A process group started elsewhere (``init_process_group`` by the caller) is reused
        and left open (``owns_group`` False).
        """
        if tdist.is_available() and tdist.is_initialized():
            return cls(tdist.get_rank(), tdist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)),
                       _rank_device(device, int(os.environ.get("LOCAL_RANK", 0))), owns_group=False)
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ or _env_int("WORLD_SIZE") <= 1:
            return cls()
        rank, world, local = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK")
        dev = _rank_device(device, local)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)  # before init, so NCCL and object collectives use this GPU
        backend = "nccl" if dev.type == "cuda" else "gloo"
        store = _attempt_store(_timeout(timeout_s))
        tdist.init_process_group(backend=backend, timeout=_timeout(timeout_s),
                                 device_id=dev if dev.type == "cuda" else None,
                                 **({} if store is None else {"store": store, "rank": rank, "world_size": world}))
        return cls(rank, world, local, dev, owns_group=True)

    def close(self) -> None:
        """End the process group if this context started it (once per job, at the very end)."""
        if self.owns_group and tdist.is_initialized():
            # Seen twice in CI: a rank aborting at exit ("terminate called without an active
            # exception") after a resumed run. destroy_process_group only drops the registry's
            # reference; anything still in a reference cycle that holds gloo state is torn down at
            # interpreter finalization instead, where that can abort. Collecting garbage first ended
            # it: the resume test under two busy-loop processes aborted 2 times in 12 without this
            # line and 0 in 28 with it. Meet first, so no peer still uses the pairs.
            gc.collect()
            tdist.barrier()
            tdist.destroy_process_group()

    # -- collectives (identity in one process) --------------------------------------------
    def reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum a tensor over processes; returns a new tensor (the input is left as it was)."""
        if not self.is_distributed:
            return tensor.detach().clone()
        out = tensor.detach().to(self._comm_device(), copy=True)  # NCCL reduces on the GPU only
        tdist.all_reduce(out, op=tdist.ReduceOp.SUM)
        return out.to(tensor.device)

    def reduce_numbers(self, *values: float) -> list[float]:
        """Sum python numbers over processes (in float64)."""
        return [float(v) for v in self.reduce_sum(torch.tensor(values, dtype=torch.float64)).tolist()]

    def gather(self, obj: Any, *, group: Any = None) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank; ``group``: see :meth:`patient`."""
        if not self.is_distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        tdist.all_gather_object(out, obj, group=group)
        return out

    def barrier(self) -> None:
        if self.is_distributed:
            tdist.barrier()

    @contextlib.contextmanager
    def patient(self, timeout: timedelta = CACHE_WAIT) -> Iterator[Any]:
        """A gloo group whose collectives wait up to ``timeout`` (24 h), for waits that may be long.

        E.g. ranks that finished their share of an archive wait for the slowest one. Yields the group
        to pass to :meth:`gather` (None in one process). Made and ended by all ranks together.
        """
        if not self.is_distributed:
            yield None
            return
        group = tdist.new_group(backend="gloo", timeout=timeout)
        yield group
        tdist.destroy_process_group(group)

    @contextlib.contextmanager
    def main_first(self, enabled: bool = True) -> Iterator[None]:
        """Rank 0 runs the body first (e.g. builds the decoded cache); the others then run it.

        The wait uses a gloo group with a 24 h timeout, so a long cache build does not trip
        the normal timeout; if rank 0 fails, torchrun ends the waiting ranks.
        """
        if not (enabled and self.is_distributed):
            yield
            return
        group = tdist.new_group(backend="gloo", timeout=CACHE_WAIT)
        if not self.is_main:
            tdist.barrier(group=group)
        yield
        if self.is_main:
            tdist.barrier(group=group)
        tdist.destroy_process_group(group)

    # -- per-rank pieces --------------------------------------------------------------------
    def rank_seed(self, seed: int) -> int:
        """``seed`` on rank 0 (so world size 1 repeats a single-process run); a distinct seed elsewhere."""
        if self.rank == 0:
            return int(seed)
        return int(np.random.SeedSequence([int(seed) % 2**63, self.rank]).generate_state(1, dtype=np.uint64)[0] >> 1)

    def wrap(self, model: nn.Module, *, sync_bn: bool = False) -> nn.Module:
        """``DistributedDataParallel(model)`` (optionally with SyncBatchNorm); ``model`` itself in one process.

        ``model`` must already be on its device. With ``sync_bn`` the BatchNorm layers of
        ``model`` are replaced IN the module (the caller keeps training and saving ``model``).
        """
        if not self.is_distributed:
            return model
        device = next(model.parameters(), torch.empty(0)).device
        if sync_bn:
            if device.type == "cpu":
                raise ConfigError("sync_bn: SyncBatchNorm needs GPUs (PyTorch has no CPU version). "
                                  "Set train.sync_bn: false on CPU, or train on CUDA.")
            _convert_bn_in_place(model)
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)

    def _comm_device(self) -> torch.device:
        if self.is_distributed and tdist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")


def _attempt_store(timeout: timedelta) -> Any:
    """The rendezvous store under a prefix of its own for this torchrun attempt; None: torchrun's default.

    torchrun (>= 2.5) lends its workers the store it used for rendezvous, and keeps it across
    ``--max-restarts`` restarts. The restarted workers then found the killed attempt's addresses
    under the same keys and gloo tried to connect to dead processes ("connectFullMesh failed ...
    Connection refused"; pytorch/pytorch#135712). A prefix per attempt keeps them apart. It is
    used only when every worker sits under one agent (one node), where the restart count is the
    same for all; across nodes set ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` for torchrun instead
    (docs/RELIABILITY.md).
    """
    env = os.environ
    attempt = env.get("TORCHELASTIC_RESTART_COUNT", "0")
    one_node = env.get("LOCAL_WORLD_SIZE") == env.get("WORLD_SIZE")
    if env.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or attempt == "0" or not one_node:
        return None
    store = tdist.TCPStore(env["MASTER_ADDR"], _env_int("MASTER_PORT"), is_master=False, timeout=timeout)
    return tdist.PrefixStore(f"cnnkit/attempt_{attempt}/", store)


def _rank_device(name: str, local_rank: int) -> torch.device:
    dev = resolve_device(name)
    return torch.device("cuda", local_rank) if dev.type == "cuda" else dev


def _convert_bn_in_place(model: nn.Module) -> None:
    """Swap every BatchNorm child for a SyncBatchNorm with the same weights and statistics."""
    for name, child in list(model.named_children()):
        converted = nn.SyncBatchNorm.convert_sync_batchnorm(child)
        if converted is not child:
            setattr(model, name, converted)


@contextlib.contextmanager
def distributed(dist: DistContext | None = None, device: str = "auto") -> Iterator[DistContext]:
    """``dist`` as given, or ``DistContext.from_env(device)``, closed at a normal end if started here."""
    ctx = DistContext.from_env(device) if dist is None else dist
    yield ctx
    # Not in a ``finally``: after an error this rank just exits and torchrun ends the others;
    # tearing down a group whose peers are mid-collective can itself block (NCCL).
    if dist is None:
        ctx.close()


SINGLE = DistContext()
