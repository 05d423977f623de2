"""The documentation site: its API reference lists every public name, and it builds cleanly.

The unit tests read the reference's sources; the integration test builds the site with warnings
as errors (``docs/conf.py`` makes unresolved cross-references warnings), then reads the built
inventory (``objects.inv``) and follows every internal link of every page. A site built by the
documented command can be checked instead of building a new one: set ``JAXOPT_LECTURES_DOCS_HTML``
to its folder (``docs/_build/html``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API = DOCS / "api"

# A directive that documents an object, as written in the hand-written reference pages.
DIRECTIVE = re.compile(
    r"^\.\. (module|automodule|currentmodule|autofunction|autoclass|autodata|data|function|class)"
    r"::\s*(\S+)",
    flags=re.MULTILINE,
)


def _conf() -> ModuleType:
    """docs/conf.py as a module (importing it writes nothing: the generated files come later)."""
    spec = importlib.util.spec_from_file_location("docs_conf", DOCS / "conf.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _documented_in_sources() -> set[str]:
    """Fully qualified names that the hand-written pages ``docs/api/*.md`` document."""
    names = set()
    for page in sorted(API.glob("*.md")):
        current = ""
        for kind, target in DIRECTIVE.findall(page.read_text()):
            if kind in {"module", "automodule", "currentmodule"}:
                current = target
                names.add(target)
            elif target.startswith("jaxopt_lectures."):
                names.add(target)
            else:
                names.add(f"{current}.{target}")
    return names


def _public_names(module_name: str) -> set[str]:
    module = importlib.import_module(module_name)
    return {f"{module_name}.{name}" for name in module.__all__}


def test_hand_written_reference_lists_every_public_name() -> None:
    """Every name in ``__all__`` of jl, jl.nn and jl.diagnostics has an entry in docs/api/."""
    conf = _conf()
    documented = _documented_in_sources()
    for module_name, page in conf.HAND_WRITTEN.items():
        missing = sorted(_public_names(module_name) - documented)
        assert not missing, f"add these to docs/{page}.md: {missing}"


def test_every_other_public_module_gets_a_generated_page() -> None:
    """A public module is documented by hand (re-exported names), on a generated page, or through
    the generated page of the package above it that re-exports its names (the engine's)."""
    conf = _conf()
    generated = set(conf.generated_modules())
    hand_written = {
        id(getattr(module, name))
        for module in map(importlib.import_module, [*conf.HAND_WRITTEN, *generated])
        for name in getattr(module, "__all__", [])
    }
    assert "jaxopt_lectures.experiments.engine" in generated  # the main job's public API
    for module_name in conf.public_modules():
        if module_name in conf.HAND_WRITTEN or module_name in generated:
            continue
        module = importlib.import_module(module_name)
        exported = getattr(module, "__all__", [])
        orphans = [name for name in exported if id(getattr(module, name)) not in hand_written]
        assert not orphans, f"{module_name}: {orphans} appear on no reference page"


class _Page(HTMLParser):
    """The ids and the link targets of one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        target = values.get("href") if tag in {"a", "link"} else values.get("src")
        if target and tag in {"a", "link", "img", "script"}:
            self.links.append(target)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    prebuilt = os.environ.get("JAXOPT_LECTURES_DOCS_HTML")
    if prebuilt:
        return Path(prebuilt)
    pytest.importorskip("sphinx", reason="the docs extra is not installed")
    pytest.importorskip("myst_nb", reason="the docs extra is not installed")
    out = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    command += ["-d", str(out / "doctrees"), str(DOCS), str(out / "html")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert result.returncode == 0, f"the site did not build cleanly:\n{result.stderr[-5000:]}"
    return out / "html"


@pytest.mark.integration
def test_site_lists_every_public_name(site: Path) -> None:
    """The built inventory holds every public name of every public module (or its re-export)."""
    from sphinx.util.inventory import InventoryFile

    with (site / "objects.inv").open("rb") as stream:
        inventory: Any = InventoryFile.load(stream, "", lambda base, uri: uri)
    data = inventory.data if hasattr(inventory, "data") else inventory
    objects = {name for kind, entries in data.items() if kind.startswith("py:") for name in entries}
    conf = _conf()
    with_page = set(conf.HAND_WRITTEN) | set(conf.generated_modules())
    documented_ids = {}
    for name in objects:
        module_name, _, attribute = name.rpartition(".")
        if module_name in with_page and attribute:
            module = importlib.import_module(module_name)
            if hasattr(module, attribute):
                documented_ids[id(getattr(module, attribute))] = name
    for module_name in conf.public_modules():
        module = importlib.import_module(module_name)
        if module_name in with_page:
            assert module_name in objects, f"no reference entry for the module {module_name}"
        for name in getattr(module, "__all__", []):
            full = f"{module_name}.{name}"
            if full in objects:
                continue
            assert id(getattr(module, name)) in documented_ids, f"{full} is not in the reference"


@pytest.mark.integration
def test_site_internal_links_resolve(site: Path) -> None:
    """Every link between pages of the site leads to an existing file and, if any, anchor."""
    pages = {path.resolve(): _parse(path) for path in site.rglob("*.html")}
    assert len(pages) > 20
    broken = []
    for path, page in pages.items():
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith("mailto:"):
                continue  # external links are not fetched: the build runs offline
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{path.name} -> {link}")
            elif parts.fragment and target.suffix == ".html":
                target_page = pages.get(target) or _parse(target)
                if unquote(parts.fragment) not in target_page.ids:
                    broken.append(f"{path.name} -> {link} (no such anchor)")
    assert not broken, "broken internal links:\n" + "\n".join(sorted(broken)[:50])
