"""Sphinx configuration of the documentation site.

Build (from the repository root, after ``pip install -e ".[docs]"``)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

The build runs offline: no intersphinx inventories are fetched, notebooks are rendered from their
stored (output-free) cells without being executed, and external links are never followed.

Two folders are written into ``docs/`` by :func:`setup` on every build (both git-ignored):

- ``docs/notebooks/``: copies of ``notebooks/*.ipynb`` (Sphinx only reads files under ``docs/``);
- ``docs/api/modules/``: one reference page per public module that ``docs/api/*.md`` does not
  already cover by hand (the experiments' modules, for instance), so a new module is documented
  without editing the site.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

import jaxopt_lectures  # noqa: E402

project = "jaxopt_lectures"
author = "jaxopt_lectures developers"
copyright = "jaxopt_lectures developers"
release = jaxopt_lectures.__version__
version = release

extensions = [
    "myst_nb",  # Markdown (MyST) pages and notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build", "**/.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]

# Markdown: $...$ math as in the notebooks, ::: fences, anchors for the headings that pages link to.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# Notebooks are stored without outputs and rendered as they are: never executed by the build.
nb_execution_mode = "off"

# Every cross-reference must resolve (warnings are errors in the documented build command). Names
# from other libraries cannot resolve offline, since no intersphinx inventory is fetched.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(jax|jaxlib|jnp|optax|chex|numpy|np|matplotlib|flax|torch|sklearn|scipy)(\..*)?"),
    (r"py:.*", r"(ArrayLike|Array|DTypeLike|PyTree|Params|Updates|Schedule|ScalarOrSchedule)"),
    (r"py:.*", r"(collections|typing|pathlib|argparse|os|types|enum|dataclasses)\..*"),
    (r"py:.*", r"(NamedTuple|Callable|Sequence|Mapping|Iterable|Iterator|Any|Path)"),
    # Type aliases and type variables of the engine's and the experiments' signatures (not public
    # names), and the typing module's stand-in for a forward reference.
    (
        r"py:.*",
        r"(jaxopt_lectures\.experiments(\.\w+)*\.)?(OptimizerFactory|LossFn|K|R|T|Key)",
    ),
    (r"py:.*", r"TypeAliasForwardRef"),
]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True  # defaults as written (jnp.float32), not as repr()
# Show optax's and JAX's type aliases by name instead of the unions they stand for.
autodoc_type_aliases = {
    name: name
    for name in (
        "optax.ScalarOrSchedule",
        "optax.Schedule",
        "optax.Params",
        "optax.Updates",
        "optax.OptState",
        "ArrayLike",
        "jax.typing.ArrayLike",
    )
}
autodoc_default_options = {"show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # "Attributes:" as a field list: no second entry for NamedTuple fields

html_theme = "furo"
html_title = f"jaxopt_lectures {release}"
html_static_path: list[str] = []

# -------------------------------------------------------------------------------------------------
# Files generated into docs/ before Sphinx reads the sources
# -------------------------------------------------------------------------------------------------


def _sync_notebooks() -> None:
    """Copy ``notebooks/*.ipynb`` to ``docs/notebooks/`` (unchanged files keep their timestamp)."""
    target = DOCS / "notebooks"
    target.mkdir(exist_ok=True)
    sources = {path.name: path for path in sorted((ROOT / "notebooks").glob("*.ipynb"))}
    for stale in target.glob("*.ipynb"):
        if stale.name not in sources:
            stale.unlink()
    for name, source in sources.items():
        copy = target / name
        if not copy.exists() or copy.read_bytes() != source.read_bytes():
            shutil.copyfile(source, copy)


# The modules with hand-written reference pages (docs/api/<page>.md).
HAND_WRITTEN = {
    "jaxopt_lectures": "api/jaxopt_lectures",
    "jaxopt_lectures.nn": "api/nn",
    "jaxopt_lectures.diagnostics": "api/diagnostics",
    "jaxopt_lectures.curvature": "api/curvature",
}


def public_modules() -> list[str]:
    """Every public module of the package (no ``_private`` part in its name, no ``__main__``)."""
    names = ["jaxopt_lectures"]
    for info in pkgutil.walk_packages(jaxopt_lectures.__path__, prefix="jaxopt_lectures."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def generated_modules() -> list[str]:
    """Public modules that need a generated page: those not re-exported by a hand-written one.

    ``jaxopt_lectures.optimizers.adam``, for instance, only defines what the hand-written page
    documents as ``jaxopt_lectures.adam``, so it gets no page of its own.
    """
    covered = {
        id(getattr(module, name))
        for module in map(importlib.import_module, HAND_WRITTEN)
        for name in module.__all__
    }
    result = []
    for name in public_modules():
        if name in HAND_WRITTEN:
            continue
        module = importlib.import_module(name)
        exported = getattr(module, "__all__", None)
        if exported is None and module.__name__.startswith("jaxopt_lectures.optimizers"):
            continue  # the optimizers' package: nothing of its own
        if exported is not None and all(id(getattr(module, item)) in covered for item in exported):
            continue
        if exported is not None and _reexported_by_parent(module, exported):
            continue
        result.append(name)
    return result


def _reexported_by_parent(module: ModuleType, exported: list[str]) -> bool:
    """Whether the package above ``module`` exports every public name of it (the experiments'
    ``engine`` package re-exports its submodules' names): the package's page documents them, and
    a second page would give each name two targets."""
    parent = importlib.import_module(module.__name__.rpartition(".")[0])
    parent_objects = {id(getattr(parent, item)) for item in getattr(parent, "__all__", [])}
    return all(id(getattr(module, item)) in parent_objects for item in exported)


def _resolve_reexport(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve ``pkg.module.Name`` (how a type hint names a class) to the page that documents it
    as ``pkg.Name``, the public path it is re-exported under (``jaxopt_lectures.nn.MLPConfig``)."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    module, _, name = target.rpartition(".")
    domain = env.get_domain("py")
    while module:
        module = module.rpartition(".")[0]
        candidate = f"{module}.{name}" if module else name
        if candidate in domain.objects:
            return domain.resolve_xref(
                env, node["refdoc"], app.builder, node["reftype"], candidate, node, contnode
            )
    return None


def _directive(module: ModuleType, name: str) -> str:
    """The autodoc directive for one public name of ``module``."""
    obj = getattr(module, name)
    full = f"{module.__name__}.{name}"
    if inspect.isclass(obj):
        return f".. autoclass:: {full}\n   :members:\n"
    if inspect.isroutine(obj):
        return f".. autofunction:: {full}\n"
    long_value = len(repr(obj)) > 120  # a registry of functions, say: its repr helps nobody
    return f".. autodata:: {full}\n" + ("   :no-value:\n" if long_value else "")


def _defined_elsewhere(module: ModuleType, item: str, pages: set[str]) -> str | None:
    """The module that defines ``module.item`` when that is another module with a page of its
    own (``experiments.api`` re-exports ``record.Claim``): the name is documented there once."""
    obj = getattr(module, item)
    if not (inspect.isclass(obj) or inspect.isroutine(obj)):
        return None  # an instance (a registered experiment): its class's module is not its home
    home = obj.__module__
    return home if home != module.__name__ and home in pages else None


def _module_page(name: str, pages: set[str]) -> str:
    """A page with the module's docstring and an entry for every name in its ``__all__``; a name
    another page documents is listed with a link to it instead of a second entry."""
    module = importlib.import_module(name)
    entries, links = "", []
    for item in getattr(module, "__all__", []):
        home = _defined_elsewhere(module, item, pages)
        if home is None:
            entries += _directive(module, item)
        else:
            links.append(f"{{py:obj}}`~{home}.{item}`")
    text = f"# `{name}`\n\n```{{eval-rst}}\n.. automodule:: {name}\n\n{entries}```\n"
    if links:
        text += (
            "\nAlso exported here, documented where they are defined: " + ", ".join(links) + ".\n"
        )
    return text


def _no_type_docstring(
    app: object, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    """A constant without a ``#:`` doc comment would show its type's docstring: drop that."""
    if what != "data":
        return
    from sphinx.errors import PycodeError  # here, so that the tests can import this file alone
    from sphinx.pycode import ModuleAnalyzer

    module_name, _, attribute = name.rpartition(".")
    try:
        comments = ModuleAnalyzer.for_module(module_name).find_attr_docs()
    except PycodeError:
        return
    if ("", attribute) not in comments:
        lines.clear()


def _write_module_pages() -> None:
    """Write ``docs/api/modules/<module>.md`` for every module of :func:`generated_modules`."""
    target = DOCS / "api" / "modules"
    target.mkdir(parents=True, exist_ok=True)
    generated = generated_modules()
    pages = set(generated)
    wanted = {f"{name}.md": _module_page(name, pages) for name in generated}
    for stale in target.glob("*.md"):
        if stale.name not in wanted:
            stale.unlink()
    for file_name, text in wanted.items():
        path = target / file_name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


# Names a hand-written page re-exports from another hand-written page's module. viewcode must not
# follow them to their source: it would name every backlink of that source file's page after the
# page read first (``api/curvature`` before ``api/diagnostics``), anchors that do not exist.
REEXPORTED = {("jaxopt_lectures.curvature", "per_layer_grad_norms")}


def _viewcode_stay(app: Any, modname: str, attribute: str) -> str | None:
    return modname if (modname, attribute) in REEXPORTED else None


def setup(app: Any) -> dict[str, bool]:
    """Sphinx calls this before reading the sources: write the generated files."""
    app.connect("autodoc-process-docstring", _no_type_docstring, priority=100)  # before napoleon
    app.connect("missing-reference", _resolve_reexport)
    app.connect("viewcode-follow-imported", _viewcode_stay)
    _sync_notebooks()
    _write_module_pages()
    return {"parallel_read_safe": True}
