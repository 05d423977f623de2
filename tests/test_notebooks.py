"""The notebooks: one per part of the lecture, stored without outputs, executed top to bottom.

Each notebook runs headless in a fresh kernel (nbclient) from a copy in a temporary folder, so
nothing is written into the repository, with ``JAXOPT_LECTURES_FAST=1`` (fewer steps and epochs)
and the non-interactive matplotlib backend. Any cell error fails the test, so a change of the
public API that breaks a notebook breaks the suite.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = [
    "01_gradient_descent",
    "02_momentum_nag",
    "03_newton",
    "04_adaptive",
    "05_overfitting_dropout",
    "06_normalization",
    "07_composing_transforms",
    "08_curvature",
]
COLAB = (
    "https://colab.research.google.com/github/jaxopt-lectures/jaxopt_lectures/blob/main/notebooks/"
)
KERNEL = "jaxopt-lectures-tests"
CELL_TIMEOUT_S = 600


def _ids() -> list[str]:
    return [path.stem for path in NOTEBOOKS]


def _code(nb: nbformat.NotebookNode) -> list[str]:
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def test_one_notebook_per_part_of_the_lecture() -> None:
    """One notebook per part of the lecture, numbered in the lecture's order, and no other."""
    assert [path.stem for path in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids())
def test_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.outputs == [], f"{path.name}, cell {index}: has outputs; strip them"
        assert cell.execution_count is None, f"{path.name}, cell {index}: has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids())
def test_structure(path: Path) -> None:
    """A Colab badge, a Colab-only install cell first, the FAST switch, hidden solutions, and the
    library reached only through its public names."""
    nb = nbformat.read(path, as_version=4)
    first_markdown = next(cell.source for cell in nb.cells if cell.cell_type == "markdown")
    assert f"{COLAB}{path.name}" in first_markdown, "the Open in Colab badge is missing"
    code = _code(nb)
    assert 'if "google.colab" in sys.modules:' in code[0], "the first code cell installs on Colab"
    assert "pip" in code[0]
    assert any('os.environ.get("JAXOPT_LECTURES_FAST", "0") == "1"' in c for c in code[:2])
    markdown = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "markdown")
    assert "## Exercises" in markdown
    assert markdown.count("<details><summary>Solution</summary>") >= 2
    assert markdown.count("<details>") == markdown.count("</details>")
    assert "$$" in markdown, "the lecture's equations"
    source = "\n".join(code)
    assert "import jaxopt_lectures as jl" in source
    private = re.findall(r"jaxopt_lectures\.\w+|jl\._\w*", source)
    assert private == [], f"only the public API (jl.*): found {private}"


def test_readme_links_every_notebook() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "## Notebooks" in readme
    section = readme.split("## Notebooks", 1)[1].split("\n## ", 1)[0]
    for path in NOTEBOOKS:
        assert f"{COLAB}{path.name}" in section, f"README: no Colab badge for {path.name}"
        assert f"(notebooks/{path.name})" in section, f"README: no link to {path.name}"


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kernel spec that runs this interpreter, so the notebooks see the tested environment."""
    where = tmp_path_factory.mktemp("jupyter")
    spec = where / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"})
    )
    return where


@pytest.mark.integration  # a Jupyter kernel runs each notebook top to bottom
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids())
def test_executes(
    path: Path, tmp_path: Path, kernel_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_env))
    monkeypatch.setenv("JAXOPT_LECTURES_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    pythonpath = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(pythonpath))  # the checkout under test
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    nb = nbformat.read(copy, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error
    errors = [
        out
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert errors == []
