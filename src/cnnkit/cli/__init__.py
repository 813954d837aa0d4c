"""The ``cnnkit`` command: parse arguments, build configs, call library functions.

User errors (``cnnkit.CnnkitError``) print one line and exit with code 2, and so do the
``OSError``s about the user's paths (a full disk, a read-only folder, a file where a folder
should be: ``cnnkit.atomic.PATH_ERRNOS``, with the path named); Ctrl-C exits with 130;
anything else is a bug and keeps its traceback. A command that read a video ending before its
declared length (its frames kept and reported) exits with 3 unless ``--accept-partial``.

The package: ``parser`` (the arguments of every command), ``commands`` (one function per command),
``predict`` (``cnnkit predict``: images, videos, archives, output formats, smoothing); ``main`` here
runs one and turns errors into exit statuses.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from cnnkit.cli.commands import (
    cmd_cache,
    cmd_check_data,
    cmd_convert,
    cmd_demo,
    cmd_evaluate,
    cmd_export,
    cmd_extract_frames,
    cmd_merge,
    cmd_report,
    cmd_smooth,
    cmd_spec,
    cmd_suggest,
    cmd_summary,
    cmd_train,
)
from cnnkit.cli.parser import build_parser
from cnnkit.cli.predict import cmd_predict
from cnnkit.data.video import partial_videos
from cnnkit.errors import CnnkitError

__all__ = ["COMMANDS", "build_parser", "main"]


def _partial_video_status(args: argparse.Namespace, ended: list[Any]) -> int:
    """0, or 3 when a video ended early (each already said so in one line) and it was not accepted.

    Under torchrun only rank 0 answers for the run (an archive's summary holds every rank's partial
    videos): another rank's 3 would read as a failed process and restart the job.
    """
    if not ended or getattr(args, "accept_partial", False) or os.environ.get("RANK", "0") != "0":
        return 0
    print(f"cnnkit {args.command}: {len(ended)} video(s) ended before their declared length (lines above); "
          f"their decoded frames were used. Exit status 3: pass --accept-partial to accept partial videos.",
          file=sys.stderr)
    return 3


COMMANDS = {"train": cmd_train, "predict": cmd_predict, "evaluate": cmd_evaluate, "summary": cmd_summary,
            "spec": cmd_spec, "check-data": cmd_check_data, "convert": cmd_convert, "cache": cmd_cache,
            "export": cmd_export, "demo": cmd_demo, "report": cmd_report,
            "merge": cmd_merge, "extract-frames": cmd_extract_frames, "suggest": cmd_suggest,
            "smooth": cmd_smooth}


def _path_error_line(exc: OSError, command: str) -> str | None:
    """One line for an error about the user's path (full disk, read-only, ...); None for anything else."""
    from cnnkit.atomic import PATH_ERRNOS

    if exc.errno not in PATH_ERRNOS or not exc.filename:
        return None
    after = (" What the run committed before is intact: fix that (free space, permissions), then run the same "
             "command with --resume.") if command == "train" else ""
    return f"cnnkit {command}: error: {exc.filename}: {exc.strerror} [{errno.errorcode.get(exc.errno or 0, '')}].{after}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s",
                        stream=sys.stderr)
    try:
        with partial_videos() as ended:
            code = COMMANDS[args.command](args)
        return _partial_video_status(args, ended) if code == 0 else code
    except CnnkitError as exc:
        print(f"cnnkit {args.command}: error: {str(exc).strip()}", file=sys.stderr)
        return 2
    except OSError as exc:
        line = _path_error_line(exc, args.command)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
