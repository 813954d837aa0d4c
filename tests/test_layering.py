"""Enforce the dependency rules of STYLE.md by scanning imports (AST, no execution)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "cnnkit"

# top-level package -> cnnkit packages it may import (itself always allowed)
BOTTOM = {"errors", "config", "rng", "geometry", "atomic"}  # import nothing of cnnkit but each other
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "config": {"errors"},
    "rng": set(),
    "geometry": set(),
    "atomic": set(),
    "spec": {"errors"},
    "layers": {"errors", "spec"},
    "model": {"errors", "spec", "layers"},
    "data": BOTTOM,
    "io": BOTTOM | {"spec", "layers", "model"},
    # the step set-up, the inference pipeline (it reads heatmap heads), device, metrics: shared by train and infer
    # (and trajectories: an ensemble's median and spread, the calibrated uncertainty)
    "engine": BOTTOM | {"data", "spec", "layers", "model", "trajectories"},
    "train": BOTTOM | {"spec", "layers", "model", "data", "io", "engine", "viz", "trajectories"},
    "infer": BOTTOM | {"spec", "layers", "model", "data", "io", "engine", "trajectories"},  # never train
    "viz": {"errors", "geometry", "atomic"},
    # trajectory maths (smoothing, EKS, calibration): numpy/pandas only, just above the bottom
    "trajectories": {"errors", "atomic"},
    # the run report scores a table with infer.evaluate and lays it out with viz; it reads a run's
    # experiment.yaml through experiment (which never imports it back: cli hooks it in after training)
    "reporting": BOTTOM | {"spec", "layers", "model", "data", "io", "engine", "infer", "viz", "experiment",
                           "trajectories"},
}
ON_TOP = {"compat", "cli", "__main__", "__init__", "demo", "experiment"}


def _cnnkit_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "cnnkit" and len(parts) > 1:
                found.add(parts[1])
    return found


def _package_of(path: Path) -> str:
    rel = path.relative_to(SRC).parts
    return rel[0].removesuffix(".py")


def test_import_rules_hold() -> None:
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        pkg = _package_of(path)
        used = _cnnkit_imports(path) - {pkg}
        if pkg in ON_TOP:
            continue
        bad = used - ALLOWED.get(pkg, set())
        problems += [f"{path.relative_to(SRC)} imports cnnkit.{b}" for b in sorted(bad)]
    assert not problems, "\n".join(problems)


def test_trajectories_import_only_numpy_and_pandas() -> None:
    allowed = {"numpy", "pandas", "cnnkit", "__future__"}
    for path in (SRC / "trajectories").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            third_party = {n.split(".")[0] for n in names} - allowed - set(sys.stdlib_module_names)
            assert not third_party, (path, third_party)  # no torch, no scipy: any caller can use it


def test_spec_is_torch_free() -> None:
    for path in (SRC / "spec").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] == "torch" for a in node.names), path
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.split(".")[0] != "torch", path


def test_nothing_imports_compat_or_cli() -> None:
    for path in SRC.rglob("*.py"):
        if _package_of(path) in {"compat", "cli", "__main__"}:
            continue
        used = _cnnkit_imports(path)
        assert not used & {"compat", "cli"}, path


def test_only_cnnkit_atomic_renames_files_into_place() -> None:
    # One atomic writer for every file cnnkit writes (before: five hand-made ones, one without fsync).
    hand_made = []
    for path in SRC.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if path.name != "atomic.py" and ("os.replace(" in text or "mkstemp(" in text or ".replace(path)" in text):
            hand_made.append(str(path.relative_to(SRC)))
    assert not hand_made, hand_made


def test_atomic_files_get_the_usual_permissions(tmp_path) -> None:
    import os

    from cnnkit.atomic import atomic_path, atomic_write_text

    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        with atomic_path(tmp_path / "b.png") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(umask)
    # Before: 0600 from mkstemp, so a report or checkpoint on a shared drive was private.
    assert {oct((tmp_path / n).stat().st_mode & 0o777) for n in ("a.txt", "b.png")} == {"0o644"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path, known: set[str]) -> set[str]:
    """The cnnkit modules ``path`` imports when it runs: top-level and deferred (inside functions) alike,
    ``if TYPE_CHECKING:`` blocks left out (they never execute)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped or not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (module -> modules it imports), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_cycles_between_modules() -> None:
    """No module imports, at any depth, one that imports it back, deferred imports included (a cycle hidden
    in a function is still a cycle: two modules that only make sense together). Package ``__init__``
    files are left out: they re-export their package's modules by design."""
    paths = {_module_name(p): p for p in SRC.rglob("*.py") if p.name != "__init__.py"}
    known = set(paths)
    graph = {name: _runtime_imports(path, known) - {name} for name, path in paths.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
