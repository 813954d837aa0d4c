"""Machine facts for the reports: CPU model and library versions, peak and current RSS, CPU seconds.

Standard library only at import time: the Keras peer's child process (bench/perf/peer_keras.py)
imports this module in an environment that has TensorFlow but neither torch nor cnnkit.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path


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


def load_average() -> float:
    """The 1-minute load average (other jobs on a shared machine show up here)."""
    return os.getloadavg()[0]


def status_kb(pid: int, key: str) -> int:
    """A ``/proc/<pid>/status`` field in KiB (VmHWM: peak RSS, VmRSS: RSS now); 0 where unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` now, MiB."""
    return status_kb(pid, "VmRSS") / 1024


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
    return status_kb(pid, "VmHWM") / 1024, sum(status_kb(c, "VmHWM") for c in children(pid)) / 1024


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the given processes, in seconds (Linux /proc)."""
    total, tick = 0, os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick
