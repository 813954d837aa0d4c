"""Experiment files: one YAML file of settings -> validated sections -> tables -> ``fit``.

Layout (every section optional except ``data.source``)::

    model:   {spec: resnet18 | [[...], ...] | spec.yaml, head: gap, pretrained: weights.pth}
    data:    {source: via_project.json, images: folder, zip: images.zip, landmark_attribute: landmark,
              split: [0.8, 0.2] | {fractions: [...], seed: 0, group: person} | {column: split}
                     | {file: splits.csv, on: filename, column: split},
              val: other.csv, test: other.csv, flip_pairs: auto | [[left_eye, right_eye], ...],
              size: 160x120, grayscale: false, letterbox: false, cache: null, workers: 0,
              crop: auto | false | true | 256x256 | {size, scale, whole, ..., map_loss}}  (docs/resolution.md)
    train:   {epochs | steps | time: 10min, batch_size, lr, optimizer, schedule, loss, seed, device, ...}
    augment: {rotate: 15, scale: [0.9, 1.1], shift: 0.08, brightness: 0.2, contrast: 0.2, flip: false}
    evaluate: {tta_flip: false}   # how the test split is scored after training
    output:  runs/exp

Relative paths are resolved against the experiment file's folder. ``--set train.epochs=5``
overrides one key (the value is parsed as YAML).
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from cnnkit.config import DataConfig, TrainConfig, from_mapping
from cnnkit.data.augment import Augment
from cnnkit.data.sources import read_annotations
from cnnkit.data.table import AnnotationTable
from cnnkit.errors import ConfigError, DataError, check_keys, did_you_mean

if TYPE_CHECKING:
    from cnnkit.train.distributed import DistContext
    from cnnkit.train.job import TrainingJob


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-4`` as a string; people write learning rates that way, so read it as a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


SECTIONS = ("model", "data", "train", "augment", "evaluate", "output")
MODEL_KEYS = ("spec", "head", "pretrained")
EVALUATE_KEYS = ("tta_flip",)
SOURCE_KEYS = ("source", "images", "zip", "landmark_attribute", "split", "val", "test", "format",
               "image_column", "label_column", "unannotated", "flip_pairs")
DATA_KEYS = SOURCE_KEYS + tuple(f.name for f in dataclasses.fields(DataConfig))
TRAIN_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig))


@dataclass(frozen=True)
class Experiment:
    """A validated experiment file. ``settings`` is the resolved mapping saved in the run folder."""

    settings: dict[str, Any]
    base: Path
    name: str = ""  # the file, for messages

    @property
    def output(self) -> Path:
        return self._path(self.settings.get("output", "runs/exp"))

    def _path(self, value: str | Path) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base / p

    def data_config(self) -> DataConfig:
        data = {k: v for k, v in self.settings["data"].items() if k not in SOURCE_KEYS}
        if data.get("cache"):
            data["cache"] = str(self._path(data["cache"]))
        return from_mapping(DataConfig, data, where=self.name)

    def train_config(self) -> TrainConfig:
        return from_mapping(TrainConfig, self.settings.get("train") or {}, where=self.name)

    def augment(self) -> Augment | str:
        """The ``augment:`` section; absent -> 'auto' (fit's default for the task), ``null`` or ``{}`` -> none."""
        if "augment" not in self.settings:
            return "auto"
        return Augment.from_mapping(self.settings["augment"] or {})

    @property
    def tta_flip(self) -> bool:
        """``evaluate.tta_flip``: score the test split on image + mirror image (needs flip pairs)."""
        return bool((self.settings.get("evaluate") or {}).get("tta_flip", False))

    def model_spec(self) -> Any:
        spec = self.settings.get("model", {}).get("spec", "resnet18")
        if isinstance(spec, str) and spec.endswith((".yaml", ".yml", ".json")):
            return str(self._path(spec))
        return spec

    def job(self, tables: Mapping[str, AnnotationTable], *, quiet: bool = False,
            resume: bool = False, overwrite: bool = False) -> TrainingJob:
        """The training run this file describes, with its configs as built (nothing converted back)."""
        from cnnkit.train.job import TrainingJob
        from cnnkit.train.resolve import resolve_augment

        cfg = self.train_config()
        model = self.settings.get("model") or {}
        pretrained = model.get("pretrained")
        return TrainingJob(
            model=self.model_spec(), train=tables["train"], val=tables.get("val"), data=self.data_config(),
            cfg=dataclasses.replace(cfg, quiet=quiet or cfg.quiet), augment=resolve_augment(self.augment(), tables["train"]),
            out_dir=self.output, head=model.get("head"), pretrained=self._weights(pretrained),
            resume=resume, overwrite=overwrite, inputs=self.inputs(),
        )

    def inputs(self) -> tuple[Path, ...]:
        """The files this experiment reads (itself, its tables, split file, zip, spec, weights): a run
        never writes over them (``cnnkit.train.commit.check_not_inputs``)."""
        data, model = self.settings["data"], self.settings.get("model") or {}
        split = data.get("split")
        named = [data.get(k) for k in ("source", "val", "test", "zip")] + [model.get("spec"), model.get("pretrained")]
        named.append(split.get("file") if isinstance(split, Mapping) else None)
        paths = [self._path(v) for v in named if isinstance(v, str) and v]
        if self.name:
            paths.append(Path(self.name))
        return tuple(p for p in paths if p.is_file())

    def _weights(self, pretrained: Any) -> str | Path | None:
        """``model.pretrained``: a packaged name (``efficientnet_lite0``) as written, else a file path."""
        from cnnkit.model.pretrained import PACKAGED_WEIGHTS

        if not pretrained:
            return None
        return pretrained if str(pretrained) in PACKAGED_WEIGHTS else self._path(pretrained)

    def tables(self) -> dict[str, AnnotationTable]:
        """Read the sources and split them: {'train', 'val'?, 'test'?}."""
        data = self.settings["data"]
        table = self.read_source(data["source"])
        parts = _split(table, data.get("split"), self)
        for name in ("val", "test"):
            if data.get(name):
                parts[name] = self.read_source(data[name])
        return parts

    def read_source(self, source: str) -> AnnotationTable:
        data = self.settings["data"]
        opts = {k: data[k] for k in ("landmark_attribute", "format", "image_column", "label_column", "unannotated",
                                     "flip_pairs") if data.get(k) is not None}
        images = self._path(data["images"]) if data.get("images") else None
        zip_path = self._path(data["zip"]) if data.get("zip") else None
        return read_annotations(self._path(source), images=images, zip=zip_path, **opts)


def load_experiment(path: str | Path, overrides: Sequence[str] = ()) -> Experiment:
    """Read, override and validate an experiment file before any work starts."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: experiment file not found")
    try:
        raw = _yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a mapping with sections {', '.join(SECTIONS)}")
    settings = apply_overrides(dict(raw), overrides)
    validate_settings(settings, str(path))
    exp = Experiment(settings, path.resolve().parent, str(path))
    exp.data_config(), exp.train_config(), exp.augment()  # noqa: B018 - validate every section now
    return exp


def apply_overrides(settings: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``['train.epochs=5', 'data.size=96x96']`` applied to a deep copy of ``settings``."""
    out = copy.deepcopy(settings)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=5")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a section")
        node[parts[-1]] = _yaml(value)
    return out


