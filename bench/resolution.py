"""Small subjects in large frames: crop training (``data.crop``) against whole-frame resizing.

Runs, each an experiment file with the library's defaults but for the input (``data.size`` or
``data.crop``) and a decoded cache (``data.cache``) per run:

* ``small``: ``cnnkit demo --small-subject`` (1280x960 frames, a face of 60-200 px; 300 images
  split 0.7 / 0.15 / 0.15): the whole frame resized to the default 160x120, against crops of
  160x160 and 256x256 at native scale (inference: `views: auto`, full-frame on this set);
* ``lips``: lips-via at its native 320x240 (the whole frame), and crops of 160x160 (the 160x120
  resize is the ``resnet18`` run of bench/backbones.py); its ``extra`` split is the validation;
* ``faces68``: crops of 160x160 against its default resize (bench/backbones.py).

Errors are in original pixels, at the last epoch, on validation and test (nothing is chosen on
test); see bench/backbones.py for the outputs.

    python bench/resolution.py --device cuda --workers 2 --parallel 7 --out bench/out/resolution
    python bench/resolution.py --sets small --inputs resize crop160 --epochs 3 --out bench/out/resolution_cpu
                                                  # s/epoch of both on this CPU
    python bench/resolution.py --dry-run          # tiny, CPU: tests the script
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backbones import ROOT, experiment, run_all, run_arguments  # noqa: E402

INPUTS = {
    "resize": {"crop": False},  # the whole frame resized (data.crop: auto would crop on the small set)
    "native": {"size": "320x240"},
    "crop160": {"crop": {"size": "160x160"}},
    "crop256": {"crop": {"size": "256x256"}},
}
RUNS = {"small": ["resize", "crop160", "crop256"], "lips": ["native", "crop160"], "faces68": ["crop160"]}


def make_small_set(root: Path, images: int) -> None:
    """The small-subject set under ``root/small`` (kept when it is already there)."""
    if (root / "small" / "demo_via.json").exists():
        return
    subprocess.run([sys.executable, "-m", "cnnkit", "demo", "--small-subject", "--out", str(root / "small"),
                    "--images", str(images)], check=True,
                   env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", nargs="+", default=list(RUNS), choices=list(RUNS))
    p.add_argument("--small-images", type=int, default=300, help="frames of the small-subject set (made in OUT/data)")
    p.add_argument("--inputs", nargs="+", default=list(INPUTS), choices=list(INPUTS),
                   help="only these inputs of each set (e.g. resize crop160 with --epochs 3: the cost per epoch)")
    run_arguments(p, "resolution")
    args = p.parse_args(argv)
    if args.dry_run:
        args.device, args.small_images = "cpu", 12
    args.out, args.data_root = args.out.resolve(), args.data_root.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    runs = {}
    for set_name in args.sets:
        if set_name == "small":
            make_small_set(args.out / "data", args.small_images)
        root = args.out / "data" if set_name == "small" else args.data_root
        for config in (c for c in RUNS[set_name] if c in args.inputs):
            data = {**INPUTS[config], "cache": str(args.out / f"{set_name}_{config}" / "cache")}
            if args.dry_run and "crop" in data:
                data["crop"] = {"size": "64x64"}
            args_for_set = argparse.Namespace(**{**vars(args), "data_root": root})
            runs[experiment(set_name, config, args_for_set, model={"spec": "resnet18"}, data=data)] = (set_name, config)
    return run_all(runs, args)


if __name__ == "__main__":
    raise SystemExit(main())
