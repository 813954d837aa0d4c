"""``SpecNet``: the model built from a spec; it keeps its spec and can rebuild itself."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

Shape = tuple[int, int, int]


class SpecNet(nn.Module):
    """A plain ``nn.Module``: the spec's layers in order, then an output head.

    Attributes:
        layers: ``nn.ModuleList``, one module per spec item (keys ``layers.<i>.*``).
        head_net: the output head module (keys ``head_net.*``).
        spec: the resolved raw list (presets expanded), JSON-serialisable.
        size: ``(width, height)`` of the input; channels, outputs: ints; head: head type (str).
        layer_kinds, layer_shapes: the kind and ``(C, H, W)`` output of every layer.
        taps: indices of layers whose outputs feed the head (heatmap head only).

    Shapes:
        ``[B, channels, height, width]`` float -> ``[B, outputs]``.
    """

    def __init__(
        self,
        layers: Sequence[nn.Module],
        head_net: nn.Module,
        *,
        spec: list[Any],
        size: tuple[int, int],
        channels: int,
        outputs: int,
        head: str,
        head_options: dict[str, Any],
        layer_kinds: Sequence[str],
        layer_shapes: Sequence[Shape],
        taps: Sequence[int] = (),
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.head_net = head_net
        self.spec = copy.deepcopy(spec)
        self.size = (int(size[0]), int(size[1]))
        self.channels, self.outputs, self.head = channels, outputs, head
        self.head_options = dict(head_options)
        self.layer_kinds = tuple(layer_kinds)
        self.layer_shapes = tuple(tuple(s) for s in layer_shapes)
        self.taps = tuple(taps)
        self.zero_init_residual = zero_init_residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The taps are fixed Python ints chosen at build time, so tracing records a fixed graph.
        feats: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.taps:
                feats.append(x)
        return self.head_net(feats) if self.taps else self.head_net(x)

    def config(self) -> dict[str, Any]:
        """JSON-serialisable arguments such that ``build_model(cfg.pop('spec'), **cfg)`` rebuilds this net."""
        head: str | dict[str, Any] = (
            {"type": self.head, **self.head_options} if self.head_options else self.head
        )
        return {
            "spec": copy.deepcopy(self.spec),
            "size": list(self.size),
            "channels": self.channels,
            "outputs": self.outputs,
            "head": head,
            "zero_init_residual": self.zero_init_residual,
        }

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the spec's layers (for a separate learning rate)."""
        return self.layers.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the output head."""
        return self.head_net.parameters()

    def extra_repr(self) -> str:
        return f"size={self.size}, channels={self.channels}, outputs={self.outputs}, head={self.head!r}"
