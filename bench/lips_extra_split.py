"""Score lips-via checkpoints on its 'extra' split: 108 images in neither train nor test.

docs/ACCURACY.md uses these figures, not the test split's, to compare settings (head, loss,
map stride), so the test split chooses nothing.

    .venv/bin/python bench/lips_extra_split.py runs/accuracy/lips_heatmap_aug runs/accuracy/lips_direct_aug
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cnnkit.experiment import join_split_file, load_experiment
from cnnkit.infer.evaluate import evaluate

EXPERIMENT = Path(__file__).resolve().parents[1] / "examples" / "accuracy" / "lips_direct_noaug.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders holding last.safetensors")
    args = parser.parse_args(argv)
    exp = load_experiment(EXPERIMENT)
    table = join_split_file(exp.read_source(exp.settings["data"]["source"]), exp.settings["data"]["split"], exp)
    extra = table.with_df(table.df[table.df["split"] == "extra"])
    print(f"extra split: {len(extra)} images")
    scores = {}
    for run in args.runs:
        metrics = evaluate(run / "last.safetensors", extra, device="cpu").metrics
        scores[run.name] = {"error_px_mean": metrics["error_px_mean"], "baseline_px_mean": metrics["baseline_px_mean"]}
        print(f"{run.name:32s} {metrics['error_px_mean']:6.2f} px  (baseline {metrics['baseline_px_mean']:.2f})")
    print(json.dumps(scores, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
