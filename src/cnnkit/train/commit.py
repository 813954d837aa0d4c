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
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from cnnkit.atomic import atomic_write_bytes, atomic_write_text, remove_stale_temps
from cnnkit.config import TrainConfig
from cnnkit.errors import CheckpointError, ConfigError
from cnnkit.io.checkpoint import ModelSnapshot, load_state, write_model, write_state
from cnnkit.io.meta import CheckpointMeta
from cnnkit.io.run_folder import (
    BEST,
    INTERRUPTED,
    LAST,
    METRICS,
    OUTPUTS,
    RESULTS,
    RUN_FILES,
    SETTINGS,
    STATE,
    RunFolder,
)

log = logging.getLogger("cnnkit")

#: Settings a resume may change: how long, where (and so in which arithmetic) and how verbosely the same
#: run continues.
FREE_TRAIN_KEYS = ("epochs", "steps", "device", "precision", "quiet", "plots", "compile", "channels_last",
                   "checkpoint_every", "log")


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


def clear_for_start(folder: Path, *, fresh: bool) -> list[str]:
    """Remove what a new start must not keep; returns the names removed.

    Always: temporary files a killed write left, and ``interrupted`` weights (the continued run
    supersedes them). For a fresh start also the previous or unfinished run's files and the results
    made from them (``check_unused`` refused the folder before, unless it was told to replace them);
    a resumed run keeps ``last.safetensors`` (the end of the earlier run) until it writes its own.
    """
    removed = remove_stale_temps(folder, RUN_FILES)
    for name in (*RUN_FILES, *RESULTS) if fresh else (INTERRUPTED,):
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
        left = RunFolder(run_dir).present()
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


def run_identity(cfg: TrainConfig, meta: CheckpointMeta, model: nn.Module, rows: Mapping[str, int]) -> str:
    """What makes two runs the same run (JSON): the model, the settings a resume must keep, data and rows."""
    make_config: Any = getattr(model, "config", None)
    config = make_config() if callable(make_config) else {"module": type(model).__name__}
    ident = {"model": config, **{f"train.{k}": v for k, v in cfg.to_dict().items() if k not in FREE_TRAIN_KEYS},
             **{f"data.{k}": v for k, v in meta.identity().items()},
             **{f"rows.{k}": int(n) for k, n in rows.items()}}
    return json.dumps(ident, sort_keys=True, default=str)


def identity_differences(saved: str, now: str) -> list[str]:
    """``key: <in the folder> in the folder, <now> now`` for each setting that differs."""
    free = {f"train.{k}" for k in FREE_TRAIN_KEYS}  # folders made before a key became free still hold it
    old, new = ({k: v for k, v in json.loads(text).items() if k not in free} for text in (saved, now))
    return [f"{key}: {_short(old.get(key, '(not set)'))} in the folder, {_short(new.get(key, '(not set)'))} now"
            for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)]


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- before a run writes to its folder ------------------------------------------------------------
OVERWRITE_HINT = "--overwrite (fit(..., overwrite=True))"


def check_not_inputs(out: Path, inputs: Iterable[Path]) -> None:
    """Refuse an output folder where a file the run writes is one of its inputs (the experiment file,
    an annotation or split file): cnnkit never writes over what it reads, with or without --overwrite."""
    read = {_resolved(p): Path(p) for p in inputs}
    for name in OUTPUTS:
        hit = read.get(_resolved(out / name))
        if hit is not None:
            raise ConfigError(f"output {out}: the run would write its {name} over {hit}, which this run reads. "
                              "Nothing was written; choose another output folder.")


def check_unused(out: Path, identity: str, *, overwrite: bool) -> None:
    """Before a start without resume: refuse a folder that holds a run's results, or files of a run's
    names that no run made, unless ``overwrite``; a start that committed nothing may be started again.

    A different run is named by its differences (``identity_differences``); the same run, finished or
    not, is not silently trained again from scratch: --resume continues it, --overwrite replaces it.
    """
    results = [n for n in (STATE, BEST, LAST, INTERRUPTED) if (out / n).exists()]
    strangers = [] if _made_by_a_run(out) else [n for n in OUTPUTS if (out / n).exists()]
    if overwrite and (results or strangers):
        log.warning(f"{out}: replacing the earlier run's files ({', '.join(results + strangers)}): overwrite")
    if overwrite or not (results or strangers):
        return
    if strangers:
        raise ConfigError(f"{out} holds {', '.join(strangers)}, which no cnnkit run made there (no run settings "
                          f"in it): the run would replace them. Nothing was written; choose another output folder, "
                          f"or {OVERWRITE_HINT} to replace them.")
    if not (out / STATE).is_file():
        raise ConfigError(f"{out} holds {', '.join(results)} of an earlier run (its {STATE} is gone, so it cannot "
                          f"be resumed). Nothing was replaced; choose another output folder, or {OVERWRITE_HINT}.")
    saved = load_state(out / STATE, mmap=True)
    saved_identity = saved["extra"].get("identity")
    differences = identity_differences(saved_identity, identity) if saved_identity else [
        "written by an earlier cnnkit, so its settings cannot be compared"]
    if differences:
        raise ConfigError(f"{out} holds a different run ({'; '.join(differences)}). Nothing was replaced; choose "
                          f"another output folder, or {OVERWRITE_HINT} to replace that run.")
    how = "finished" if (out / LAST).is_file() else "stopped"
    raise ConfigError(f"{out} already holds this run, {how} after epoch {int(saved['epoch'])}. Nothing was "
                      f"replaced: --resume (resume=True) continues it (give more train.epochs to train longer), "
                      f"{OVERWRITE_HINT} trains it again from scratch, or choose another output folder.")


def _made_by_a_run(out: Path) -> bool:
    """The folder's settings.json is a run's (a file of that name could be anybody's)."""
    path = out / SETTINGS
    try:
        settings = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(settings, dict) and {"model", "train", "data"} <= settings.keys()


def _resolved(path: Path | str) -> Path:
    return Path(path).expanduser().resolve()


#: Free space a start needs in the output folder, in copies of the weights: a commit's state (the
#: weights and up to two optimizer moments), best and last.
COMMIT_WEIGHT_COPIES = 5


def preflight(out: Path, weight_bytes: int) -> None:
    """A probe write in ``out`` (read-only folder, permissions, full disk) and room for one commit, before
    anything is trained: ``ConfigError`` naming the folder otherwise."""
    probe = out / ".cnnkit-probe"
    try:
        atomic_write_bytes(probe, b"\0" * 4096)
        probe.unlink()
        free = shutil.disk_usage(out).free
    except OSError as err:
        raise ConfigError(f"output {out}: cannot write there ({err.strerror}). Nothing was trained; choose another "
                          f"output folder, or fix this one (permissions, free space).") from None
    need = COMMIT_WEIGHT_COPIES * weight_bytes
    if free < need:
        raise ConfigError(f"output {out}: {free / 1e6:,.0f} MB free, and one commit of this model needs about "
                          f"{need / 1e6:,.0f} MB ({COMMIT_WEIGHT_COPIES} x its weights: the training state, best "
                          f"and last). Nothing was trained; free some space or choose another output folder.")
