"""bench/perf: the performance family's quick modes, run in subprocesses as a user runs them.

The full runs take many minutes and write docs/PERFORMANCE.md; here the model and end-to-end
scripts run through ``bench/perf/run_all.py --quick`` and the GPU script through its CPU ``--quick``
path, so a broken import, flag or table shows up in ``make test``.
"""

from __future__ import annotations

import ast
import importlib
import json
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


def _run_quick(script: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """A perf script's quick mode in its own process, one torch thread (a loaded 2-core CI takes minutes)."""
    cmd = [sys.executable, str(PERF / script), "--quick", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def test_step_candidates_quick_times_each_candidate_against_v02s_default(tmp_path: Path) -> None:
    res = _run_quick("step_candidates.py", "--sets", "lips", "--configs", "foreach", "cache",
                     "--threads", "1", "--out", str(tmp_path))
    rows = {r[1]: r for r in _table_rows((tmp_path / "summary.md").read_text(), "lips")}
    assert list(rows) == ["v02", "foreach", "cache"]  # the reference always first
    assert rows["v02"][3] == "1.00" and all(float(r[2]) > 0 and float(r[5]) > 0 for r in rows.values())
    # the same steps from the same weights on the same batches: a foreach Adam keeps the v02 weights
    # (to rounding), and the decoded cache gives its pixels
    assert float(rows["foreach"][11]) <= 1e-5 and rows["cache"][12] == "0.00 / 0"
    assert float(rows["cache"][9]) > 0  # the cache was built (its one-off cost), the others not
    assert "8 training rows" in res.stdout and "Load average (`uptime`)" in res.stdout
    alone = {r[0]: r for r in _table_rows((tmp_path / "summary.md").read_text()) if r[0] in ("for-loop", "foreach",
                                                                                                "fused")}
    assert list(alone) == ["for-loop", "foreach", "fused"] and alone["for-loop"][3] == "1.00"


def test_time_to_accuracy_quick_trains_records_curves_and_estimates(tmp_path: Path) -> None:
    # one candidate (the default): a second doubled the suite's longest bench test; the table of several is
    # checked on made-up curves below
    _run_quick("time_to_accuracy.py", "--sets", "small", "--configs", "default", "--seeds", "0",
               "--threads", "1", "--out", str(tmp_path))
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"small_default_s0"}
    for r in results.values():
        assert len(r["curve"]) == 2 and r["curve"][1]["t_s"] > r["curve"][0]["t_s"] > 0  # wall time grows
        assert r["estimate"]["estimate_s"] > 0 and r["estimate"]["epochs"] == 2  # measured before training
        assert r["estimate"]["ended"] > r["estimate"]["probed"] > r["estimate"]["started"]
    log = (tmp_path / "small_default_s0" / "train.log").read_text()
    assert "Traceback" not in log
    summary = (tmp_path / "summary.md").read_text()
    assert [r[1] for r in _table_rows(summary, "small")][:1] == ["default"]
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert (tmp_path / "curves.csv").read_text().splitlines()[0] == "set,candidate,seed,epoch,step,val_px,time_s,t_s"


def test_time_to_accuracy_reads_the_speed_up_off_the_curves(tmp_path: Path) -> None:
    tta = _load("time_to_accuracy")

    def run(candidate: str, seed: int, points: list[tuple[float, float]]) -> dict[str, object]:
        curve = [{"epoch": i + 1, "step": 10 * (i + 1), "val_px": v, "time_s": 1.0, "t_s": t}
                 for i, (t, v) in enumerate(points)]
        return {"set": "lips", "candidate": candidate, "seed": seed, "curve": curve, "test_px": 1.0, "setup_s": 0.0,
                "load": 1.0, "steps_per_epoch": 10, "estimate": {"estimate_s": 3.0}}

    results = {"a": run("v02", 0, [(50, 4.0), (100, 3.0)]), "b": run("v02", 1, [(50, 4.0), (100, 2.0)]),
               "c": run("all", 0, [(20, 3.0), (40, 2.4)]), "d": run("all", 1, [(20, 2.4), (40, 2.0)]),
               "e": run("lite0in", 0, [(30, 9.0), (60, 8.0)])}
    assert tta.targets(results) == {"lips": 2.5}  # v0.2's default's final error, the mean of its seeds
    rows = {r[1]: r for r in _table_rows(tta.summary_table(results), "lips")}
    assert rows["v02"][9] == "100 (1/2)" and rows["v02"][10] == "1.00"  # seed 0 ended above the mean
    assert rows["all"][9] == "30 (2/2)" and rows["all"][10] == "3.33"  # under 2.5 px at 40 s and 20 s: 100 / 30
    assert rows["lite0in"][9] == "not reached" and rows["lite0in"][10] == "-"


def test_length_rule_and_estimates_read_a_history() -> None:
    from bench.harness import run_length as L

    falling = [10.0 / (e + 1) for e in range(40)]  # still 2.5 % better per epoch at the end: never converged
    assert L.stop_epoch(falling, steps_per_epoch=100) is None
    flat = [8.0, 5.0, 4.0, 3.5, 3.2] + [3.1] * 10
    assert L.stop_epoch(flat, steps_per_epoch=100) == 8  # 500 steps first; then the last quarter brought nothing
    assert L.stop_epoch(flat, steps_per_epoch=10) is None  # under 500 steps in all: the rule never speaks
    assert L.stop_epoch(flat, steps_per_epoch=100, tolerance=0.0) is None  # equal is not better
    est = L.epoch_estimates([5.0, 2.0, 4.0, 3.0], epochs=10)
    assert est == {"after 1 epoch": 50.0, "after 2 epochs": 5.0 + 9 * 2.0, "after 3 epochs": 5.0 + 9 * 3.0}
    curve = [{"t_s": 10.0, "val_px": 5.0}, {"t_s": 20.0, "val_px": 2.0}, {"t_s": 30.0, "val_px": 1.0}]
    assert L.time_to(curve, 2.0) == 20.0 and L.time_to(curve, 0.5) is None


def test_inference_cpu_quick_times_each_path_and_checks_it_against_fp32(tmp_path: Path) -> None:
    res = _run_quick("inference_cpu.py", "--arch", "resnet18", "--paths", "fp32", "bf16", "onnxruntime",
                     "--threads", "1", "--out", str(tmp_path))
    data = json.loads((tmp_path / "inference_cpu.json").read_text())
    assert set(data["fps"]["resnet18"]["64x48"]) == {"fp32", "bf16", "onnxruntime"}
    assert all(v > 0 for v in data["fps"]["resnet18"]["64x48"].values())
    dev = data["deviations"]["resnet18"]
    assert dev["fp32"] == [0.0, 0.0]  # the reference against itself
    assert dev["onnxruntime"][1] < 0.01  # the exported graph computes what PyTorch computes
    assert 0 < dev["bf16"][1] < 5  # bf16 moves the points a little, never wildly (the bar is judged on real models)
    rows = _table_rows(res.stdout, "resnet18")
    assert rows[0][1] == "64x48" and rows[0][-1].split(" ")[0] in ("fp32", "bf16", "onnxruntime")
    assert "DLC-Live Linux, Intel Xeon 3.1 GHz" in res.stdout  # the published table's columns are there


def test_inference_table_sets_the_fastest_path_beside_dlc_lives_figures_at_the_same_size() -> None:
    inf = _load("inference_cpu")
    fps = {"resnet18": {"115x87": {"fp32": 10.0, "bf16": 20.0}, "64x48": {"fp32": 50.0, "bf16": 40.0}}}
    rows = _table_rows(inf.dlc_table(fps))
    assert rows[2:] == [["115x87", "20.0", "-", "61 / 28", "28 / 23", "127 / 30"]]  # sizes DLC-Live has only
    speeds = {r[1]: r for r in _table_rows(inf.speed_table(fps, ["fp32", "bf16"]), "resnet18")}
    assert speeds["115x87"][-1] == "bf16 (2.00x)" and speeds["64x48"][-1] == "fp32 (1.00x)"
    assert all(len(v) == len(inf.DLC_SIZES) for cpu in inf.DLC_LIVE.values() for v in cpu.values())
