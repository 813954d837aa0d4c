"""``cnnkit predict`` over an archive under torchrun, recording every frame each rank predicts.

Used by ``test_archive_torchrun.py`` as ``torchrun --nproc_per_node=2 _archive_worker.py predict ...``.

Environment:
    CNNKIT_TEST_LOG: a folder; each rank appends one JSON line per video it writes to
        ``<attempt>-<rank>.jsonl``: ``{"video", "frames", "scored"}`` (``scored``: frames through
        the model since the previous video ended, batch by batch).
    CNNKIT_TEST_KILL_RANK: the rank that SIGKILLs itself at the first batch of its second video,
        in torchrun's first attempt only (restart count 0).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

RANK = int(os.environ.get("RANK", "0"))
ATTEMPT = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")


def _record() -> None:
    from cnnkit.infer import archive
    from cnnkit.infer.predict import Predictor

    log = Path(os.environ["CNNKIT_TEST_LOG"]) / f"{ATTEMPT}-{RANK}.jsonl"
    scored: list[int] = []
    written: list[str] = []
    kill = os.environ.get("CNNKIT_TEST_KILL_RANK") == str(RANK) and ATTEMPT == "0"
    score_batch, write_video = Predictor.score_batch, archive._write_video

    def score(self: Predictor, batch: dict[str, Any]) -> Any:
        if kill and written:
            print(f"KILLING rank {RANK} (SIGKILL)", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        scored.extend(int(i) for i in batch["index"])
        return score_batch(self, batch)

    def write(df: Any, video: Any, job: Any, ended: Any) -> None:
        with log.open("a") as fh:
            fh.write(json.dumps({"video": video.rel.as_posix(), "frames": df["frame"].tolist(), "scored": scored}) + "\n")
        scored.clear()
        write_video(df, video, job, ended)
        written.append(video.rel.as_posix())

    Predictor.score_batch = score  # type: ignore[method-assign]
    archive._write_video = write  # type: ignore[assignment]


if __name__ == "__main__":
    _record()
    from cnnkit.cli import main

    sys.exit(main(sys.argv[1:]))
