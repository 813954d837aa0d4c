"""Smoke test of the benchmark scripts: each quick mode runs in a subprocess and prints its table.

The full runs take many minutes and write docs/PERFORMANCE.md; here the model and end-to-end
scripts run through ``bench/run_all.py --quick --no-write`` and the GPU script through its
CPU ``--dry-run`` path, so a broken import, flag or table shows up in ``make test``.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import yaml

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _table_rows(text: str, first_cell: str) -> list[list[str]]:
    """Cells of the Markdown table rows of ``text`` whose first cell is ``first_cell``."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]
    return [r for r in rows if r[0] == first_cell]


def test_run_all_quick_prints_every_table(tmp_path: Path) -> None:
    doc = ROOT / "docs" / "PERFORMANCE.md"
    before = doc.read_text(encoding="utf-8") if doc.exists() else None
    cmd = [sys.executable, str(BENCH / "run_all.py"), "--quick", "--no-write", "--only", "model_step", "end_to_end"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-3000:]
    out = res.stdout
    # model_step: the four (precision, memory format) rows for resnet18, positive speeds, a ratio.
    rows = _table_rows(out, "resnet18")
    steps = [r for r in rows if r[2] in ("fp32", "bf16")]
    assert [(r[2], r[3]) for r in steps] == [
        ("fp32", "contiguous"), ("fp32", "channels-last"), ("bf16", "contiguous"), ("bf16", "channels-last")
    ]
    assert all(float(r[4]) > 0 and float(r[5]) > 0 for r in steps)
    # the ratio column is cnnkit / reference (median of per-round ratios: near, not equal to, img/s a / b)
    assert all(0.2 < float(r[6]) < 5 for r in steps)
    assert steps[0][1] == "11,197,032"  # resnet18 with a 40-output gap head, the same for the reference
    # end_to_end: memory / cold / warm rows, memory is the 1.000 baseline.
    modes = {r[1]: r for r in rows if r[1] in ("memory", "cold, workers=2", "warm")}
    assert set(modes) == {"memory", "cold, workers=2", "warm"} and modes["memory"][3] == "1.000"
    assert float(modes["cold, workers=2"][2]) > 0 and float(modes["warm"][2]) > 0
    # the summary repeats the verdicts, and --no-write left the doc alone
    summary = out.split("=== summary", 1)[1]
    assert re.search(r"`model_step`: ok .*\n.*target >= 0\.98", summary)
    assert re.search(r"`end_to_end`: ok .*\n.*warm/memory \d\.\d{3}", summary)
    assert (doc.read_text(encoding="utf-8") if doc.exists() else None) == before


