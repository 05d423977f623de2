"""What every experiment receives (:class:`Context`) and returns (:class:`Result`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jaxopt_lectures.experiments.data import Dataset
from jaxopt_lectures.experiments.record import Claim, jsonable

__all__ = ["Claim", "Context", "Experiment", "Result", "jsonable"]


@dataclass
class Result:
    """An experiment's output: numbers for ``results.json``, figures, headlines, claims."""

    numbers: dict[str, Any]
    figures: list[str]
    headlines: list[tuple[str, str]]
    claims: list[Claim]
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Context:
    """The settings of a run, shared by every experiment.

    ``quick`` shrinks every experiment (fewer epochs, steps and seeds) so the whole run takes well
    under a minute; ``seed`` offsets every seed; ``data`` builds the data set on first use;
    ``advance(n)`` moves the experiment's progress bar.
    """

    out_dir: Path
    quick: bool = False
    seed: int = 0
    data_factory: Callable[[bool], Dataset] | None = None
    advance: Callable[[int], None] = lambda n: None
    _cache: dict[bool, Dataset] = field(default_factory=dict)

    def data(self, standardize: bool = True) -> Dataset:
        """The data set (digits by default), standardized with the training statistics or raw."""
        if standardize not in self._cache:
            if self.data_factory is None:
                from jaxopt_lectures.experiments.data import digits

                self._cache[standardize] = digits(seed=self.seed, standardize=standardize)
            else:
                self._cache[standardize] = self.data_factory(standardize)
        return self._cache[standardize]

    def seeds(self, full: int, quick: int) -> tuple[int, ...]:
        """``full`` (or in quick mode ``quick``) consecutive seeds starting at ``seed``."""
        return tuple(self.seed + i for i in range(quick if self.quick else full))

    def pick(self, full: Any, quick: Any) -> Any:
        """``quick`` in quick mode, else ``full``."""
        return quick if self.quick else full

    def figure_path(self, name: str) -> Path:
        """Where a figure file goes (inside the output folder)."""
        return self.out_dir / name


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: its CLI name, the lecture section it reproduces, and ``run``."""

    name: str
    title: str
    section: str
    summary: str
    stages: int
    run: Callable[[Context], Result]


def fmt(value: float, digits: int = 3) -> str:
    """A number for a report: ``3 sig. digits``, ``"never"`` for inf, ``"diverged"`` for NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "diverged"
    if isinstance(value, float) and math.isinf(value):
        return "never"
    return f"{value:.{digits}g}"


def mean_std(values: Sequence[float] | np.ndarray) -> str:
    """``"mean ± std"`` of finite values (3 significant digits)."""
    arr = np.asarray(values, np.float64).ravel()
    if arr.size == 1:
        return fmt(float(arr[0]))
    return f"{fmt(float(np.mean(arr)))} ± {fmt(float(np.std(arr)), 2)}"
