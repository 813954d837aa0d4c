"""The library's own error types. Every user mistake surfaces as one of these.

All are ``ValueError`` subclasses so code that already catches ``ValueError`` keeps working.
Messages say what was wrong, where (file, row, column, JSON key path, layer index) and
what to do; the CLI prints them as one line and exits with code 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence


class CnnkitError(ValueError):
    """Base class of every error cnnkit raises for bad user input."""


class SpecError(CnnkitError):
    """A layer list (spec) is invalid. ``problems`` holds one message per problem found."""

    def __init__(self, problems: Sequence[str] | str) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            text = self.problems[0]
        else:
            text = f"{len(self.problems)} problems in the spec:\n" + "\n".join(
                f"  - {p}" for p in self.problems
            )
        super().__init__(text)


class DataError(CnnkitError):
    """Annotations or images are missing, unreadable or inconsistent."""


class CheckpointError(CnnkitError):
    """A checkpoint file is missing, corrupt, unsafe or of an unknown format version."""


class ConfigError(CnnkitError):
    """An option or experiment-file setting is unknown or has a wrong type/value."""


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """Return `` Did you mean 'x'?`` for the closest option, or an empty string.

    Example:
        >>> did_you_mean("layer_dept", ["filter_size", "layer_depth"])
        " Did you mean 'layer_depth'?"
        >>> did_you_mean("zzz", ["conv"])
        ''
    """
    hits = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" Did you mean {hits[0]!r}?" if hits else ""


class TrainingError(CnnkitError):
    """Training cannot go on: the loss became NaN or infinite, for example."""


def check_keys(given: Iterable[str], allowed: Sequence[str], *, where: str = "", section: str = "",
               what: str = "key") -> None:
    """The one "unknown key, did you mean" check: raise ``ConfigError`` for the first unknown key.

    Args:
        given: the keys a user wrote.
        allowed: the keys that mean something here (listed in the message).
        where: the file or call, e.g. ``'exp.yaml'`` or ``'fit'``; prefixed as ``where: ``.
        section: the section the keys sit in; the message then names the key path ``section.key``.
        what: what a key is called there ('key', 'option', 'section').

    Example:
        >>> check_keys(['epoch'], ['epochs', 'lr'], where='exp.yaml', section='train')
        Traceback (most recent call last):
        ...
        cnnkit.errors.ConfigError: exp.yaml: train.epoch: unknown key. Did you mean 'epochs'? Allowed: epochs, lr.
    """
    names = [str(a) for a in allowed]
    for key in given:
        if key not in names:
            place = f"{where}: " if where else ""
            found = f"{section}.{key}: unknown {what}." if section else f"unknown {what} {key!r}."
            raise ConfigError(f"{place}{found}{did_you_mean(str(key), names)} Allowed: {', '.join(names)}.")
