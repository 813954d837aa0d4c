"""Shared helpers for the bench scripts: machine facts, peak memory, and docs/PERFORMANCE.md sections.

Each script owns one section of docs/PERFORMANCE.md between ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->`` and rewrites only that section, so scripts can run in any order.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "PERFORMANCE.md"
_DOC_HEAD = (
    "# Performance\n\n"
    "Figures written by the scripts in `bench/` (each rewrites only its own marked section).\n"
    "Rerun a script to refresh its figures; the command, machine and versions are listed with each.\n"
)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, str]:
    """nproc, CPU model, OS, Python and library versions, as strings."""
    import numpy
    import PIL
    import torch

    return {
        "nproc": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()),
        "cpu": cpu_model(),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
    }


def machine_line() -> str:
    """One Markdown line describing the machine and versions."""
    m = machine_info()
    return (
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['os']}; Python {m['python']}, torch {m['torch']}, "
        f"numpy {m['numpy']}, Pillow {m['pillow']}."
    )


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (Linux /proc; empty elsewhere)."""
    out = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def peak_rss_mb(pid: int | None = None) -> tuple[float, float]:
    """(peak RSS of ``pid``, sum of the peak RSS of its live children) in MiB (VmHWM).

    Summing RSS counts pages shared after fork once per process: an upper bound.
    """
    pid = os.getpid() if pid is None else pid
    return _status_kb(pid, "VmHWM") / 1024, sum(_status_kb(c, "VmHWM") for c in children(pid)) / 1024


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, body: str, doc: Path = DOC) -> Path:
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
