"""Tests for cnnkit.model.pretrained with state dicts named and shaped like torchvision's ResNets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from cnnkit.errors import CheckpointError
from cnnkit.model.builder import build_model
from cnnkit.model.pretrained import load_pretrained, torchvision_names


def _bn(sd: dict[str, torch.Tensor], prefix: str, c: int) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        sd[f"{prefix}.{name}"] = torch.randn(c)
    sd[f"{prefix}.num_batches_tracked"] = torch.tensor(7)


def torchvision_like(depth: int, classes: int = 1000) -> dict[str, torch.Tensor]:
    """Keys and shapes of torchvision.models.resnet<depth>() (written from its source layout)."""
    bottleneck = depth >= 50
    counts = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3)}[depth]
    sd = {"conv1.weight": torch.randn(64, 3, 7, 7)}
    _bn(sd, "bn1", 64)
    cin = 64
    for s, count in enumerate(counts, start=1):
        width = 64 * 2 ** (s - 1)
        cout = width * (4 if bottleneck else 1)
        for b in range(count):
            p = f"layer{s}.{b}"
            kernels = [(width, cin, 1), (width, width, 3), (cout, width, 1)] if bottleneck else [
                (width, cin, 3), (cout, width, 3)]  # fmt: skip
            for n, (o, i, k) in enumerate(kernels, start=1):
                sd[f"{p}.conv{n}.weight"] = torch.randn(o, i, k, k)
                _bn(sd, f"{p}.bn{n}", o)
            if b == 0 and (cin != cout or s > 1):
                sd[f"{p}.downsample.0.weight"] = torch.randn(cout, cin, 1, 1)
                _bn(sd, f"{p}.downsample.1", cout)
            cin = cout
    sd["fc.weight"], sd["fc.bias"] = torch.randn(classes, cin), torch.randn(classes)
    return sd


@pytest.mark.parametrize("depth", [18, 50])
def test_loads_every_backbone_tensor(depth: int, tmp_path: Path) -> None:
    sd = torchvision_like(depth)
    torch.save(sd, tmp_path / "w.pth")
    model = build_model(f"resnet{depth}", size=(64, 64), outputs=5)
    report = load_pretrained(model, tmp_path / "w.pth")
    assert report.skipped == ("fc.weight", "fc.bias") and report.missing == () and report.unexpected == ()
    assert len(report.loaded) == len(sd) - 2
    state = model.state_dict()
    assert torch.equal(state["layers.0.weight"], sd["conv1.weight"])
    assert torch.equal(state["layers.1.running_var"], sd["bn1.running_var"])
    last = f"layers.{len(model.layers) - 1}"
    assert torch.equal(
        state[f"{last}.conv2.weight"], sd["layer4.1.conv2.weight" if depth == 18 else "layer4.2.conv2.weight"]
    )
    assert torch.equal(state["layers.4.bn1.bias"], sd["layer1.0.bn1.bias"])


def test_safetensors_and_matching_fc(tmp_path: Path) -> None:
    sd = torchvision_like(18)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "w.safetensors"))
    model = build_model("resnet18", size=(32, 32), outputs=1000)
    report = load_pretrained(model, tmp_path / "w.safetensors")
    assert report.skipped == () and "head_net.fc.weight" in report.loaded
    assert torch.equal(model.head_net.fc.bias, sd["fc.bias"])


def test_names_follow_stages() -> None:
    names = torchvision_names(build_model("resnet50", size=(64, 64), outputs=2))
    assert names["conv1"] == "layers.0" and names["bn1"] == "layers.1"
    assert (
        names["layer1.0"] == "layers.4"
        and names["layer2.0"] == "layers.7"
        and names["layer4.2"] == "layers.19"
    )


def test_strict_lists_missing_and_unexpected(tmp_path: Path) -> None:
    sd = torchvision_like(18)
    del sd["layer3.1.conv2.weight"]
    sd["layer9.0.conv1.weight"] = torch.randn(1)
    torch.save(sd, tmp_path / "w.pth")
    model = build_model("resnet18", size=(32, 32), outputs=3)
    with pytest.raises(
        CheckpointError, match=r"1 missing, 1 unexpected\).*layers\.9\.conv2\.weight.*layer9\.0\.conv1"
    ):
        load_pretrained(model, tmp_path / "w.pth")
    report = load_pretrained(model, tmp_path / "w.pth", strict=False)
    assert report.missing == ("layers.9.conv2.weight",) and report.unexpected == ("layer9.0.conv1.weight",)


def test_wrong_architecture_reports_shapes(tmp_path: Path) -> None:
    torch.save(torchvision_like(50), tmp_path / "w50.pth")
    with pytest.raises(
        CheckpointError, match=r"conv1\.weight \(shape \(64, 64, 1, 1\) vs \(64, 64, 3, 3\)\)"
    ):
        load_pretrained(build_model("resnet18", size=(32, 32), outputs=3), tmp_path / "w50.pth")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such weights file"):
        load_pretrained(build_model("resnet18", size=(32, 32), outputs=3), tmp_path / "none.pth")
    (tmp_path / "bad.pth").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        load_pretrained(build_model("resnet18", size=(32, 32), outputs=3), tmp_path / "bad.pth")
