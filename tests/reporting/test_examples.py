"""``cnnkit train`` then ``cnnkit report`` on the experiment files of examples/accuracy, shrunk to one tiny epoch.

Each file is copied into the same layout it has in the repository (examples/accuracy/ beside a
``shared`` folder that links to the real data), so its relative paths, split file and output
folder work as written; the overrides only make the model, image size and epochs tiny.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cnnkit import cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "accuracy"
SHARED = ROOT.parent / "shared"
TINY = ["--set", "model.spec=[[conv, {filter_size: 3, layer_depth: 8, strides: [1, 2, 2, 1]}], [bn], [relu], "
        "[global_avg_pool]]", "--set", "model.head=gap", "--set", "data.size=32x24", "--set", "train.epochs=1",
        "--set", "train.batch_size=32", "--set", "train.plots=false"]


def _train_example(tmp_path: Path, name: str, needs: str) -> Path:
    if not (SHARED / "data" / needs).exists():
        pytest.skip(f"real data not found at {SHARED / 'data' / needs}")
    (tmp_path / "shared").symlink_to(SHARED.resolve())
    repo = tmp_path / "repo"
    (repo / "examples" / "accuracy").mkdir(parents=True)
    exp = repo / "examples" / "accuracy" / name
    shutil.copy(EXAMPLES / name, exp)
    assert cli.main(["--quiet", "train", str(exp), *TINY]) == 0
    return repo / "runs" / "accuracy" / exp.stem


def _metrics(page) -> dict[str, str]:
    return {row["metric"]: row["value"] for row in page.table("overview")}


def test_lips_example(tmp_path: Path, parse_page, as_number) -> None:
    run = _train_example(tmp_path, "lips_heatmap_default.yaml", "lips-via")
    page = parse_page(run / "report.html")
    assert page.sections[-1] == "confusions" and "per-landmark" in page.sections
    assert "test split of" in page.text and "splits.csv" in page.text  # the split file's test rows
    assert len(page.table("confusions")) == 3  # the lips' three left/right pairs, from flip_pairs: auto
    test_metrics = json.loads((run / "test_metrics.json").read_text())  # the figure `cnnkit train` printed
    assert as_number(_metrics(page)["error_px_mean"]) == pytest.approx(test_metrics["error_px_mean"], rel=1e-3)


def test_hymenoptera_example(tmp_path: Path, parse_page, as_number) -> None:
    run = _train_example(tmp_path, "hymenoptera.yaml", "hymenoptera")
    page = parse_page(run / "report.html")
    assert page.sections[-3:] == ["per-class", "confusion-matrix", "wrong"]
    assert [r["class"] for r in page.table("per-class")] == ["ants", "bees"]
    assert sum(as_number(r["images"]) for r in page.table("per-class")) == 153  # the val/ folder, as test
    first = _metrics(page)
    (run / "report.html").unlink()
    assert cli.main(["--quiet", "report", str(run)]) == 0  # finds the test folder again from experiment.yaml
    assert _metrics(parse_page(run / "report.html")) == first
