"""Fine-tuning variants of EfficientNet-Lite0 (ImageNet weights) on hymenoptera, as measured in
docs/ACCURACY.md. Variants are chosen on a 20 % split of train/ (seed 0); `final` trains on all of
train/ and reports val/ (153 images), which chooses nothing.

    .venv/bin/python examples/accuracy/hymenoptera_lite0_recipe.py blr1e-4+bneval 4 128      # on the split
    .venv/bin/python examples/accuracy/hymenoptera_lite0_recipe.py final+blr1e-4+bneval 4 224 1

A variant is '+'-joined parts: ``blr<x>`` (backbone_lr), ``lr<x>`` (head lr), ``frozen``
(freeze_backbone), ``wu`` (one warm-up epoch), ``bneval`` (backbone BN layers keep their ImageNet
statistics while training; fit has no option for it yet), ``d09`` (BN decay 0.9 instead of 0.99),
``imnorm`` (ImageNet mean/std instead of the Lite weights' (x - 127) / 128), ``bs<n>``, ``final``.
Prints one JSON line: wall time, training loss and validation accuracy per epoch.
"""

from __future__ import annotations

import json
import sys
import time
import types
from pathlib import Path

import torch
from torch import nn

import cnnkit
from cnnkit.model.builder import build_model
from cnnkit.model.pretrained import LITE_NORMALISATION, load_pretrained
from cnnkit.spec.parse import preset_spec

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hymenoptera"
AUGMENT = {"flip": True, "rotate": 10, "scale": [0.85, 1.15], "shift": 0.1, "brightness": 0.2, "contrast": 0.2,
           "saturation": 0.2}  # fmt: skip


def bn_frozen_train(self: nn.Module, mode: bool = True) -> nn.Module:
    """``train()`` that leaves the backbone's BatchNorm layers in eval mode (ImageNet statistics)."""
    nn.Module.train(self, mode)
    for m in self.layers.modules():  # type: ignore[operator]
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    return self


def options(parts: set[str], epochs: int, size: int, seed: int) -> dict:
    bs = [int(p[2:]) for p in parts if p.startswith("bs")]
    opts = {"size": (size, size), "epochs": epochs, "batch_size": bs[0] if bs else 16, "lr": 1e-3,
            "optimizer": "adam", "schedule": "cosine", "seed": seed, "device": "cpu", "quiet": True,
            "plots": False}  # fmt: skip
    for p in parts:
        if p.startswith("blr"):
            opts["backbone_lr"] = float(p[3:])
        elif p.startswith("lr"):
            opts["lr"] = float(p[2:])
    if "frozen" in parts:
        opts["freeze_backbone"] = True
    if "wu" in parts:
        opts.update(schedule="cosine", warmup_epochs=1)
    return opts


def model(parts: set[str], size: int, seed: int) -> nn.Module:
    spec = preset_spec("efficientnet_lite0")
    if "d09" in parts:
        for item in spec:
            if item[0] in ("bn", "mbconv"):
                item[1]["decay"] = 0.9
    torch.manual_seed(seed)
    net = build_model(spec, size=(size, size), outputs=2, head="gap")
    load_pretrained(net, "efficientnet_lite0")
    if "bneval" in parts:
        net.train = types.MethodType(bn_frozen_train, net)  # type: ignore[method-assign]
    return net


def main(variant: str, epochs: int, size: int, seed: int) -> None:
    torch.set_num_threads(1)
    parts = set(variant.split("+"))
    train = cnnkit.read_annotations(DATA / "train")
    train, val = (train, cnnkit.read_annotations(DATA / "val")) if "final" in parts else train.split((0.8, 0.2))
    norm = None if "imnorm" in parts else LITE_NORMALISATION
    start = time.time()
    run = cnnkit.fit(model(parts, size, seed), train, val, out_dir=f"runs/hymenoptera_lite0/{variant}_{size}_s{seed}",
                     normalisation=norm, augment=AUGMENT, overwrite=True,  # a rerun of a recipe replaces its run
                     **options(parts, epochs, size, seed))  # fmt: skip
    h = run.history
    print(json.dumps({"variant": variant, "size": size, "epochs": epochs, "seed": seed,
                      "wall_s": round(time.time() - start, 1), "train": len(train), "val": len(val),
                      "train_loss": [round(float(x), 3) for x in h["train_loss"]],
                      "val_accuracy": [round(float(x), 4) for x in h["val_accuracy"]]}))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 0)