def validate_settings(settings: Mapping[str, Any], where: str) -> None:
    """Unknown sections/keys (with suggestions), with the key path; the configs check types themselves."""
    check_keys(settings, SECTIONS, where=where, what="section")
    for section, allowed in (("model", MODEL_KEYS), ("data", DATA_KEYS), ("evaluate", EVALUATE_KEYS),
                             ("train", TRAIN_KEYS)):
        body = settings.get(section, {})
        if body is None:
            continue
        if not isinstance(body, Mapping):
            raise ConfigError(f"{where}: {section}: expected a mapping. Received: {body!r}")
        check_keys(body, allowed, where=where, section=section)
    data = settings.get("data") or {}
    if not data.get("source"):
        raise ConfigError(f"{where}: data.source is required (an annotation file or a folder of class folders)")
    tta = (settings.get("evaluate") or {}).get("tta_flip", False)
    if not isinstance(tta, bool):
        raise ConfigError(f"{where}: evaluate.tta_flip: expected true or false. Received: {tta!r}")


def _split(table: AnnotationTable, split: Any, exp: Experiment) -> dict[str, AnnotationTable]:
    if split is None:
        return {"train": table}
    if isinstance(split, Sequence) and not isinstance(split, str):
        split = {"fractions": list(split)}
    if not isinstance(split, Mapping):
        raise ConfigError(f"data.split: expected fractions or a mapping. Received: {split!r}")
    if "fractions" in split:
        parts = table.split(split["fractions"], seed=int(split.get("seed", 0)), group=split.get("group"))
        return dict(zip(("train", "val", "test"), parts, strict=False))
    if "column" in split:
        return _split_by_column(join_split_file(table, split, exp) if "file" in split else table, split["column"])
    raise ConfigError(f"data.split: give 'fractions' or 'column' (optionally with 'file'). Received: {dict(split)}")


