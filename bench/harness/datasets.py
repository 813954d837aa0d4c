"""The accuracy data: lips-via, faces68 (split by person) and the small-subject set, under one data root.

lips-via comes with ``splits.csv``: ``train`` (207 images), ``test`` (392, speakers unseen in
training) and ``extra`` (108, in neither). ``extra`` is where settings are compared; the test split
only reports. faces68 is split 0.7 / 0.15 / 0.15 by person; the small-subject set is made by
``cnnkit demo --small-subject``.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

from bench.harness import ROOT

EXPERIMENTS = ROOT / "examples" / "accuracy"
SETS = ("lips", "lips50", "faces68", "small")


def lips_table(experiment: Path, data_root: Path) -> Any:
    """lips-via read as ``experiment`` reads it (its data options), from ``data_root/lips-via``, with the
    ``split`` column of its splits.csv joined on."""
    from cnnkit.experiment import join_split_file, load_experiment

    lips = data_root.resolve() / "lips-via"
    exp = load_experiment(experiment, [f"data.source={lips / 'via_project.json'}",
                                       f"data.split.file={lips / 'splits.csv'}"])
    data = exp.settings["data"]
    return join_split_file(exp.read_source(data["source"]), data["split"], exp)


def split_part(table: Any, name: str) -> Any:
    """The rows of ``table`` in split ``name`` (``train``, ``test`` or ``extra``), in file order."""
    return table.with_df(table.df[table.df["split"] == name])


def data_section(name: str, root: Path, out: Path) -> dict[str, Any]:
    """The ``data`` section of an experiment file for one set, with absolute paths (lips: ``extra`` as val)."""
    if name in ("lips", "lips50"):
        split_file = out / f"{name}_splits.csv"
        rows = list(csv.DictReader((root / "lips-via" / "splits.csv").open()))
        keep = _small_parts(rows) if name == "lips50" else None
        with split_file.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            for i, row in enumerate(rows):  # extra: in neither train nor test, used to compare settings
                part = "val" if row["split"] == "extra" else row["split"]
                writer.writerow({**row, "split": part if keep is None or i in keep or part == "test" else "unused"})
        return {"source": str(root / "lips-via" / "via_project.json"), "flip_pairs": "auto",
                "split": {"file": str(split_file), "on": "filename", "column": "split"}}
    if name == "small":  # cnnkit demo --small-subject: 1280x960 frames, a face of 60-200 px
        return {"source": str(root / "small" / "demo_via.json"), "flip_pairs": "auto",
                "split": {"fractions": [0.7, 0.15, 0.15], "seed": 0}}
    if name == "faces68":
        return {"source": str(root / "faces68-csv" / "CSVs" / "faces68.csv"),
                "split": {"fractions": [0.7, 0.15, 0.15], "seed": 0, "group": "person"}}
    raise SystemExit(f"unknown set {name!r}: {', '.join(SETS)}")


def _small_parts(rows: list[dict[str, str]], train: int = 50, val: int = 40) -> set[int]:
    """lips50: 50 training images and 40 of ``extra`` as validation, drawn with seed 0 (a small set)."""
    rng = random.Random(0)
    parts = {p: [i for i, r in enumerate(rows) if r["split"] == p] for p in ("train", "extra")}
    return set(rng.sample(parts["train"], train)) | set(rng.sample(parts["extra"], val))


def make_small_set(root: Path, images: int) -> Path:
    """The small-subject set under ``root/small`` (``cnnkit demo --small-subject``; kept when there)."""
    from cnnkit.cli import main as cnnkit_main

    folder = root / "small"
    if not (folder / "demo_via.json").exists():
        code = cnnkit_main(["demo", "--small-subject", "--out", str(folder), "--images", str(images)])
        if code != 0:
            raise SystemExit(f"cnnkit demo --small-subject failed (exit {code})")
    return folder
