"""The playground's test functions: the 2-D problems of :mod:`jaxopt_lectures.problems` (the
experiments' definitions, imported, not copied), the quadratic at several condition numbers, and
Himmelblau's function with its four minima of equal depth, where the start point decides where a
method ends up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from jaxopt_lectures.problems import (
    HIMMELBLAU_MINIMA,
    Problem,
    beale,
    himmelblau,
    quadratic,
    rosenbrock,
    saddle,
)

__all__ = ["CONDITION_NUMBERS", "PlaygroundProblem", "himmelblau", "playground_problems"]

CONDITION_NUMBERS: tuple[float, ...] = (1.0, 5.0, 20.0, 100.0)
"""The quadratic's condition numbers kappa = a2 / a1 offered by the playground (a2 = 1)."""


class PlaygroundProblem(NamedTuple):
    """One test function of the page: a
    :class:`~jaxopt_lectures.problems.Problem` and how the page presents it.

    ``variant`` is the quadratic's condition number kappa (``None`` for the other functions);
    ``minima`` lists every minimum to mark on the contour plot.
    """

    key: str
    label: str
    problem: Problem
    variant: float | None
    minima: tuple[tuple[float, float], ...]


def _quadratic(kappa: float) -> PlaygroundProblem:
    # a2 = 1 fixed and a1 = 1 / kappa: the steep direction, and so every rate's stability limit,
    # stays the same while the flat direction gets flatter with kappa.
    return PlaygroundProblem(
        key=f"quadratic-{kappa:g}",
        label="quadratic θ·Aθ",
        problem=quadratic(a1=1.0 / kappa, a2=1.0),
        variant=kappa,
        minima=((0.0, 0.0),),
    )


def _fixed(key: str, label: str, factory: Callable[[], Problem]) -> PlaygroundProblem:
    problem = factory()
    minima: tuple[tuple[float, float], ...] = (problem.minimum,)
    if key == "himmelblau":
        minima = HIMMELBLAU_MINIMA
    elif key == "saddle":
        minima = ((0.0, 1.0), (0.0, -1.0))
    return PlaygroundProblem(key=key, label=label, problem=problem, variant=None, minima=minima)


def playground_problems() -> list[PlaygroundProblem]:
    """Every function (and every condition number of the quadratic) the page offers, in order.

    Example:
      >>> from jaxopt_lectures.playground.problems import playground_problems
      >>> [p.key for p in playground_problems()]  # doctest: +NORMALIZE_WHITESPACE
      ['quadratic-1', 'quadratic-5', 'quadratic-20', 'quadratic-100', 'rosenbrock', 'beale',
       'saddle', 'himmelblau']
    """
    return [
        *(_quadratic(kappa) for kappa in CONDITION_NUMBERS),
        _fixed("rosenbrock", "Rosenbrock", rosenbrock),
        _fixed("beale", "Beale", beale),
        _fixed("saddle", "saddle x² + y⁴/4 \N{MINUS SIGN} y²/2", saddle),
        _fixed("himmelblau", "Himmelblau (four minima)", himmelblau),
    ]
