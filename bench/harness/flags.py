"""One argument parser for every bench script: each flag has one spelling and one meaning.

A script names the shared flags it takes, with its own default or help where it needs one::

    p = flags.parser(__doc__, quick=True, write=True, images={"help": "images (default 500; --quick 24)"})
    p.add_argument("--profile", ...)          # what only this script has

``--quick`` is every script's smoke run (tiny sizes, seconds to a minute, on the CPU) and never
writes a docs page; ``--write`` rewrites the script's own section of its docs page. Sizes are
width x height as in cnnkit's CLI (``--size 160x120``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.harness import DATA_ROOT, ROOT


def size(text: str) -> tuple[int, int]:
    """``'160x120'`` -> (160, 120): width x height, as cnnkit's ``--size``."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 160x120, got {text!r}") from None
    return w, h


#: name (``data_root`` is ``--data-root``) -> add_argument keywords
FLAGS: dict[str, dict[str, Any]] = {
    "quick": {"action": "store_true", "help": "smoke run: tiny sizes, on the CPU; never writes a docs page"},
    "write": {"action": "store_true", "help": "rewrite this script's section of its docs page (not with --quick)"},
    "out": {"type": Path, "help": "folder the outputs go to"},
    "data_root": {"type": Path, "default": DATA_ROOT,
                  "help": "folder holding lips-via/ and faces68-csv/ (default ../shared/data)"},
    "device": {"default": "cpu", "help": "cpu or cuda (default cpu)"},
    "seeds": {"type": int, "nargs": "+", "default": [0], "help": "seeds, one run each (default 0)"},
    "workers": {"type": int, "default": 0, "help": "loader workers per run (default 0)"},
    "parallel": {"type": int, "default": 1, "help": "runs at a time (default 1)"},
    "threads": {"type": int, "default": None, "help": "torch threads"},
    "images": {"type": int, "default": None, "help": "images"},
    "batch": {"type": int, "default": None, "help": "batch size"},
    "rounds": {"type": int, "default": None, "help": "timed rounds per mode"},
    "epochs": {"type": int, "default": None, "help": "epochs"},
    "arch": {"nargs": "+", "default": None, "help": "models"},
    "precision": {"default": "bf16", "choices": ("fp32", "bf16"), "help": "default bf16"},
    "size": {"type": size, "default": None, "help": "input size WIDTHxHEIGHT"},
    "sets": {"nargs": "+", "help": "data sets"},
    "configs": {"nargs": "+", "help": "only these configurations"},
}


def parser(doc: str | None, **wanted: bool | dict[str, Any]) -> argparse.ArgumentParser:
    """An ArgumentParser with the shared flags named in ``wanted`` (True, or keywords that override
    the shared definition, e.g. ``threads={"default": 2}``), in the order given."""
    p = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    for name, how in wanted.items():
        if how is False:
            continue
        p.add_argument("--" + name.replace("_", "-"), **{**FLAGS[name], **(how if isinstance(how, dict) else {})})
    return p


def should_write(args: argparse.Namespace) -> bool:
    """``--write`` and not ``--quick``: a smoke run's figures never reach the docs."""
    return bool(getattr(args, "write", False)) and not getattr(args, "quick", False)


def command_line(script: str | Path, argv: Sequence[str] | None = None, prefix: str = "python") -> str:
    """The command a report quotes: ``python bench/perf/loader.py --write`` (argv: sys.argv[1:] by default)."""
    path = Path(script).resolve()
    shown = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
    return " ".join([prefix, shown, *(sys.argv[1:] if argv is None else argv)]).strip()
