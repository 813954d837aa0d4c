"""The seed document runs on cnnkit with only its import lines and data paths changed.

``examples/seed_document.py`` is the document's code; this test checks that claim line by
line against the document itself, then runs the example in fast mode on faces68-csv.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cnnkit.io.checkpoint import read_meta

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "seed_document.py"
DOCUMENT = ROOT.parent / "shared" / "seed" / "000_931483c061121b4d.txt"
# The document's own placeholders for the reader's files: the only non-import lines that change.
PATH_LINES = {"dfx = 'dafaframe_with_landmarks_and_absolute_path_to_images.csv'",
              "data= '/home/your_user/path_to_your_data/'"}  # fmt: skip


def _document_lines() -> list[str]:
    if not DOCUMENT.is_file():
        pytest.skip(f"seed document not found at {DOCUMENT}")
    blocks = re.findall(r"```python\n(.*?)```", DOCUMENT.read_text(encoding="utf-8"), re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_example_is_the_document_with_only_imports_and_paths_changed() -> None:
    doc = _document_lines()
    kept = [ln for ln in doc if not ln.startswith(("import ", "from ")) and ln not in PATH_LINES]
    assert len(doc) - len(kept) == 14  # the 12 import lines and 2 path lines may change; nothing else
    example = iter(line.strip() for line in EXAMPLE.read_text(encoding="utf-8").splitlines())
    missing = [ln for ln in kept if not any(ln == ex for ex in example)]  # in order, as a subsequence
    assert not missing, f"document lines absent from (or out of order in) the example: {missing[:3]}"


@pytest.mark.slow
def test_example_runs_the_three_snippets_in_fast_mode(faces_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "CNNKIT_FAST": "1", "CNNKIT_SEED_DATA": str(faces_dir), "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, str(EXAMPLE)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "(520, 139)" in out  # dfx.shape
    losses = [float(v) for v in re.findall(r"^Iter: 0 batch 0 batches 1 Loss: ([\d.e+-]+)$", out, re.M)]
    assert len(losses) == 3 and all(0 < v < 1e7 for v in losses)  # one line per snippet (2 rows, batch 8)
    assert out.count("Model saved in file: test_model.safetensors") == 3
    meta = read_meta(tmp_path / "test_model.safetensors")  # the last snippet's model: 101 layers
    assert len(meta["model"]["spec"]) == 4 + 3 + 4 + 23 + 3
    assert meta["task"] == "landmarks" and meta["model"]["outputs"] == 22 and meta["size"] == [64, 92]