def test_gpu_bench_refuses_without_cuda_and_dry_run_writes_table(tmp_path: Path) -> None:
    gpu = _load("gpu_bench")
    if not gpu.torch.cuda.is_available():
        res = subprocess.run([sys.executable, str(BENCH / "gpu_bench.py")], capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and "no CUDA GPU" in res.stderr
    out = tmp_path / "gpu.md"
    cmd = [sys.executable, str(BENCH / "gpu_bench.py"), "--dry-run", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    cells = {r[0]: r for r in _table_rows(out.read_text(), "synthetic") + _table_rows(out.read_text(), "cache")}
    assert cells["synthetic"][2] == "1.000" and float(cells["cache"][1]) > 0
    assert "CPU (dry run)" in res.stdout


def test_run_all_commands_map_each_scripts_flags() -> None:
    run_all = _load("run_all")
    assert run_all.command("loader", True, False, None)[2:] == ["--quick"]
    assert run_all.command("loader", False, False, None)[2:] == ["--no-doc"]
    assert run_all.command("loader", False, True, None)[2:] == []
    assert run_all.command("augment", False, True, None)[2:] == ["--threads", "1", "--write"]
    assert "--write" not in run_all.command("augment", True, True, None)
    assert run_all.command("model_step", True, False, 2)[2:] == ["--quick", "--no-write", "--threads", "2"]
    assert run_all.command("peer_keras", False, True, 2)[2:] == ["--keras-bf16"]
    assert run_all.command("peer_keras", True, False, None)[2:] == ["--quick", "--no-write"]


def test_reference_resnets_match_cnnkit_parameter_counts() -> None:
    model_step = _load("model_step")
    x = model_step.torch.randn(2, 3, 92, 64, generator=model_step.torch.Generator().manual_seed(0))
    for arch in ("resnet18", "resnet50"):
        pair = model_step.build_pair(arch)
        assert model_step.n_params(pair["cnnkit"]) == model_step.n_params(pair["reference"])
        # same weights copied in: the same function, so the timing compares like with like
        with model_step.torch.no_grad():
            ours, ref = (pair[k].eval()(x) for k in ("cnnkit", "reference"))
        assert ours.shape == (2, 40) and model_step.torch.allclose(ours, ref, rtol=1e-4, atol=1e-5)
    # torchvision's counts with a 1000-class fc (the presets' parity target) pin the reference layout too
    assert model_step.n_params(model_step.RefResNet("resnet50", 1000)) == 25_557_032
    assert model_step.n_params(model_step.RefResNet("resnet18", 1000)) == 11_689_512


def test_device_pack_round_trip_keeps_every_pixel(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    src = tmp_path / "set"
    (src / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    pixels = {"a.png": rng.integers(0, 255, (20, 30, 3), dtype=np.uint8),
              "b.png": rng.integers(0, 255, (12, 16, 4), dtype=np.uint8)}  # RGBA, as faces68's
    for name, arr in pixels.items():
        Image.fromarray(arr).save(src / "images" / name)
    (src / "labels.csv").write_text("image,x\na.png,1\n")
    script = [sys.executable, str(BENCH / "device_pack.py")]
    subprocess.run([*script, "pack", str(src), str(tmp_path / "carried")], check=True, timeout=120)
    assert sorted(p.name for p in (tmp_path / "carried" / "images").iterdir()) == ["a.webp", "b.webp"]
    subprocess.run([*script, "unpack", str(tmp_path / "carried")], check=True, timeout=120)
    for name, arr in pixels.items():
        assert np.array_equal(np.asarray(Image.open(tmp_path / "carried" / "images" / name)), arr)
    assert (tmp_path / "carried" / "labels.csv").read_text() == "image,x\na.png,1\n"


def test_resolution_dry_run_trains_resize_and_crop_side_by_side(tmp_path: Path) -> None:
    cmd = [sys.executable, str(BENCH / "resolution.py"), "--dry-run", "--sets", "small", "--out", str(tmp_path)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = (tmp_path / "summary.md").read_text()
    runs = {r[1]: r for r in (_table_rows(summary, "small"))}
    assert set(runs) == {"resize", "crop160", "crop256"}
    assert all(float(r[6]) > 0 for r in runs.values())  # a test error in pixels for each


def test_equal_time_gives_each_candidate_the_earlier_files_cpu_time(tmp_path: Path) -> None:
    equal_time = _load("equal_time")
    costs = {"faces68": {"earlier": 6.0, "defaults": 14.0, "half_area_lite0in": 7.1}}
    budget, epochs = equal_time.budgets(costs, "faces68")
    assert budget == 6.0 * 40  # faces68_heatmap_aug.yaml runs 40 epochs
    assert epochs == {"earlier": 40, "defaults": 17, "half_area_lite0in": 33}  # floor: never more time than the file
    args = argparse.Namespace(out=tmp_path, data_root=ROOT.parent / "shared" / "data", workers=0, device="cpu",
                              dry_run=False)
    earlier = yaml.safe_load(equal_time.experiment("faces68", "earlier", 40, 1, args).read_text())
    assert earlier["data"]["size"] == "96x96" and earlier["model"]["head"]["stride"] == 8
    assert earlier["train"]["epochs"] == 40 and earlier["train"]["seed"] == 1 and earlier["train"]["loss"] == "mse"
    candidate = yaml.safe_load(equal_time.experiment("faces68", "half_area_lite0in", None, 0, args).read_text())
    assert candidate["model"] == {"spec": "efficientnet_lite0", "pretrained": "efficientnet_lite0"}
    assert candidate["data"]["size"] == "96x96" and "epochs" not in candidate["train"]  # None: the library's length
    assert "augment" not in candidate and "loss" not in candidate["train"]  # the rest is the library's default
    timed = yaml.safe_load(equal_time.experiment("faces68", "time_budget", None, 0, args, time_s=budget).read_text())
    assert timed["train"]["time"] == "240s" and "epochs" not in timed["train"] and "size" not in timed["data"]
    costs["faces68"]["time_budget"] = 1.0  # never measured as a cost (it measures itself), never given epochs
    assert "time_budget" not in equal_time.budgets(costs, "faces68")[1]
