"""The one harness both bench families share.

* ``flags``: one argument parser, one spelling per flag (``--out``, ``--data-root``, ``--device``,
  ``--seeds``, ``--workers``, ``--quick``, ``--write`` ...), and the command line a report quotes;
* ``machine``: CPU model, versions, peak RSS and CPU seconds of processes (standard library only:
  the Keras peer's child imports it without torch);
* ``timing``: modes taking turns (A B B A ...), medians of repeated calls;
* ``results``: Markdown tables, a script's section of a docs page, a run folder's summary;
* ``images``: the performance data (generated textured JPEGs, landmark tables), the training
  parts and one timed epoch;
* ``datasets``: the accuracy data (lips-via, faces68, the small-subject set) and their splits;
* ``runs``: the launcher (``cnnkit train`` runs or any command, N at a time, each handed back as
  it ends), experiment files, scoring, the outputs of a side-by-side comparison.

Scripts put the repository root on ``sys.path`` (their first lines) and import ``bench.harness.*``.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: generated images, caches and run folders (git-ignored); both families share the images
OUT = ROOT / "bench" / "out"
#: lips-via/, faces68-csv/, lips-video/ (the shared checkout beside this one)
DATA_ROOT = ROOT.parent / "shared" / "data"
