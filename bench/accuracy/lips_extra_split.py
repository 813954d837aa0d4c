"""Score lips-via checkpoints on its 'extra' split: 108 images in neither train nor test.

docs/ACCURACY.md uses these figures, not the test split's, to compare settings (head, loss,
map stride), so the test split chooses nothing.

    .venv/bin/python bench/accuracy/lips_extra_split.py runs/accuracy/lips_heatmap_aug runs/accuracy/lips_direct_aug
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.harness import flags  # noqa: E402
from bench.harness.datasets import EXPERIMENTS, lips_table, split_part  # noqa: E402

EXPERIMENT = EXPERIMENTS / "lips_direct_noaug.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = flags.parser(__doc__, data_root=True, device=True)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders holding last.safetensors")
    args = parser.parse_args(argv)
    from cnnkit.infer.evaluate import evaluate

    extra = split_part(lips_table(EXPERIMENT, args.data_root), "extra")
    print(f"extra split: {len(extra)} images")
    scores = {}
    for run in args.runs:
        metrics = evaluate(run / "last.safetensors", extra, device=args.device).metrics
        scores[run.name] = {"error_px_mean": metrics["error_px_mean"], "baseline_px_mean": metrics["baseline_px_mean"]}
        print(f"{run.name:32s} {metrics['error_px_mean']:6.2f} px  (baseline {metrics['baseline_px_mean']:.2f})")
    print(json.dumps(scores, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
