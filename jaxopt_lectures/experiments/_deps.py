"""Optional dependencies of the experiments, imported lazily with a one-line remedy when missing."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["INSTALL_HINT", "MissingDependencyError", "require"]

INSTALL_HINT = "pip install 'jaxopt_lectures[experiments]'"

_PACKAGES = {"matplotlib": "matplotlib", "sklearn": "scikit-learn", "tqdm": "tqdm"}


class MissingDependencyError(ImportError):
    """An optional dependency of the experiments is not installed; the message says what to do."""


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the install command.

    Example:
      >>> from jaxopt_lectures.experiments._deps import require
      >>> require("json").__name__
      'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = _PACKAGES.get(module.split(".")[0], module.split(".")[0])
        raise MissingDependencyError(
            f"the experiments need {package}, which is not installed: {INSTALL_HINT}"
        ) from err


def missing(modules: tuple[str, ...] = ("matplotlib", "sklearn", "tqdm")) -> list[str]:
    """The pip names of the optional dependencies in ``modules`` that cannot be imported."""
    absent = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            absent.append(_PACKAGES.get(module, module))
    return absent
