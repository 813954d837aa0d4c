"""Small subjects in large frames: crop training (``data.crop``) against whole-frame resizing.

Runs, each an experiment file with the library's defaults but for the input (``data.size`` or
``data.crop``) and a decoded cache (``data.cache``) per run:

* ``small``: ``cnnkit demo --small-subject`` (1280x960 frames, a face of 60-200 px; 300 images
  split 0.7 / 0.15 / 0.15): the whole frame resized to the default 160x120, against crops of
  160x160 and 256x256 at native scale (inference: `views: auto`, full-frame on this set);
* ``lips``: lips-via at its native 320x240 (the whole frame), and crops of 160x160 (the 160x120
  resize is the ``resnet18`` run of bench/accuracy/backbones.py); its ``extra`` split is the validation;
* ``faces68``: crops of 160x160 against its default resize (bench/accuracy/backbones.py).

Errors are in original pixels, at the last epoch, on validation and test (nothing is chosen on
test); the outputs are the harness's (bench/harness/compare.py). ``--configs`` picks inputs.

    python bench/accuracy/resolution.py --device cuda --workers 2 --parallel 7 --out bench/out/resolution
    python bench/accuracy/resolution.py --sets small --configs resize crop160 --epochs 3 \\
        --out bench/out/resolution_cpu                           # s/epoch of both on this CPU
    python bench/accuracy/resolution.py --quick                  # tiny, CPU: tests the script
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.harness import compare, flags  # noqa: E402
from bench.harness.datasets import make_small_set  # noqa: E402

INPUTS = {
    "resize": {"crop": False},  # the whole frame resized (data.crop: auto would crop on the small set)
    "native": {"size": "320x240"},
    "crop160": {"crop": {"size": "160x160"}},
    "crop256": {"crop": {"size": "256x256"}},
}
RUNS = {"small": ["resize", "crop160", "crop256"], "lips": ["native", "crop160"], "faces68": ["crop160"]}
QUICK_CROP = {"size": "64x64"}


def main(argv: list[str] | None = None) -> int:
    p = flags.parser(__doc__, sets={"default": list(RUNS), "choices": list(RUNS)},
                     configs={"default": list(INPUTS), "choices": list(INPUTS),
                              "help": "only these inputs of each set (e.g. resize crop160 with --epochs 3: the "
                                      "cost per epoch)"},
                     **compare.run_flags("resolution"))
    p.add_argument("--small-images", type=int, default=300, help="frames of the small-subject set (made in OUT/data)")
    args = compare.prepare(p.parse_args(argv))
    if args.quick:
        args.small_images = 12
    runs = {}
    for seed in args.seeds:
        for set_name in args.sets:
            root = args.out / "data" if set_name == "small" else args.data_root
            if set_name == "small":
                make_small_set(root, args.small_images)
            for config in (c for c in RUNS[set_name] if c in args.configs):
                name = compare.run_name(config, seed, args.seeds)
                folder = args.out / f"{set_name}_{name}"
                data = {**INPUTS[config], "cache": str(folder / "cache")}
                if args.quick and data.get("crop"):
                    data["crop"] = QUICK_CROP
                path = compare.experiment_file(folder, set_name, seed, args, model={"spec": "resnet18"}, data=data,
                                               train=compare.length(args), data_root=root)
                runs[path] = (set_name, name)
    return compare.train_and_score(runs, args)


if __name__ == "__main__":
    raise SystemExit(main())