def join_split_file(table: AnnotationTable, split: Mapping[Any, Any], exp: Experiment) -> AnnotationTable:
    """Join a split column from a CSV keyed by a path relative to the data folder (e.g. lips splits.csv)."""
    path = exp._path(split["file"])
    # YAML 1.1 reads a bare `on:` key as the boolean true; people write `on: filename`.
    on = split.get("on", split.get(True, "filename"))
    frame = pd.read_csv(path)
    if on not in frame.columns or split["column"] not in frame.columns:
        raise DataError(f"{path}: needs columns {on!r} and {split['column']!r}. Columns: {list(frame.columns)}")
    lookup = {str(k).replace("\\", "/"): v for k, v in zip(frame[on], frame[split["column"]], strict=True)}
    values = [_suffix_lookup(str(img).replace("\\", "/"), lookup) for img in table.df["image"]]
    df = table.df.copy()
    df[split["column"]] = values
    return table.with_df(df)


def _suffix_lookup(image: str, lookup: Mapping[str, Any]) -> Any:
    parts = image.split("/")
    for i in range(len(parts)):
        hit = lookup.get("/".join(parts[i:]))
        if hit is not None:
            return hit
    return None


def _split_by_column(table: AnnotationTable, column: str) -> dict[str, AnnotationTable]:
    if column not in table.df.columns:
        raise DataError(f"data.split.column: {column!r} not found.{did_you_mean(column, table.df.columns)}")
    values = table.df[column].astype(str)
    parts = {name: table.with_df(table.df[values == name]) for name in ("train", "val", "test")}
    if len(parts["train"]) == 0:
        raise DataError(f"data.split.column {column!r}: no row has the value 'train'. "
                        f"Values found: {sorted(set(values))[:8]}")
    return {k: v for k, v in parts.items() if len(v)}


def run_experiment(exp: Experiment, *, quiet: bool = False, resume: bool = False,
                   overwrite: bool = False) -> dict[str, Any]:
    """Train as the file says, evaluate on test (if any), save the resolved settings.

    Under torchrun every rank runs this; only rank 0 writes files and evaluates on test. Rank 0
    holds the output folder's lock from before the tables are read until the test results are
    written (``cnnkit.train.lock``): a second run into the folder is refused at once.
    """
    from cnnkit.train.commit import check_not_inputs
    from cnnkit.train.distributed import distributed
    from cnnkit.train.start import holding_folder

    check_not_inputs(exp.output, exp.inputs())  # before the lock makes the folder
    with distributed(None, exp.train_config().device) as dist, holding_folder(exp.output, dist):
        return _run_experiment(exp, quiet, resume, overwrite, dist)


def _run_experiment(exp: Experiment, quiet: bool, resume: bool, overwrite: bool,
                    dist: DistContext) -> dict[str, Any]:
    from cnnkit.infer.evaluate import evaluate
    from cnnkit.io import run_folder as RF
    from cnnkit.train.fit import run_job

    tables = exp.tables()
    job = exp.job(tables, quiet=quiet, resume=resume, overwrite=overwrite)
    # run_job builds (and so validates) the model before it writes anything to the run folder.
    run = run_job(job, dist, extra_files={RF.EXPERIMENT: yaml.safe_dump(exp.settings, sort_keys=False)})
    result: dict[str, Any] = {"run": run}
    if "test" in tables and not run.interrupted and dist.is_main:
        # best = selected on val (or the last epoch without val); the test split chooses nothing.
        test = evaluate(run.best, tables["test"], batch_size=job.cfg.resolved_batch_size, device=job.cfg.device,
                        workers=job.data.workers, tta_flip=exp.tta_flip)
        RF.RunFolder(job.out_dir).write_test_results(_plain(test.metrics), test.per_image)
        result["test"] = test
    return result


def _plain(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-able view of a metrics dict (numbers as floats, tables dropped)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
