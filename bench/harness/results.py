"""Where figures go: Markdown tables, a script's own section of a docs page, a run folder's summary.

Each performance script owns one section of docs/PERFORMANCE.md between ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->`` (bench/accuracy/decoding.py one of docs/ACCURACY.md) and rewrites only that
section, so scripts can run in any order.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.harness import ROOT
from bench.harness.machine import machine_line

PERFORMANCE = ROOT / "docs" / "PERFORMANCE.md"
ACCURACY = ROOT / "docs" / "ACCURACY.md"
_DOC_HEAD = (
    "# Performance\n\n"
    "Figures written by the scripts in `bench/perf/` with `--write` (each rewrites only its own marked section).\n"
    "Rerun a script to refresh its figures; the command, machine and versions are listed with each.\n"
)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def table_rows(text: str, first_cell: str | None = None) -> list[list[str]]:
    """The cells of the Markdown table rows in ``text`` (those whose first cell is ``first_cell``)."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|")]
    return [r for r in rows if first_cell is None or r[0] == first_cell]


def write_section(name: str, body: str, doc: Path = PERFORMANCE) -> Path:
    """Replace (or append) the ``<!-- bench:name -->`` section of ``doc`` with ``body``."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = doc.read_text(encoding="utf-8") if doc.exists() else _DOC_HEAD
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    text = (
        pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    )
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text, encoding="utf-8")
    return doc


def write_summary(out: Path, table: str) -> Path:
    """``out/summary.md``: the table, the machine, and the command line that made it."""
    path = out / "summary.md"
    path.write_text(f"{table}\n\n{machine_line()}\n\n`{' '.join([Path(sys.executable).name, *sys.argv])}`\n")
    return path
