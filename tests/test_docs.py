"""The documentation runs: every docstring example and the README's Python code."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import jaxopt_lectures

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(jaxopt_lectures.__path__, prefix="jaxopt_lectures.")
    if not m.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_readme_python_runs() -> None:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert blocks, "the README has no Python example"
    namespaces = []
    for block in blocks:
        namespace: dict[str, Any] = {}
        exec(compile(block, "README.md", "exec"), namespace)
        namespaces.append(namespace)
    # The ten-line example trains: NAG brings theta . A theta close to its minimum.
    first = namespaces[0]
    assert float(first["loss"](first["w"])) < 1e-6
    # The Newton example lands on the quadratic's minimizer in one step.
    newton = next(ns for ns in namespaces if "theta" in ns)
    np.testing.assert_allclose(newton["theta"], [0.0, 0.0], atol=1e-6)


def test_readme_starts_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    first_block = lines[lines.index("```bash") + 1 : lines.index("```bash") + 3]
    assert "python -m jaxopt_lectures" in first_block[0]
    assert "python -m pytest" in first_block[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest" in ci
    assert "README.md" in ci
