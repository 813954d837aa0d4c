"""The run report: one self-contained HTML page per run (``cnnkit report``, ``cnnkit.report``).

Sits above ``infer``: it reads a run folder, scores a held-out table with ``evaluate`` and lays
out what it finds with the array-only helpers of ``viz.html`` and ``viz.report_figures``.
"""

from __future__ import annotations

from cnnkit.reporting.build import REPORT_NAME, build_page, report, report_after_training

__all__ = ["REPORT_NAME", "build_page", "report", "report_after_training"]
