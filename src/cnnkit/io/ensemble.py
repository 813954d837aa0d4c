"""Ensembles on disk: the manifest ``ensemble.json`` and how a model argument is found.

An ensemble run folder (``train.ensemble: N``, :mod:`cnnkit.train.ensemble`)::

    runs/x/
      ensemble.json         the manifest (below); what predict, evaluate, suggest, export and report take
      member-1/ ... member-N/   each a complete ordinary run folder (best.safetensors, last.state.pt, ...)

The manifest (JSON)::

    {"format": "cnnkit-ensemble", "version": 1,
     "varies": "seed",                       how the members differ
     "members": [{"folder": "member-1", "model": "member-1/best.safetensors", "seed": 0, "done": true,
                  "views": "whole-frame"}, ...],
     "calibration": {...} or null,           ErrorCalibration.to_dict(): signal -> expected error px
     "uncertainty": {...} or null}           how the calibration's signal was chosen, and its figures

Member paths are relative to the manifest's folder, so the folder can be moved or copied whole.
A model argument (:func:`find_model`) is a model file, an ``ensemble.json``, a folder holding one,
or a plain run folder (its ``best.safetensors``, else ``last.safetensors``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnkit.atomic import atomic_write_text
from cnnkit.errors import CheckpointError
from cnnkit.io.checkpoint import PathLike, read_meta
from cnnkit.io.meta import CheckpointMeta
from cnnkit.io.run_folder import CHECKPOINTS, ENSEMBLE, member_folder

__all__ = ["FORMAT", "MANIFEST", "VERSION", "EnsembleManifest", "ModelRef", "ensemble_meta", "find_model", "is_ensemble",
           "member_folder", "members_entry", "read_manifest", "read_model_meta", "write_manifest"]

MANIFEST = ENSEMBLE  # the file's name, as io/run_folder names it
FORMAT = "cnnkit-ensemble"
VERSION = 1
RUN_MODELS = CHECKPOINTS  # a plain run folder's model files, in the order a reader prefers them


@dataclass(frozen=True)
class EnsembleManifest:
    """An ``ensemble.json``: where the members are and what was measured on them (module docstring)."""

    path: Path  # the manifest file
    members: tuple[dict[str, Any], ...]
    varies: str = "seed"
    calibration: dict[str, Any] | None = None
    uncertainty: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # anything else, kept as written

    @property
    def files(self) -> list[Path]:
        """The members' model files, in member order."""
        return [self.path.parent / m["model"] for m in self.members]

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "varies": self.varies, "members": [dict(m) for m in self.members],
                "calibration": self.calibration, "uncertainty": self.uncertainty, **self.extra}


def write_manifest(manifest: EnsembleManifest) -> Path:
    """Write the manifest atomically (a crash leaves the previous one)."""
    atomic_write_text(manifest.path, json.dumps(manifest.to_dict(), indent=2, allow_nan=False, default=_plain))
    return manifest.path


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def read_manifest(path: PathLike) -> EnsembleManifest:
    """Read and check an ``ensemble.json``; members' files must exist.

    Raises:
        CheckpointError: unreadable, another format or version, no members, or a member file missing.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{p}: cannot read the ensemble manifest ({err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a cnnkit ensemble manifest (expected \"format\": \"{FORMAT}\")")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{p}: ensemble manifest version {data.get('version')!r}; this cnnkit reads version "
                              f"{VERSION}")
    members = data.get("members")
    if not isinstance(members, list) or not all(isinstance(m, dict) and isinstance(m.get("model"), str)
                                                for m in members):
        raise CheckpointError(f"{p}: 'members' must be a list of objects with a 'model' path")
    known = {"format", "version", "varies", "members", "calibration", "uncertainty"}
    manifest = EnsembleManifest(p, tuple(members), str(data.get("varies", "seed")), data.get("calibration"),
                                data.get("uncertainty"), {k: v for k, v in data.items() if k not in known})
    unfinished = [str(m.get("folder", m["model"])) for m in manifest.members if not m.get("done", True)]
    if unfinished:
        raise CheckpointError(f"{p}: member model file(s) not finished: {', '.join(unfinished)}; finish training "
                              "with `cnnkit train EXP --resume` (or use a finished member's folder alone)")
    missing = [str(f) for f in manifest.files if not f.is_file()]
    if missing:
        raise CheckpointError(f"{p}: member model file(s) missing: {', '.join(missing)}; copy the whole ensemble "
                              "folder")
    if not manifest.files:
        raise CheckpointError(f"{p}: lists no member")
    return manifest


@dataclass(frozen=True)
class ModelRef:
    """What a model argument names: one model file, or an ensemble (its manifest)."""

    file: Path | None = None
    manifest: EnsembleManifest | None = None

    @property
    def files(self) -> list[Path]:
        return self.manifest.files if self.manifest is not None else [self.file] if self.file is not None else []


def find_model(path: PathLike) -> ModelRef:
    """A model file, an ``ensemble.json``, a folder holding one, or a run folder -> :class:`ModelRef`.

    Raises:
        CheckpointError: nothing usable at ``path`` (the message says what was looked for).
    """
    p = Path(path)
    if p.is_dir():
        if (p / MANIFEST).is_file():
            return ModelRef(manifest=read_manifest(p / MANIFEST))
        for name in RUN_MODELS:
            if (p / name).is_file():
                return ModelRef(file=p / name)
        raise CheckpointError(f"{p}: a folder without {MANIFEST}, {' or '.join(RUN_MODELS)}; give a model file, an "
                              "ensemble folder or a finished run folder")
    if p.suffix.lower() == ".json":
        return ModelRef(manifest=read_manifest(p))
    if not p.is_file():
        raise CheckpointError(f"{p}: model file not found")
    return ModelRef(file=p)


def is_ensemble(path: PathLike) -> bool:
    """True when ``path`` is an ensemble manifest or a folder holding one (not checked further)."""
    p = Path(path)
    return (p / MANIFEST).is_file() if p.is_dir() else p.suffix.lower() == ".json" and p.is_file()


def read_model_meta(path: PathLike) -> CheckpointMeta:
    """The metadata of what ``path`` names (:func:`find_model`): a model file's, or an ensemble's first
    member's (:func:`ensemble_meta`)."""
    ref = find_model(path)
    if ref.manifest is None:
        assert ref.file is not None
        return read_meta(ref.file)
    return ensemble_meta(read_meta(ref.files[0]), ref.manifest)


def ensemble_meta(first: CheckpointMeta, manifest: EnsembleManifest) -> CheckpointMeta:
    """An ensemble's metadata: its first member's, without the member's own calibration, plus
    ``ensemble`` (the manifest as a dict, members' files absolute; kept in ``extra``: no model file holds it)."""
    return first.with_values(error_calibration=None, uncertainty_measured=None,
                             ensemble={**manifest.to_dict(), "files": [str(f) for f in manifest.files]})


def members_entry(folder: str, model: str, *, seed: int, done: bool, **extra: Any) -> dict[str, Any]:
    """One member's manifest entry."""
    return {"folder": folder, "model": model, "seed": int(seed), "done": bool(done), **extra}
