"""Shared fixtures: paths to the real data in ../shared and tiny synthetic files in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data"
VIA_EXAMPLES = SHARED / "via-examples"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (CI has ../shared beside the clone)")
    return path


@pytest.fixture
def lips_dir() -> Path:
    return _need(DATA / "lips-via")


@pytest.fixture
def faces_dir() -> Path:
    return _need(DATA / "faces68-csv")


@pytest.fixture
def hymenoptera_dir() -> Path:
    return _need(DATA / "hymenoptera")


@pytest.fixture
def via_examples() -> Path:
    return _need(VIA_EXAMPLES)
