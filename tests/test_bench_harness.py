"""bench/harness: the one set of flags, turns, docs sections and the launcher both bench families use."""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # bench/ is not installed; its scripts put the root on sys.path the same way

from bench.harness import flags, results, runs, timing  # noqa: E402

SCRIPTS = sorted((ROOT / "bench" / "perf").glob("*.py")) + sorted((ROOT / "bench" / "accuracy").glob("*.py"))
#: spellings the scripts used before the harness, for flags that now have one spelling
RETIRED = {"--no-write", "--no-doc", "--write-doc", "--dry-run", "--data", "--seed", "--batch-size", "--n",
           "--candidates", "--inputs"}


def _declared_flags(path: Path) -> list[str]:
    """The option strings a script declares itself (``add_argument("--x", ...)``), beside the harness's."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            found += [a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("--")]
    return found


def test_every_script_sits_in_a_family() -> None:
    loose = sorted(p.name for p in (ROOT / "bench").glob("*.py") if p.name != "__init__.py")
    assert loose == [], f"bench/ holds scripts outside bench/perf/ and bench/accuracy/: {loose}"


def test_scripts_take_shared_flags_from_the_harness_only() -> None:
    assert len(SCRIPTS) >= 20 and all(p.name != "_common.py" for p in SCRIPTS)
    shared = {"--" + name.replace("_", "-") for name in flags.FLAGS}
    for path in SCRIPTS:
        own = _declared_flags(path)
        assert not set(own) & shared, f"{path.name} declares a shared flag itself: {set(own) & shared}"
        assert not set(own) & RETIRED, f"{path.name} uses a retired spelling: {set(own) & RETIRED}"
        assert not re.search(r"\b_common\b", path.read_text()), path.name  # the module the harness replaced


def test_parser_overrides_a_shared_definition_and_reads_sizes_as_width_x_height() -> None:
    p = flags.parser("Doc line.\n\nmore", quick=True, write=True, images={"default": 3}, size=True, seeds=True)
    args = p.parse_args(["--size", "160x120", "--seeds", "0", "1"])
    assert (args.images, args.size, args.seeds, args.quick, args.write) == (3, (160, 120), [0, 1], False, False)
    assert p.description == "Doc line."
    with pytest.raises(SystemExit):
        p.parse_args(["--size", "160"])
    assert flags.should_write(p.parse_args(["--write"]))
    assert not flags.should_write(p.parse_args(["--write", "--quick"]))  # a smoke run never reaches the docs
    assert "--threads" not in p.format_help()  # only the flags a script names


def test_command_line_quotes_the_script_from_the_repository_root() -> None:
    script = ROOT / "bench" / "perf" / "loader.py"
    assert flags.command_line(script, ["--write"]) == "python bench/perf/loader.py --write"
    assert flags.command_line(ROOT / "bench" / "gpu.sh", [], prefix="") == "bench/gpu.sh"


def test_alternate_flips_or_rotates_the_order_after_the_warm_up() -> None:
    calls: list[tuple[str, int]] = []

    def call(name: str):  # noqa: ANN202
        return lambda r: calls.append((name, r)) or f"{name}{r}"

    out = timing.alternate({"a": call("a"), "b": call("b")}, rounds=3, warmup=1)
    assert calls == [("a", 1000), ("b", 1000), ("a", 0), ("b", 0), ("b", 1), ("a", 1), ("a", 2), ("b", 2)]
    assert out == {"a": ["a0", "a1", "a2"], "b": ["b0", "b1", "b2"]}
    assert timing.round_order("abc", 1, rotate=True) == ["b", "c", "a"]
    assert timing.round_order("abc", 3, rotate=True) == ["a", "b", "c"]


def test_write_section_replaces_only_its_own_section(tmp_path: Path) -> None:
    doc = tmp_path / "PERF.md"
    results.write_section("a", "first", doc)
    results.write_section("b", "other", doc)
    results.write_section("a", "second", doc)
    text = doc.read_text()
    assert text.count("<!-- bench:a -->") == 1 and "second" in text and "first" not in text
    assert text.index("<!-- bench:a -->") < text.index("<!-- bench:b -->") and "other" in text
    rows = results.table_rows(results.markdown_table(["x", "y"], [[1, 2], [3, 4]]), "3")
    assert rows == [["3", "4"]]


JOB = """
import json, os, sys, time
start = time.time()
wait_for, code = sys.argv[1], int(sys.argv[2])
while wait_for and not os.path.exists(wait_for) and time.time() - start < 60:
    time.sleep(0.01)
print(json.dumps({"v": os.environ["V"], "start": start, "end": time.time()}), flush=True)
open(os.environ["V"] + ".done", "w").close()
sys.exit(code)
"""


def test_launch_runs_jobs_n_at_a_time_and_hands_each_back_as_it_ends(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    # 'slow' ends only once 'bad' has run, so it must run beside the others; 'bad' must wait for a free slot
    jobs = [runs.Job([sys.executable, "-c", JOB, wait_for, exit_code], tmp_path / f"{name}.log", {"V": name})
            for name, wait_for, exit_code in (("slow", "bad.done", "0"), ("fast", "", "0"), ("bad", "", "3"))]
    ended: list[tuple[str, int]] = []
    runs.launch(jobs, 2, lambda job, rc, wall_s: ended.append((job.log.stem, rc)), poll_s=0.02)
    assert ended[0] == ("fast", 0) and sorted(ended) == [("bad", 3), ("fast", 0), ("slow", 0)]
    times = {name: runs.last_json((tmp_path / f"{name}.log").read_text()) for name in ("slow", "fast", "bad")}
    assert {name: t["v"] for name, t in times.items()} == {"slow": "slow", "fast": "fast", "bad": "bad"}  # own env
    assert times["bad"]["start"] >= times["fast"]["end"]  # two at a time: the third waited for a slot
    assert runs.child_json([sys.executable, "-c", "print('x'); print(1); print('[2, 3]')"]) == [2, 3]
    with pytest.raises(RuntimeError, match="exit 4"):
        runs.child_json([sys.executable, "-c", "import sys; print('why', file=sys.stderr); sys.exit(4)"])


def test_child_environment_puts_this_checkout_first() -> None:
    env = runs.child_env({"EXTRA": "1"})
    assert env["PYTHONPATH"].split(":")[0] == str(ROOT / "src") and env["EXTRA"] == "1"
    assert json.loads(json.dumps(runs.cnnkit_argv("train", "x.yaml")))[1:] == ["-m", "cnnkit", "train", "x.yaml"]
