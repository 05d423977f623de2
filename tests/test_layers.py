"""The package's imports, drawn as a graph from the source (``ast``, nothing imported): no circle,
no import from a lower layer to a higher one, and the two apps never import each other.

The layers (``docs/architecture.md`` says the same): the library core, the scale-out modules
above it, then the apps (the experiments and the optimizer playground) over what they share, and
the command line on top. Every module of the package must be placed in one, so a new module
fails here until it is.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jaxopt_lectures"

CORE, SCALE_OUT, APP_BASE, APPS, COMMAND_LINE = range(5)
LAYER_NAMES = ("library core", "scale-out", "what the apps share", "apps", "command line")

# The first prefix that matches a module's name places it.
PLACES: tuple[tuple[str, int], ...] = (
    ("jaxopt_lectures.optimizers", CORE),
    ("jaxopt_lectures.nn", CORE),
    ("jaxopt_lectures.diagnostics", CORE),
    ("jaxopt_lectures.curvature", CORE),
    ("jaxopt_lectures.one_loop", CORE),
    ("jaxopt_lectures.packed", CORE),
    ("jaxopt_lectures.sharding", CORE),
    ("jaxopt_lectures.xla_options", CORE),
    ("jaxopt_lectures.compile_policy", CORE),
    ("jaxopt_lectures.problems", CORE),
    ("jaxopt_lectures._checks", CORE),
    ("jaxopt_lectures._tree", CORE),
    ("jaxopt_lectures._linalg", CORE),
    ("jaxopt_lectures.parallel", SCALE_OUT),
    ("jaxopt_lectures.distributed", SCALE_OUT),
    ("jaxopt_lectures.checkpoint", SCALE_OUT),
    ("jaxopt_lectures.launch", SCALE_OUT),
    ("jaxopt_lectures._app_common", APP_BASE),
    ("jaxopt_lectures.experiments", APPS),
    ("jaxopt_lectures.playground", APPS),
    ("jaxopt_lectures.cli", COMMAND_LINE),
    ("jaxopt_lectures.__main__", COMMAND_LINE),
)


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its ``__init__.py``)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its source (at the top, inside
    functions, under ``TYPE_CHECKING``): for ``from A import B``, module ``A.B`` if there is one,
    else ``A``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def layer(name: str) -> int:
    if name == "jaxopt_lectures":
        return CORE  # the package's front: the library's public names
    for prefix, place in PLACES:
        if name == prefix or name.startswith(prefix + "."):
            return place
    raise AssertionError(f"{name} is in no layer: place it in tests/test_layers.py and the docs")


def app(name: str) -> str:
    return name.split(".")[1]


def test_every_module_is_in_a_layer() -> None:
    unplaced = []
    for name in modules():
        try:
            layer(name)
        except AssertionError as err:
            unplaced.append(str(err))
    assert not unplaced, "\n".join(unplaced)


def test_no_import_goes_up_a_layer_and_the_apps_do_not_import_each_other() -> None:
    wrong = []
    for name, targets in graph().items():
        for target in targets:
            if layer(target) > layer(name):
                wrong.append(
                    f"{name} ({LAYER_NAMES[layer(name)]}) imports {target} "
                    f"({LAYER_NAMES[layer(target)]})"
                )
            elif layer(name) == layer(target) == APPS and app(name) != app(target):
                wrong.append(f"the app {name} imports the other app's {target}")
    assert not wrong, "\n".join(sorted(wrong))


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_imports_have_no_circle() -> None:
    assert cycles(graph()) == []


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ],
)
def test_cycles_finds_a_circle(edges: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert cycles(edges) == expected


def test_the_graph_sees_relative_lazy_and_from_imports() -> None:
    """The reader of the source finds the edges that matter (so the checks above can fail)."""
    edges = graph()
    assert "jaxopt_lectures.experiments.store" in edges["jaxopt_lectures.experiments.report"]
    assert "jaxopt_lectures.experiments.registry" in edges["jaxopt_lectures.cli"]  # lazy
    assert "jaxopt_lectures.playground" in edges["jaxopt_lectures.cli"]
    assert "jaxopt_lectures.problems" in edges["jaxopt_lectures.playground.problems"]
