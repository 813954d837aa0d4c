"""cnnkit: build CNNs from a layer list; train them on images streamed from disk."""

from __future__ import annotations

from cnnkit.data.table import AnnotationTable
from cnnkit.errors import CheckpointError, CnnkitError, ConfigError, DataError, SpecError

__version__ = "0.1.0"

__all__ = [
    "AnnotationTable",
    "CheckpointError",
    "CnnkitError",
    "ConfigError",
    "DataError",
    "SpecError",
    "__version__",
]
