"""The run folder's files: when an epoch is committed, what a commit writes, what a resume may continue.

A commit writes, in this order, on a background thread while the next epoch trains:
``best.safetensors`` (only when the selected metric improved since the last commit),
``metrics.csv``, then ``last.state.pt``: the single commit point. The state holds the raw
weights (and the weight average with ``ema``), the optimizer, the schedule and torch's RNG,
so the weights are written once per epoch, twice when ``best`` changed. ``last.safetensors``
is written once, when the run ends (a resumed run keeps the earlier end's file until then);
while it runs, the last committed weights are in the state and a ``--resume`` continues
from them. A kill at any moment leaves the previous
commit intact: every file is written atomically and the state is written last.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from cnnkit.atomic import atomic_write_text, remove_stale_temps
from cnnkit.config import TrainConfig
from cnnkit.errors import CheckpointError
from cnnkit.io.checkpoint import ModelSnapshot, write_model, write_state

log = logging.getLogger("cnnkit")

STATE, LAST, BEST, METRICS, INTERRUPTED = (
    "last.state.pt", "last.safetensors", "best.safetensors", "metrics.csv", "interrupted.safetensors")
RUN_FILES = (METRICS, BEST, STATE, LAST, INTERRUPTED)
#: Settings a resume may change: how long, where and how verbosely the same run continues.
FREE_TRAIN_KEYS = ("epochs", "steps", "device", "quiet", "plots", "compile", "channels_last", "checkpoint_every",
                   "log")


def commit_due(every: int | str, epochs_done: int, epochs: int, last_commit_s: float,
               now_s: float | None = None) -> bool:
    """Whether the epoch just finished is committed: the last of ``epochs`` always, else per ``every``
    (``train.checkpoint_every``: epochs, or minutes since ``last_commit_s`` as 'Mmin').

    Example:
        >>> [e for e in range(1, 11) if commit_due(3, e, 10, 0.0)]
        [3, 6, 9, 10]
    """
    if epochs_done >= epochs:
        return True
    if isinstance(every, int):
        return epochs_done % every == 0
    minutes = float(every.removesuffix("min"))
    return (time.monotonic() if now_s is None else now_s) - last_commit_s >= 60.0 * minutes


def commit_job(out: Path, best: ModelSnapshot | None, metrics_csv: str, state: Mapping[str, Any],
               final: ModelSnapshot | None = None) -> Callable[[], None]:
    """The writes of one commit, in crash-safe order (the state last, ``last.safetensors`` after it)."""

    def job() -> None:
        if best is not None:
            write_model(out / BEST, best)
        atomic_write_text(out / METRICS, metrics_csv)
        write_state(out / STATE, state)
        if final is not None:  # the finished run's weights; equal to the state's, so it may come after it
            write_model(out / LAST, final)

    return job


def update_settings(out: Path, **values: Any) -> None:
    """Replace top-level keys of the run folder's settings.json (atomically; a missing file is left alone)."""
    path = out / "settings.json"
    if path.is_file():
        atomic_write_text(path, json.dumps({**json.loads(path.read_text()), **values}, indent=2, default=str))


def leftovers(folder: Path) -> list[str]:
    """The run files present in ``folder`` (sorted by write order)."""
    return [name for name in RUN_FILES if (folder / name).exists()]


def clear_for_start(folder: Path, *, fresh: bool) -> list[str]:
    """Remove what a new start must not keep; returns the names removed.

    Always: temporary files a killed write left, and ``interrupted`` weights (the continued run
    supersedes them). For a fresh start also the previous or unfinished run's files; a resumed
    run keeps ``last.safetensors`` (the end of the earlier run) until it writes its own.
    """
    removed = remove_stale_temps(folder, RUN_FILES)
    for name in RUN_FILES if fresh else (INTERRUPTED,):
        path = folder / name
        if path.exists():
            path.unlink()
            removed.append(name)
    return removed


def check_fresh_start(run_dir: Path, out: Path, *, log_line: bool) -> None:
    """Keras' BackupAndRestore: nothing committed in the output folder means a fresh start, said in one
    line; a resume from another folder without a state is an error."""
    if run_dir.resolve() != out.resolve():
        raise CheckpointError(f"cannot resume from {run_dir}: it holds no {STATE} (no epoch was committed there). "
                              f"Point resume= at a run folder that has one, or use resume=True.")
    if log_line:
        left = leftovers(run_dir)
        note = f"; clearing what an unfinished start left: {', '.join(left)}" if left else ""
        log.info(f"nothing to resume in {run_dir} (no epoch committed yet): starting from epoch 1{note}")


def check_ranks_agree(seen: list[bool], state_path: Path) -> None:
    """Every rank found the state file, or none did (else the folder is not shared between nodes)."""
    if len(set(seen)) > 1:
        raise CheckpointError(f"cannot resume: ranks {[r for r, f in enumerate(seen) if f]} see {state_path} and "
                              f"the others do not. Put the output folder on a file system all nodes share.")


def check_same_run(run_dir: Path, saved: str | None, identity: str) -> None:
    """Refuse a state of a different run, naming each difference (states without an identity pass)."""
    differences = [] if saved is None else identity_differences(saved, identity)
    if differences:
        raise CheckpointError(f"cannot resume {run_dir}: it holds a different run ({'; '.join(differences)}). "
                              f"Resume with that run's settings, or choose another output folder.")


def run_identity(cfg: TrainConfig, meta: Mapping[str, Any], model: nn.Module, rows: Mapping[str, int]) -> str:
    """What makes two runs the same run (JSON): the model, the settings a resume must keep, data and rows."""
    make_config: Any = getattr(model, "config", None)
    config = make_config() if callable(make_config) else {"module": type(model).__name__}
    ident = {"model": config, **{f"train.{k}": v for k, v in cfg.to_dict().items() if k not in FREE_TRAIN_KEYS},
             **{f"data.{k}": v for k, v in meta.items() if k not in ("format_version", "epoch")},
             **{f"rows.{k}": int(n) for k, n in rows.items()}}
    return json.dumps(ident, sort_keys=True, default=str)


def identity_differences(saved: str, now: str) -> list[str]:
    """``key: <in the folder> in the folder, <now> now`` for each setting that differs."""
    old, new = json.loads(saved), json.loads(now)
    return [f"{key}: {_short(old.get(key, '(not set)'))} in the folder, {_short(new.get(key, '(not set)'))} now"
            for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)]


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
