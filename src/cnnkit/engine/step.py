"""One step's view of a batch: shared by training, validation, prediction and compat.

What turns loader pixels into network input lives here (``StepSetup.inputs`` for training,
``StepSetup.network_input`` for every inference path), so that training, validation and
prediction see exactly the same pixels. Inference itself: :mod:`cnnkit.engine.inference`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from cnnkit import geometry
from cnnkit.config import CropConfig
from cnnkit.data.augment import Augment, augment_batch
from cnnkit.engine import tensors as T


@dataclass(frozen=True)
class StepSetup:
    """What every step needs to know; built once per run."""

    task: str  # 'landmarks' | 'classes'
    size: tuple[int, int]  # (width, height) of the network input
    mean: tuple[float, ...]
    std: tuple[float, ...]
    device: torch.device
    precision: str = "fp32"
    channels_last: bool = False
    augment: Augment = field(default_factory=Augment)
    flip_perm: list[int] | None = None
    crop: CropConfig | None = None  # crop-trained: views of frames (cnnkit.engine.two_pass, full_frame)

    @classmethod
    def for_model(cls, meta: Mapping[str, Any], device: torch.device, precision: str = "fp32") -> StepSetup:
        """How a model file's metadata says its images are read (predict; calibration at the end of a run)."""
        norm = meta["normalisation"]
        return cls(task=meta["task"], size=(int(meta["size"][0]), int(meta["size"][1])), mean=tuple(norm["mean"]),
                   std=tuple(norm["std"]), device=device, precision=precision, crop=CropConfig.parse(meta.get("crop")))

    def for_inference(self) -> StepSetup:
        """This setup as ``predict`` reads images: fp32 whatever training ran in, so validation measures
        what the user will get (bf16 inference moved points by up to 0.11 px; docs/PERFORMANCE.md)."""
        return replace(self, precision="fp32")

    def network_input(self, images_u8: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, C, H, W]`` -> normalised float on the device, as training fed the network (no augmentation)."""
        images = T.to_unit_float(images_u8.to(self.device, non_blocking=True), channels_last=self.channels_last)
        return T.normalise(images, self.mean, self.std)

    def inputs(
        self, batch: Mapping[str, torch.Tensor], *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch -> (normalised images on device, target on device). Augments when a generator is given."""
        points = batch["points"].to(self.device, non_blocking=True)
        if generator is None or not self.augment.enabled:
            images = self.network_input(batch["image"])
        else:  # augmented in [0, 1], before normalising
            images = T.to_unit_float(batch["image"].to(self.device, non_blocking=True), channels_last=self.channels_last)
            images, points = augment_batch(images, points, self.augment, generator=generator, flip_perm=self.flip_perm)
            images = T.normalise(images, self.mean, self.std)
        if self.task == "landmarks":
            return images, geometry.input_to_norm(points, self.size)
        return images, batch["label"].to(self.device, non_blocking=True)

    def prediction(self, output: torch.Tensor) -> torch.Tensor:
        """Raw network output -> normalised points (B, K, 2) or class logits (B, C), float32."""
        output = output.float()
        return geometry.flat_to_points(output) if self.task == "landmarks" else output


