"""cnnkit: build CNNs from a layer list; train them on images streamed from disk.

Importing the package registers the built-in layer kinds. Everything below is the public
API; submodules are implementation detail unless documented.
"""

from __future__ import annotations

from cnnkit.data.augment import Augment
from cnnkit.data.cache import build_cache
from cnnkit.data.check import check_data
from cnnkit.data.frames import ExtractedFrames, extract_frames
from cnnkit.data.merge import MergeReport, merge_annotations
from cnnkit.data.sources import read_annotations
from cnnkit.data.sources.writers import write_csv, write_via
from cnnkit.data.table import AnnotationTable
from cnnkit.data.video import iter_frames, video_info
from cnnkit.errors import CheckpointError, CnnkitError, ConfigError, DataError, SpecError, TrainingError
from cnnkit.infer.evaluate import Evaluation, evaluate
from cnnkit.infer.predict import Predictor, predict
from cnnkit.infer.suggest import suggest
from cnnkit.io.checkpoint import load_model
from cnnkit.io.export import export_model
from cnnkit.layers.registry import register
from cnnkit.model.builder import build_model
from cnnkit.model.summary import summary
from cnnkit.reporting import report
from cnnkit.spec.parse import load_spec
from cnnkit.train.fit import Run, fit
from cnnkit.trajectories.smoothing import Smoothed, smooth
from cnnkit.viz.video import write_labeled_video


def _version() -> str:
    """The installed distribution's version (pyproject.toml is its one source)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cnnkit")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        return "0+unknown"


__version__ = _version()

__all__ = [
    "AnnotationTable", "Augment", "CheckpointError", "CnnkitError", "ConfigError", "DataError", "Evaluation",
    "Predictor", "Run", "SpecError", "TrainingError", "__version__", "build_cache", "build_model", "check_data",
    "evaluate", "export_model", "fit", "iter_frames", "load_model", "load_spec", "predict", "read_annotations",
    "register", "report", "summary", "video_info", "write_csv", "write_labeled_video", "write_via",
    # the label -> train -> refine loop
    "ExtractedFrames", "MergeReport", "extract_frames", "merge_annotations", "suggest",
    # trajectories: smoothing video predictions (cnnkit.trajectories has the maths)
    "Smoothed", "smooth",
]
