"""A long fuzz campaign over the readers and the spec parser (the properties of tests/reliability/test_fuzz.py).

Every input must parse into a valid table/spec or raise ``CnnkitError``; anything else is a
bug. Unlike the CI test, a bug does not stop the run: each distinct one (exception type +
the cnnkit line that raised it) is counted and shown once with its first input.

    .venv/bin/python bench/perf/fuzz.py --examples 2000              # all targets
    .venv/bin/python bench/perf/fuzz.py --examples 500 --target csv --seeds 3 4
    .venv/bin/python bench/perf/fuzz.py --quick                      # 20 examples per target

Prints, per target (and seed): examples run, how many parsed, how many raised cnnkit's error, and bugs.
Exit code 1 when any bug was found.
"""

from __future__ import annotations

import importlib.util
import sys
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

from hypothesis import HealthCheck, given, seed, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.harness import ROOT, flags  # noqa: E402


def load_targets() -> ModuleType:
    """tests/reliability/test_fuzz.py as a module (strategies and checks live there, once)."""
    path = ROOT / "tests" / "reliability" / "test_fuzz.py"
    spec = importlib.util.spec_from_file_location("cnnkit_fuzz_targets", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _signature(exc: BaseException) -> str:
    """Exception type plus the innermost cnnkit frame: one line per distinct bug."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/cnnkit/" in f.filename]
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno} {frames[-1].name}" if frames else "outside cnnkit"
    return f"{type(exc).__name__} at {where}: {str(exc)[:100]}"


def run_target(name: str, strategy: Any, check: Any, examples: int, rng_seed: int) -> dict[str, Any]:
    outcomes: Counter[str] = Counter()
    bugs: dict[str, Any] = {}

    @seed(rng_seed)
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(value: Any) -> None:
        try:
            outcomes[check(value)] += 1
        except Exception as exc:  # noqa: BLE001 - recording bugs is the point
            outcomes["BUG"] += 1
            bugs.setdefault(_signature(exc), repr(value)[:300])

    start = time.perf_counter()
    run()
    return {"name": name, "outcomes": outcomes, "bugs": bugs, "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = flags.parser(__doc__, seeds={"help": "hypothesis seeds, one campaign each (default 0)"},
                          quick={"help": "20 examples per target"})
    parser.add_argument("--examples", type=int, default=1000, help="examples per target and seed")
    parser.add_argument("--target", action="append", help="only these targets (repeatable)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # readers warn about ignored regions and duplicates: expected here
    module = load_targets()
    names = args.target or sorted(module.TARGETS)
    examples = 20 if args.quick else args.examples
    results = []
    for rng_seed in args.seeds:
        print(f"{'target':10} {'examples':>8} {'parsed':>7} {'error':>6} {'bugs':>5} {'seconds':>8}"
              + (f"   (seed {rng_seed})" if len(args.seeds) > 1 else ""))
        for name in names:
            strategy, check = module.TARGETS[name]
            r = run_target(name, strategy, check, examples, rng_seed)
            o = r["outcomes"]
            print(f"{name:10} {sum(o.values()):>8} {o['table'] + o['spec']:>7} {o['error']:>6} {o['BUG']:>5} "
                  f"{r['seconds']:>8.1f}", flush=True)
            results.append(r)
    bugs: dict[tuple[str, str], str] = {}  # (target, signature) -> its first input over the seeds
    for r in results:
        for sig, example in r["bugs"].items():
            bugs.setdefault((r["name"], sig), example)
    for (name, sig), example in bugs.items():
        print(f"\nBUG [{name}] {sig}\n  first input: {example}")
    print(f"\n{len(bugs)} distinct bugs")
    return 1 if bugs else 0


if __name__ == "__main__":
    sys.exit(main())
