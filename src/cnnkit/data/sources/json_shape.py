"""One clear error for a JSON file whose parts have the wrong type, shared by the JSON readers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cnnkit.errors import DataError

# What a reader hits when a hand-edited or foreign file puts any JSON type anywhere. Checking
# every access would double each parser, so a wrong type anywhere becomes one DataError.
SHAPE_ERRORS = (AttributeError, TypeError, KeyError, IndexError, ValueError)


@contextmanager
def json_shape_errors(source: str, what: str, expected: str) -> Iterator[None]:
    """Turn a crash on an unexpected JSON type into ``DataError`` naming the file and the layout expected."""
    try:
        yield
    except DataError:
        raise
    except SHAPE_ERRORS as exc:
        problem = "lacks a key" if isinstance(exc, KeyError) else "has an unexpected JSON type"
        raise DataError(f"{source}: a part of this {what} file {problem} ({type(exc).__name__}: {exc}). "
                        f"{expected}") from exc
