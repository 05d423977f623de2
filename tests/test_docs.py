"""The documentation runs: every docstring example, the README's and the guide's Python code."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_lectures

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(jaxopt_lectures.__path__, prefix="jaxopt_lectures.")
    if not m.name.endswith("__main__")
)


# The examples are documentation, run the way the notebooks are: in the integration tier (they
# compile a few hundred small programs, and the unit tier checks the same numbers in its tests).
@pytest.mark.integration
@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def _run_python_blocks(path: Path) -> list[dict[str, Any]]:
    """Execute every ```python block of a Markdown file, each in a fresh namespace."""
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)
    assert blocks, f"{path.name} has no Python example"
    namespaces = []
    for block in blocks:
        namespace: dict[str, Any] = {}
        exec(compile(block, str(path), "exec"), namespace)
        namespaces.append(namespace)
    return namespaces


def test_readme_python_runs() -> None:
    (ten_lines,) = _run_python_blocks(ROOT / "README.md")
    # The ten-line example trains: NAG brings theta . A theta close to its minimum.
    assert float(ten_lines["loss"](ten_lines["w"])) < 1e-6


@pytest.mark.integration  # compiles a 40-leaf packed Adam step: several seconds
def test_getting_started_python_runs() -> None:
    namespaces = _run_python_blocks(ROOT / "docs" / "getting-started.md")
    ten_lines = namespaces[0]
    assert float(ten_lines["loss"](ten_lines["w"])) < 1e-6
    # The Newton example lands on the quadratic's minimizer in one step.
    newton = next(ns for ns in namespaces if "theta" in ns)
    np.testing.assert_allclose(newton["theta"], [0.0, 0.0], atol=1e-6)
    # The donated, packed training step ran and returned finite parameters of the same structure.
    fast = next(ns for ns in namespaces if "train_step" in ns)
    leaves = jax.tree.leaves(fast["params"])
    assert len(leaves) == 40
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in leaves)


def test_readme_stays_short() -> None:
    """The README is a pitch, the two commands, an example, a table and links: at most 200 lines."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move the details to docs/"


def test_readme_starts_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    first_block = lines[lines.index("```bash") + 1 : lines.index("```bash") + 3]
    assert "python -m jaxopt_lectures" in first_block[0]
    assert "python -m pytest" in first_block[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest" in ci
    assert "README.md" in ci
