"""The optimizers' modules: two floors without a cycle, and equations that read no switch.

``optimizers/transform.py`` holds the blocks every alias composes and imports no other optimizer
module; the method modules import from it (never a cycle). No optimizer module reads the
environment or a backend switch: what a backend needs is a wrapper (``jl.one_loop``)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import jaxopt_lectures as jl

PACKAGE = Path(jl.__file__).parent / "optimizers"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def sibling_imports(name: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{name}.py").read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[:2] == ["jaxopt_lectures", "optimizers"] and len(parts) == 3:
                found.add(parts[2])
    return found


def test_no_import_cycle_and_blocks_on_the_lower_floor() -> None:
    graph = {name: sibling_imports(name) for name in MODULES}
    assert graph["transform"] == set()

    def reaches(start: str, target: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(
            nxt == target or (nxt not in seen and reaches(nxt, target, seen | {nxt}))
            for nxt in graph[start]
        )

    assert not [name for name in MODULES if reaches(name, name)]


@pytest.mark.parametrize("name", MODULES)
def test_equations_read_no_switch(name: str) -> None:
    source = (PACKAGE / f"{name}.py").read_text(encoding="utf-8")
    for word in ("xla_options", "optimization_barrier", "_one_loop", "XLA_FLAGS", "os.environ"):
        assert word not in source, (name, word)


def test_old_import_paths_still_work() -> None:
    sgd = importlib.import_module("jaxopt_lectures.optimizers.sgd")
    momentum = importlib.import_module("jaxopt_lectures.optimizers.momentum")
    assert sgd.scale_by_learning_rate is jl.scale_by_learning_rate
    assert sgd.ScaleByLearningRateState is jl.ScaleByLearningRateState
    assert sgd.descent is importlib.import_module("jaxopt_lectures.optimizers.transform").descent
    assert momentum.trace is jl.trace
    assert momentum.TraceState is jl.TraceState
