"""bench/accuracy: experiment files, the lips-via splits, and a quick side-by-side run through the launcher.

The real runs train for hours; here the resolution comparison trains tiny models for 2 epochs on
the CPU (``--quick``) through the harness's launcher and scorer, and the other scripts' experiment
files and commands are checked without training.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # bench/ is not installed; its scripts put the root on sys.path the same way

from bench.accuracy import backbones, equal_time, lips_sweep  # noqa: E402
from bench.harness import compare, datasets  # noqa: E402
from bench.harness.results import table_rows  # noqa: E402


def _args(tmp_path: Path, **over: object) -> argparse.Namespace:
    base = {"out": tmp_path, "data_root": DATA, "workers": 0, "device": "cpu", "quick": False, "epochs": None,
            "seeds": [0]}
    return argparse.Namespace(**{**base, **over})


def test_resolution_quick_trains_resize_and_crop_side_by_side(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "bench" / "accuracy" / "resolution.py"), "--quick", "--sets", "small",
           "--configs", "resize", "crop160", "--out", str(tmp_path)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)  # a loaded 2-core CI: minutes
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = (tmp_path / "summary.md").read_text()
    runs = {r[1]: r for r in table_rows(summary, "small")}
    assert set(runs) == {"resize", "crop160"}  # --configs: only these of the set's three
    assert all(r[3] == "2" and float(r[6]) > 0 for r in runs.values())  # 2 epochs, a test error in pixels each
    assert (tmp_path / "curves.csv").read_text().splitlines()[0] == "set,run,epoch,step,val_px,time_s"
    resize = yaml.safe_load((tmp_path / "small_resize" / "experiment.yaml").read_text())
    crop = yaml.safe_load((tmp_path / "small_crop160" / "experiment.yaml").read_text())
    assert resize["data"]["crop"] is False and resize["data"]["size"] == "64x48"  # quick: small whole frames
    assert crop["data"]["crop"] == {"size": "64x64"} and "size" not in crop["data"]
    assert (tmp_path / "small_crop160" / "train.log").stat().st_size > 0  # the launcher kept each run's output


def test_equal_time_gives_each_candidate_the_earlier_files_cpu_time(tmp_path: Path) -> None:
    costs = {"faces68": {"earlier": 6.0, "defaults": 14.0, "half_area_lite0in": 7.1}}
    budget, epochs = equal_time.budgets(costs, "faces68")
    assert budget == 6.0 * 40  # faces68_heatmap_aug.yaml runs 40 epochs
    assert epochs == {"earlier": 40, "defaults": 17, "half_area_lite0in": 33}  # floor: never more time than the file
    args = _args(tmp_path)
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


def test_lips_sections_use_extra_as_validation_and_lips50_keeps_50_and_40(tmp_path: Path, lips_dir: Path) -> None:
    section = datasets.data_section("lips50", lips_dir.parent, tmp_path)
    rows = [r["split"] for r in csv.DictReader(Path(section["split"]["file"]).open())]
    assert rows.count("train") == 50 and rows.count("val") == 40 and rows.count("test") == 392
    assert section["source"] == str(lips_dir / "via_project.json") and section["flip_pairs"] == "auto"
    table = datasets.lips_table(datasets.EXPERIMENTS / "lips_direct_noaug.yaml", lips_dir.parent)
    sizes = {part: len(datasets.split_part(table, part)) for part in ("train", "test", "extra")}
    assert sizes == {"train": 207, "test": 392, "extra": 108}


def test_backbones_names_runs_by_seed_only_when_a_call_trains_several(tmp_path: Path, lips_dir: Path) -> None:
    args = _args(tmp_path, data_root=lips_dir.parent, quick=True, seeds=[0, 1])
    model, train = backbones.CONFIGS["lite0_pretrained_blr"]
    names = [compare.run_name("lite0_pretrained_blr", s, args.seeds) for s in args.seeds]
    assert names == ["lite0_pretrained_blr_s0", "lite0_pretrained_blr_s1"]
    assert compare.run_name("resnet18", 1, [1]) == "resnet18"  # one seed: the folder names of earlier calls
    path = compare.experiment_file(tmp_path / f"lips_{names[1]}", "lips", 1, args, model=model,
                                   train={**train, **compare.length(args)})
    exp = yaml.safe_load(path.read_text())
    assert exp["model"] == compare.LITE0_IMAGENET and exp["output"] == str(tmp_path / "lips_lite0_pretrained_blr_s1" / "run")
    assert exp["train"] == {"backbone_lr": 1.0e-4, "epochs": 2, "device": "cpu", "seed": 1, "checkpoint_every": "5min",
                            "batch_size": 4}
    assert exp["data"]["size"] == "64x48" and exp["data"]["workers"] == 0


def test_lips_sweep_trains_the_base_file_with_each_configurations_overrides(tmp_path: Path) -> None:
    args = _args(tmp_path, threads=1, set=["train.epochs=3"])
    job = lips_sweep.train_job("flip_ema", 1, args)
    sets = [job.argv[i + 1] for i, word in enumerate(job.argv) if word == "--set"]
    assert job.argv[-len(sets) * 2 - 2:-len(sets) * 2] == ["train", str(lips_sweep.BASE)]
    assert sets[-3:] == ["augment.flip=true", "train.ema=0.99", "train.epochs=3"]  # the config, then --set
    assert f"output={(tmp_path / 'flip_ema_s1').resolve()}" in sets and "train.seed=1" in sets
    assert job.log == tmp_path / "flip_ema_s1.log" and job.env == {"OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("script", ["backbones", "resolution", "equal_time", "lips_sweep", "loop_lips"])
def test_side_by_side_scripts_share_the_run_flags(script: str) -> None:
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "accuracy" / f"{script}.py"), "--help"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    for flag in ("--out", "--data-root", "--seeds", "--parallel"):
        assert flag in res.stdout, (script, flag)


def test_smoothing_lips_finds_each_videos_labelled_frames_and_scores_a_table() -> None:
    from bench.accuracy import smoothing_lips as S

    tables = S.lips_tables(DATA)
    frames, truth, names = S.truth_of(tables, "008_xaud")
    assert sorted(frames.tolist())[:3] == [41, 125, 167] and len(frames) == 7  # img041.png is frame 41
    assert truth.shape == (7, len(names), 2) and np.isfinite(truth).all()
    assert len(tables["train"]) == 207 and len(tables["val"]) == 108  # splits.csv's train and extra
    assert S.truth_of(tables, "002_cal")[0].size == 7
    table = pd.DataFrame({"frame": [2, 0, 1], **{f"{n}_{a}": [2.0, 0.0, 1.0] for n in names for a in "xy"}})
    pts = S.points_of(table, names)
    assert pts.shape == (3, len(names), 2) and pts[:, 0, 0].tolist() == [0.0, 1.0, 2.0]  # sorted by frame


def test_ensembles_faces68_arm_keeps_each_person_in_one_split() -> None:
    """The faces68 arm's train / extra / test: faces68_library_defaults.yaml's split by person."""
    from bench.accuracy import ensembles

    parts = ensembles.set_tables("faces68")
    assert [len(parts[k]) for k in ("train", "extra", "test")] == [363, 80, 77]
    people = {k: set(v.df["person"]) for k, v in parts.items()}
    assert not people["train"] & people["test"] and not people["train"] & people["extra"]
    assert not people["extra"] & people["test"]
