"""``report``: a run folder (and a table to score) -> one self-contained HTML page."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnkit.atomic import atomic_write_text
from cnnkit.data.images import ImageSource
from cnnkit.engine.inference import INFERENCE_BATCH
from cnnkit.errors import CnnkitError, ConfigError
from cnnkit.infer.evaluate import Evaluation, evaluate
from cnnkit.io.run_folder import REPORT
from cnnkit.reporting import classes as C
from cnnkit.reporting import landmarks as L
from cnnkit.reporting.common import curves_section, model_name, settings_section
from cnnkit.reporting.run_folder import EvalData, RunRecord, eval_data, load_run
from cnnkit.viz import html as H

if TYPE_CHECKING:
    from cnnkit.experiment import Experiment

REPORT_NAME = REPORT
log = logging.getLogger("cnnkit")


def report(run_dir: str | Path, data: Any = None, *, out: str | Path | None = None,
           images: str | Path | None = None, evaluation: Evaluation | None = None,
           experiment: Experiment | None = None, data_label: str | None = None,
           batch_size: int = INFERENCE_BATCH, device: str = "auto", workers: int = 0, tta_flip: bool | None = None,
           views: str = "auto") -> Path:
    """Write one HTML page about a run: settings, curves, and how the model does on a held-out table.

    Everything is embedded (images as ``data:`` URIs, no script, font or URL), so the file opens
    offline and travels as an e-mail attachment.

    Args:
        run_dir: the run folder (``output`` of an experiment file, ``out_dir`` of ``fit``).
        data: the table to score: an ``AnnotationTable`` or anything ``read_annotations`` reads.
            None = the test split of the run's ``experiment.yaml``, else its validation split,
            else nothing (the page then shows settings and curves only).
        out: the HTML file; default ``run_dir/report.html``.
        images: folder that relative image paths in ``data`` point into.
        evaluation: ``evaluate``'s result on that very table, to reuse instead of predicting again.
        experiment: the loaded experiment the run came from (its paths resolve exactly); default:
            the run's ``experiment.yaml``.
        data_label: how the page names ``data`` (e.g. 'test split of demo_via.json'); default: its source.
        batch_size, device, workers: for the evaluation.
        tta_flip: test-time flip for the evaluation; None = as the experiment's ``evaluate.tta_flip``.
        views: how a crop-trained model is scored ('auto': as its run measured; ``evaluate``'s ``views``).

    Returns:
        The path written.
    """
    start = time.perf_counter()
    run = load_run(run_dir)
    scored = eval_data(run, data, images=images, experiment=experiment)
    if scored is not None and data_label:
        scored = EvalData(scored.table, scored.split, data_label)
    if evaluation is not None and scored is None:
        raise ConfigError(f"{run_dir}: an evaluation was given without the table it scored; pass that table as "
                          "data (its per-image rows index into it)")
    flip = tta_flip if tta_flip is not None else bool(((run.experiment or {}).get("evaluate") or {})
                                                      .get("tta_flip", False))
    return _write(run, scored, evaluation, Path(out) if out is not None else run.path / REPORT_NAME, start,
                  batch_size=batch_size, device=device, workers=workers, tta_flip=flip, views=views)


def _write(run: RunRecord, scored: EvalData | None, ev: Evaluation | None, target: Path, start: float,
           **eval_opts: Any) -> Path:
    if ev is None and scored is not None and run.checkpoint is not None:
        ev = evaluate(run.checkpoint, scored.table, **eval_opts)
    atomic_write_text(target, build_page(run, scored if ev is not None else None, ev, seconds_so_far=start))
    return target


def build_page(run: RunRecord, scored: EvalData | None, ev: Evaluation | None, *,
               seconds_so_far: float | None = None) -> str:
    """The HTML text: overview, settings, curves, then the task's sections when a table was scored."""
    meta = run.meta
    task = meta.get("task", "")
    sections = [overview_section(run, scored, ev), settings_section(run, scored), curves_section(run.history)]
    if ev is not None and scored is not None:
        source = ImageSource.for_table(scored.table)
        if task == "landmarks":
            sections += L.sections(ev, L.scored(ev, scored.table, meta), source, meta)
        elif task == "classes":
            sections += C.sections(ev, list(meta.get("classes") or []), source)
    title = f"cnnkit run report: {'/'.join(run.path.resolve().parts[-2:])}"
    subtitle = f"{model_name(run)} · {task or 'no checkpoint'} · {run.path.resolve()}"
    if seconds_so_far is not None:
        subtitle += f" · written in {time.perf_counter() - seconds_so_far:.1f} s"
    return H.page(title, subtitle, sections)


def overview_section(run: RunRecord, scored: EvalData | None, ev: Evaluation | None) -> H.Section:
    """Headline numbers of the scored table and every metric ``evaluate`` returned."""
    if ev is None or scored is None:
        why = ("the run folder has no checkpoint" if run.checkpoint is None else
               "the run has no test or validation split to score; pass one with `cnnkit report RUN --data TEST`")
        return H.Section("overview", "Overview", H.note(f"Training curves and settings only: {why}."))
    task = run.meta.get("task")
    cards = (L.overview_cards(ev) if task == "landmarks" else C.overview_cards(ev, list(run.meta.get("classes") or [])))
    body = H.note(f"Scored on the {scored.described}: {len(scored.table)} images.")
    if scored.split == "validation":
        body += H.note("No test split: these are validation images, which chose the best epoch, so the numbers are "
                       "somewhat optimistic.")
    body += H.cards(cards)
    return H.Section("overview", "Overview", body + H.collapsed("all metrics from evaluate", metrics_table(ev)))


def metrics_table(ev: Evaluation) -> str:
    """Every number ``evaluate`` returned, as ``metric | value``."""
    import pandas as pd

    rows = [(k, float(v)) for k, v in ev.metrics.items() if isinstance(v, (int, float, np.floating, np.integer))]
    return H.table(pd.DataFrame(rows, columns=["metric", "value"]), digits=6, scroll=len(rows) > 20)


def report_after_training(run_dir: str | Path, experiment: Experiment, test: Evaluation | None = None) -> Path | None:
    """The page ``cnnkit train`` writes at the end: only when the run has a test or validation split.

    ``test``: the evaluation of the best checkpoint on the test split, reused when given. Returns
    None (and logs why, for user errors such as unreadable data) when no page was written.
    """
    start = time.perf_counter()
    try:
        run = load_run(run_dir)
        scored = eval_data(run, experiment=experiment)
        if scored is None:
            return None
        if test is not None and scored.split != "test":
            raise ConfigError(f"{run_dir}: a test evaluation was given but the experiment has no test split")
        return _write(run, scored, test, run.path / REPORT_NAME, start, tta_flip=experiment.tta_flip,
                      batch_size=experiment.train_config().resolved_batch_size, device=experiment.train_config().device,
                      workers=experiment.data_config().workers)
    except CnnkitError as exc:  # the run itself is saved and fine: say why there is no page, do not fail
        log.warning("report not written: %s", exc)
        return None
