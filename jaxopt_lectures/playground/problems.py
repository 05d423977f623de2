"""The playground's test functions: the experiments' 2-D problems plus one with several minima.

The quadratic, Rosenbrock, Beale and the saddle are the definitions of
:mod:`jaxopt_lectures.experiments.problems` (imported, not copied). :func:`himmelblau` adds a
function with four minima of equal depth, so the start point decides where a method ends up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax

from jaxopt_lectures.experiments.problems import Problem, beale, quadratic, rosenbrock, saddle

__all__ = ["CONDITION_NUMBERS", "PlaygroundProblem", "himmelblau", "playground_problems"]

CONDITION_NUMBERS: tuple[float, ...] = (1.0, 5.0, 20.0, 100.0)
"""The quadratic's condition numbers kappa = a2 / a1 offered by the playground (a2 = 1)."""


def himmelblau() -> Problem:
    r"""Himmelblau's function :math:`(x^2 + y - 11)^2 + (x + y^2 - 7)^2` (Himmelblau, 1972).

    Four minima of value 0, at (3, 2), about (-2.805, 3.131), (-3.779, -3.283) and
    (3.584, -1.848), a local maximum near (-0.271, -0.923) and saddle points between them: which
    minimum a method reaches depends on where it starts and on how far its first steps throw it.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxopt_lectures.playground.problems import himmelblau
      >>> float(himmelblau().loss(jnp.array([3.0, 2.0])))
      0.0
    """

    def loss(theta: jax.Array) -> jax.Array:
        x, y = theta[0], theta[1]
        return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2

    return Problem(
        name="himmelblau",
        loss=loss,
        x0=(-0.5, 0.5),
        minimum=(3.0, 2.0),
        min_value=0.0,
        xlim=(-5.0, 5.0),
        ylim=(-5.0, 5.0),
        formula=r"$(x^2 + y - 11)^2 + (x + y^2 - 7)^2$",
    )


class PlaygroundProblem(NamedTuple):
    """One test function of the page: a
    :class:`~jaxopt_lectures.experiments.problems.Problem` and how the page presents it.

    ``variant`` is the quadratic's condition number kappa (``None`` for the other functions);
    ``minima`` lists every minimum to mark on the contour plot.
    """

    key: str
    label: str
    problem: Problem
    variant: float | None
    minima: tuple[tuple[float, float], ...]


HIMMELBLAU_MINIMA = (
    (3.0, 2.0),
    (-2.805118, 3.131312),
    (-3.779310, -3.283186),
    (3.584428, -1.848126),
)


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
