"""bench/perf: the performance family's quick modes, run in subprocesses as a user runs them.

The full runs take many minutes and write docs/PERFORMANCE.md; here the model and end-to-end
scripts run through ``bench/perf/run_all.py --quick`` and the GPU script through its CPU ``--quick``
path, so a broken import, flag or table shows up in ``make test``.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
PERF = ROOT / "bench" / "perf"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # bench/ is not installed; its scripts put the root on sys.path the same way

from bench.harness.results import table_rows as _table_rows  # noqa: E402


def _load(name: str) -> ModuleType:
    return importlib.import_module(f"bench.perf.{name}")


def test_run_all_quick_prints_every_table(tmp_path: Path) -> None:
    doc = ROOT / "docs" / "PERFORMANCE.md"
    before = doc.read_text(encoding="utf-8") if doc.exists() else None
    cmd = [sys.executable, str(PERF / "run_all.py"), "--quick", "--only", "model_step", "end_to_end"]
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
    # the summary repeats the verdicts, and a quick run left the doc alone
    summary = out.split("=== summary", 1)[1]
    assert re.search(r"`model_step`: ok .*\n.*target >= 0\.98", summary)
    assert re.search(r"`end_to_end`: ok .*\n.*warm/memory \d\.\d{3}", summary)
    assert (doc.read_text(encoding="utf-8") if doc.exists() else None) == before


def test_gpu_bench_refuses_without_cuda_and_quick_run_writes_table(tmp_path: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        res = subprocess.run([sys.executable, str(PERF / "gpu_bench.py")], capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and "no CUDA GPU" in res.stderr
    cmd = [sys.executable, str(PERF / "gpu_bench.py"), "--quick", "--out", str(tmp_path)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    text = (tmp_path / "gpu.md").read_text()
    cells = {r[0]: r for r in _table_rows(text, "synthetic") + _table_rows(text, "cache")}
    assert cells["synthetic"][2] == "1.000" and float(cells["cache"][1]) > 0
    assert "CPU (--quick run)" in res.stdout and "Command: `bench/gpu.sh --quick --out" in text


def _parser_flags(name: str) -> set[str]:
    """The shared flags a perf script's ``flags.parser(...)`` call names."""
    tree = ast.parse((PERF / f"{name}.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "parser"]
    assert len(calls) == 1, name
    return {k.arg for k in calls[0].keywords if k.arg}


def test_run_all_gives_every_script_the_same_flags_and_every_script_takes_them() -> None:
    run_all = _load("run_all")
    for name in run_all.ORDER:
        quick, write = run_all.command(name, True, True, None)[2:], run_all.command(name, False, True, None)[2:]
        assert quick[0] == "--quick" and "--write" not in quick and write[0] == "--write", name
        taken = _parser_flags(name)
        assert {"quick", "write"} <= taken, name
        assert "--threads" not in run_all.command(name, False, False, 2) or "threads" in taken, name
    assert run_all.command("augment", False, False, None)[2:] == ["--threads", "1"]  # one thread unless told
    assert run_all.command("model_step", True, False, 2)[2:] == ["--quick", "--threads", "2"]
    assert run_all.command("checkpoint_overhead", False, True, 2)[2:] == ["--write"]  # the 2 threads
    assert run_all.command("peer_keras", False, True, 2)[2:] == ["--write", "--keras-bf16"]


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
    script = [sys.executable, str(PERF / "device_pack.py")]
    subprocess.run([*script, "pack", str(src), str(tmp_path / "carried")], check=True, timeout=120)
    assert sorted(p.name for p in (tmp_path / "carried" / "images").iterdir()) == ["a.webp", "b.webp"]
    subprocess.run([*script, "unpack", str(tmp_path / "carried")], check=True, timeout=120)
    for name, arr in pixels.items():
        assert np.array_equal(np.asarray(Image.open(tmp_path / "carried" / "images" / name)), arr)
    assert (tmp_path / "carried" / "labels.csv").read_text() == "image,x\na.png,1\n"
