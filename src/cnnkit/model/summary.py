"""``summary``: a per-layer table (index, type, output shape, params) with totals and MACs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnkit.errors import ConfigError
from cnnkit.model.builder import build_model
from cnnkit.model.defaults import preset_of
from cnnkit.model.net import SpecNet


@dataclass(frozen=True)
class SummaryRow:
    """One row: layer index (or 'head'), type, output ``(C, H, W)`` (or ``(outputs,)``), params, MACs."""

    index: str
    kind: str
    shape: tuple[int, ...]
    params: int
    macs: int


@dataclass(frozen=True)
class Summary:
    """Per-layer table of a model. ``str()`` prints it; ``params`` and ``macs`` are totals.

    ``macs`` counts multiply-accumulates of convolutions and fully connected layers for one
    image (the usual "FLOPs" figure of papers: ResNet-50 at 224x224 is about 4.1 G).
    """

    rows: tuple[SummaryRow, ...]
    params: int
    trainable: int
    macs: int
    input_shape: tuple[int, int, int]

    def __str__(self) -> str:
        head = f"{'#':>5}  {'type':<16} {'output (C, H, W)':<20} {'params':>12} {'MACs':>15}"
        lines = [f"input (C, H, W) = {self.input_shape}", head, "-" * len(head)]
        for r in self.rows:
            lines.append(f"{r.index:>5}  {r.kind:<16} {str(r.shape):<20} {r.params:>12,} {r.macs:>15,}")
        lines += [
            "-" * len(head),
            f"total params: {self.params:,} (trainable {self.trainable:,})",
            f"MACs per image: {self.macs:,} ({self.macs / 1e9:.2f} G)",
        ]
        return "\n".join(lines)


def _count_macs(model: SpecNet, parts: Sequence[nn.Module]) -> list[int]:
    """Run one zero image through the model and count conv/linear MACs per part."""
    macs = [0] * len(parts)
    hooks = []
    for n, part in enumerate(parts):
        for m in part.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):

                def hook(mod: nn.Conv2d | nn.Linear, inp: Any, out: torch.Tensor, n: int = n) -> None:
                    per_out = mod.weight[0].numel()  # Cin/groups * kh * kw, or in_features
                    macs[n] += out[0].numel() * per_out

                hooks.append(m.register_forward_hook(hook))
    device = next(model.parameters(), torch.zeros(())).device
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, model.channels, model.size[1], model.size[0], device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return macs


def summary(
    spec_or_model: SpecNet | str | Path | Sequence[Any],
    *,
    size: Sequence[int] | None = None,
    channels: int = 3,
    outputs: int | None = None,
    head: Any = None,
) -> Summary:
    """Summarise a built model, or build one from a spec first.

    Args:
        spec_or_model: a ``SpecNet``, or anything ``build_model`` accepts.
        size: input ``(width, height)``; required for a spec, ignored for a model.
        channels, head: as in ``build_model`` (spec only).
        outputs: head outputs (spec only); default 1000 for presets, 22 (the seed's ``fc``) otherwise.
    """
    if isinstance(spec_or_model, SpecNet):
        model = spec_or_model
    else:
        if size is None:
            raise ConfigError("summary of a spec needs size=(width, height), e.g. size=(224, 224).")
        n_out = outputs if outputs is not None else (1000 if preset_of(spec_or_model) else 22)
        model = build_model(spec_or_model, size=size, channels=channels, outputs=n_out, head=head)
    parts = [*model.layers, model.head_net]
    macs = _count_macs(model, parts)
    rows = [
        SummaryRow(str(i), kind, tuple(shape), sum(p.numel() for p in part.parameters()), macs[i])
        for i, (kind, shape, part) in enumerate(
            zip(model.layer_kinds, model.layer_shapes, model.layers, strict=True)
        )
    ]
    head_params = sum(p.numel() for p in model.head_net.parameters())
    rows.append(SummaryRow("head", model.head, (model.outputs,), head_params, macs[-1]))
    return Summary(
        rows=tuple(rows),
        params=sum(p.numel() for p in model.parameters()),
        trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
        macs=sum(macs),
        input_shape=(model.channels, model.size[1], model.size[0]),
    )
