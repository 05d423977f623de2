"""The types between the layers: what an experiment is made of and what it hands on.

An experiment (one file in :mod:`jaxopt_lectures.experiments.lecture`) is four small functions
around one result type of its own, a ``NamedTuple`` of arrays and numbers:

- ``compute(config, seed) -> Result``: trains and measures; all numerical work, no drawing;
- ``figure(result) -> Figure | tuple[Figure, ...]``: draws the result (no computing);
- ``claims(result) -> list[Claim]``: judges the lecture's claims by rules stated in them;
- ``summarize(result) -> Summary``: headline numbers, the numbers behind the figure and the
  settings, for ``results.json`` and the report.

Every result carries ``timings`` (the compile and run time of its programs, collected by an
:class:`~jaxopt_lectures.experiments.engine.Timer`). The runner
(:mod:`~jaxopt_lectures.experiments.runner`) calls the four parts and builds the
:class:`~jaxopt_lectures.experiments.record.RunRecord` that is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, Protocol, TypeAlias, TypeVar

import numpy as np

from jaxopt_lectures.experiments.record import Claim

if TYPE_CHECKING:
    from jaxopt_lectures.experiments.data import Dataset
    from jaxopt_lectures.experiments.engine import Timing

__all__ = [
    "Animation",
    "Claim",
    "Config",
    "Experiment",
    "Figure",
    "Numbers",
    "Result",
    "Summary",
    "numbers_of",
    "seeds",
]

# The numbers an experiment reports: NumPy arrays and numbers, nested in mappings and sequences.
Numbers: TypeAlias = (
    "float | int | bool | str | np.ndarray | np.generic | Sequence[Numbers] | Mapping[str, Numbers]"
)


def _no_progress(steps: int) -> None:
    del steps


@dataclass(frozen=True)
class Config:
    """How to run an experiment: ``quick`` shrinks it (fewer epochs, steps and seeds) so that
    every experiment takes seconds; ``data_factory(standardize)`` builds the data set (``None``:
    scikit-learn's digits); ``advance(n)`` moves the progress bar by ``n`` stages."""

    quick: bool = False
    data_factory: Callable[[bool], Dataset] | None = None
    advance: Callable[[int], None] = field(default=_no_progress, compare=False)

    def pick(self, full: Any, quick: Any) -> Any:
        """``quick`` in quick mode, else ``full``."""
        return quick if self.quick else full

    def data(self, seed: int, standardize: bool = True) -> Dataset:
        """The data set split with ``seed``, standardized with the training statistics or raw."""
        if self.data_factory is not None:
            return self.data_factory(standardize)
        from jaxopt_lectures.experiments.data import digits

        return digits(seed=seed, standardize=standardize)


def seeds(config: Config, seed: int, full: int, quick: int) -> tuple[int, ...]:
    """``full`` (in quick mode ``quick``) consecutive seeds starting at ``seed``."""
    return tuple(seed + i for i in range(config.pick(full, quick)))


def numbers_of(
    result: tuple[Any, ...], skip: Sequence[str] = ("settings", "timings")
) -> dict[str, Numbers]:
    """A result ``NamedTuple``'s fields as the numbers of its :class:`Summary`, without ``skip``
    (the settings and timings, which the record keeps elsewhere)."""
    return {k: v for k, v in result._asdict().items() if k not in skip}  # type: ignore[attr-defined]


class Result(Protocol):
    """What every experiment's result type has (besides its own arrays and numbers)."""

    @property
    def timings(self) -> tuple[Timing, ...]: ...


class Animation(NamedTuple):
    """The moving part of an animated figure: ``draw_frame(frame)`` updates and returns the
    artists that change, for every frame in ``frames``, at ``fps`` frames per second."""

    draw_frame: Callable[[int], Sequence[Any]]
    frames: Sequence[int]
    fps: int = 10


class Figure(NamedTuple):
    """A drawn matplotlib figure and the file it goes to (``.png``, or ``.gif`` with an
    ``animation``)."""

    filename: str
    figure: Any
    animation: Animation | None = None


class Summary(NamedTuple):
    """What ``results.json`` and the report show of a result besides its claims."""

    headlines: Sequence[tuple[str, str]]
    numbers: Mapping[str, Numbers]
    settings: Mapping[str, Numbers]


R = TypeVar("R", bound=Result)


@dataclass(frozen=True)
class Experiment(Generic[R]):
    """A registered experiment: its CLI name, the lecture section it reproduces, and its parts.

    ``stages`` is the number of ``config.advance(1)`` calls ``compute`` makes (the progress bar
    adds one for drawing). ``exclusive`` marks an experiment whose numbers are wall-clock times:
    the CLI computes it with no other experiment computing beside it.
    """

    name: str
    title: str
    section: str
    summary: str
    stages: int
    compute: Callable[[Config, int], R]
    figure: Callable[[R], Figure | tuple[Figure, ...]]
    claims: Callable[[R], list[Claim]]
    summarize: Callable[[R], Summary]
    exclusive: bool = False
