"""Backbones side by side with the library defaults: ResNet-18 from scratch, EfficientNet-Lite0
from scratch and Lite0 from its ImageNet weights, on lips-via and faces68 (split by person).

Each run is an experiment file holding only the data, the backbone and the device: size, head,
loss, augmentation, schedule and training length are the library's defaults. Runs are launched
as `cnnkit train` processes (``--parallel`` at a time, which suits one big GPU), then scored:

* validation curve: ``val_error_px_mean`` of every epoch (lips: its ``extra`` split as
  validation; faces68: the person-split val part), against optimizer steps;
* the LAST epoch's checkpoint on validation and on test (nothing is chosen on test).

    python bench/accuracy/backbones.py --device cuda --out bench/out/backbones     # all sets, all backbones
    python bench/accuracy/backbones.py --sets lips --configs resnet18               # one run here
    python bench/accuracy/backbones.py --epochs 3 --out bench/out/backbones_cpu     # s/epoch on this CPU
    python bench/accuracy/backbones.py --quick                                      # 2 epochs, tiny, CPU (a test)

Writes ``OUT/summary.md`` (the table), ``OUT/curves.csv`` (set, run, epoch, step, val error,
seconds) and ``OUT/curves.png``; docs/ACCURACY.md quotes them with the card's name. With several
``--seeds`` a run's name (and folder) ends in ``_s<seed>``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.harness import compare, flags  # noqa: E402
from bench.harness.datasets import SETS  # noqa: E402

#: name -> (model section, train settings beyond the defaults)
CONFIGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "resnet18": ({"spec": "resnet18"}, {}),
    "lite0": ({"spec": "efficientnet_lite0"}, {}),
    "lite0_pretrained": (compare.LITE0_IMAGENET, {}),
    "lite0_pretrained_blr": (compare.LITE0_IMAGENET, {"backbone_lr": 1.0e-4}),  # lr/10, as classes get by default
}


def main(argv: list[str] | None = None) -> int:
    p = flags.parser(__doc__, sets={"default": ["lips", "faces68"], "choices": SETS},
                     configs={"default": ["resnet18", "lite0", "lite0_pretrained"], "choices": list(CONFIGS)},
                     **compare.run_flags("backbones"))
    args = compare.prepare(p.parse_args(argv))
    runs = {}
    for seed in args.seeds:  # seed by seed: a launch cut short by a time limit still has whole seeds
        for set_name in args.sets:
            for config in args.configs:
                model, train = CONFIGS[config]
                name = compare.run_name(config, seed, args.seeds)
                path = compare.experiment_file(args.out / f"{set_name}_{name}", set_name, seed, args, model=model,
                                               train={**train, **compare.length(args)})
                runs[path] = (set_name, name)
    return compare.train_and_score(runs, args)


if __name__ == "__main__":
    raise SystemExit(main())
