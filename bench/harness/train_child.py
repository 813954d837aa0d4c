"""``cnnkit train EXPERIMENT`` in this process, with what an experiment file cannot say yet: the optimizer's
implementation, and the duration estimate measured before training starts (issue 27, item 5).

    python bench/harness/train_child.py [--optimizer foreach] [--estimate] EXPERIMENT

``--optimizer`` makes every ``torch.optim.Adam``/``AdamW`` of the run use that implementation (``foreach``
or ``fused``; cnnkit.train.optim.IMPLEMENTATIONS): the library builds its optimizer from
``TrainConfig``, which has no such key, so the child swaps torch's class for a subclass that passes it.
Nothing outside this process sees the swap.

``--estimate`` times the run's own parts first, as ``train.time`` does (cnnkit.train.budget.measure_speed
on a throw-away copy of the model), and writes ``<output>/../estimate.json``: the probe's step and
epoch seconds, the epochs the length rule gives, the estimate, and the wall clock at the child's start,
at the probe's end and at the run's end (the truth the estimate is compared with), and the load average at the start.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
STARTED = time.time()


def use_implementation(name: str) -> None:
    """Every Adam and AdamW built from now on in this process runs with implementation ``name``."""
    import torch

    from cnnkit.train.optim import implementation_flags

    foreach, fused = implementation_flags(name)
    how = {k: v for k, v in (("foreach", foreach), ("fused", fused)) if v is not None}
    for cls_name in ("Adam", "AdamW"):
        base = getattr(torch.optim, cls_name)
        setattr(torch.optim, cls_name, type(cls_name, (base,), {"__init__": _init_with(base, how)}))


def _init_with(base: type, how: dict[str, bool]) -> Any:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        base.__init__(self, *args, **{**kwargs, **how})  # type: ignore[misc]

    return __init__


def probe(experiment: Path) -> dict[str, Any]:
    """The run's speed measured on its own parts, and the duration it predicts (length rule x epoch)."""
    import torch

    from bench.harness.candidates import resolved_job
    from cnnkit.engine.device import resolve_device
    from cnnkit.experiment import load_experiment
    from cnnkit.train.budget import MIN_TIMED_S
    from cnnkit.train.distributed import DistContext
    from cnnkit.train.resolve import measure_job_speed

    exp = load_experiment(experiment)
    job = resolved_job(exp.job(exp.tables(), quiet=True))
    speed = measure_job_speed(job, resolve_device(job.cfg.device), DistContext(), MIN_TIMED_S)
    epochs = job.cfg.epochs_for(speed.steps_per_epoch)
    return {"step_s": speed.step_s, "val_s": speed.val_s, "epoch_s": speed.epoch_s, "epochs": epochs,
            "steps_per_epoch": speed.steps_per_epoch, "estimate_s": epochs * speed.epoch_s,
            "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--optimizer", choices=("for-loop", "foreach", "fused"), help="the optimizer's implementation")
    p.add_argument("--estimate", action="store_true", help="measure the run's speed first: estimate.json")
    p.add_argument("experiment", type=Path)
    args = p.parse_args(argv)
    if args.optimizer:
        use_implementation(args.optimizer)
    record: dict[str, Any] = {"started": STARTED, "load": os.getloadavg()[0]}
    out = args.experiment.parent / "estimate.json"
    if args.estimate:
        record |= probe(args.experiment)
        record["probed"] = time.time()
        out.write_text(json.dumps(record, indent=1))
    from cnnkit.cli import main as cnnkit_main

    code = cnnkit_main(["train", str(args.experiment)])
    record["ended"] = time.time()
    out.write_text(json.dumps(record, indent=1))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
