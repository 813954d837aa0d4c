"""The reliability plot: predicted against observed error per bin, from a reliability table.

Takes the table of ``cnnkit.trajectories.reliability.reliability_table`` (columns ``n``,
``predicted_px``, ``observed_px``, ``observed_p90_px``) as a DataFrame. matplotlib is imported
inside the function and the figure is drawn on its own Agg canvas (no pyplot state); the PNG
is written through ``cnnkit.atomic``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from cnnkit.atomic import atomic_path
from cnnkit.errors import DataError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100
_COLUMNS = ("n", "predicted_px", "observed_px", "observed_p90_px")


def plot_reliability(tables: pd.DataFrame | Mapping[str, pd.DataFrame], path: str | os.PathLike[str], *,
                     title: str = "Predicted vs observed error", threshold_px: float | None = None) -> Path:
    """Write a 500x500 px PNG: one line per table (e.g. raw and calibrated), the diagonal = calibrated.

    Args:
        tables: a reliability table, or several by label (``{"raw spread": t1, "calibrated": t2}``).
        path: the PNG to write.
        threshold_px: draw this error as a dotted line (e.g. the 10 px of the ROC AUC).

    Each bin is a point at (mean predicted, mean observed error); a thin bar reaches up to the
    bin's 90th percentile of the observed error.
    """
    named = {"": tables} if isinstance(tables, pd.DataFrame) else dict(tables)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 5), dpi=DPI)
    draw_reliability(fig, named, title=title, threshold_px=threshold_px)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return Path(path)


def draw_reliability(fig: Figure, tables: Mapping[str, pd.DataFrame], *, title: str = "Predicted vs observed error",
                     threshold_px: float | None = None) -> None:
    """Draw the reliability plot of ``tables`` (label -> reliability table) on ``fig`` (see :func:`plot_reliability`)."""
    for label, table in tables.items():
        missing = [c for c in _COLUMNS if c not in table.columns]
        if missing:
            raise DataError(f"reliability table {label!r}: missing columns {missing}; make it with "
                            "cnnkit.trajectories.reliability_table")
    ax = fig.add_subplot()
    top = max([float(t[["predicted_px", "observed_p90_px"]].max().max()) for t in tables.values() if len(t)] + [1.0])
    ax.plot([0, top], [0, top], color="grey", linewidth=1, linestyle="--", label="calibrated")
    for label, table in tables.items():
        line = ax.plot(table["predicted_px"], table["observed_px"], marker="o", label=label or None)[0]
        ax.vlines(table["predicted_px"], table["observed_px"], table["observed_p90_px"], color=line.get_color(),
                  linewidth=0.8, alpha=0.6)
    if threshold_px is not None:
        ax.axhline(threshold_px, color="red", linewidth=0.8, linestyle=":")
    ax.set(xlim=(0, top * 1.05), ylim=(0, top * 1.05), xlabel="predicted error (px)",
           ylabel="observed error (px): mean, bar to 90th percentile", title=title)
    ax.legend(loc="upper left", fontsize="small")
