"""Small test problems from the lecture and the optimization literature, as JAX functions.

Below both apps: the experiments (the landscape's basin map, the race) and the optimizer
playground take their 2-D functions from here.

Each :class:`Problem` is a loss on two parameters with a known minimum, a starting point and a
plotting window, so a trajectory can be drawn on the contour lines:

- :func:`quadratic`: the lecture's L(theta) = theta . A theta, A = diag(a1, a2) with a1 << a2, whose
  level curves are thin ellipses: gradient descent zig-zags, Newton-Raphson jumps to the minimum.
- :func:`rosenbrock`: a curved, flat-bottomed valley (Rosenbrock, 1960).
- :func:`beale`: flat plateaus and sharp ridges (Beale, 1958).
- :func:`saddle`: a saddle point at the origin between two minima, the trap the adaptive methods
  escape quickly and plain Newton is attracted to.
- :func:`himmelblau`: four minima of equal depth (:data:`HIMMELBLAU_MINIMA`), so the start point
  decides where a method ends up (Himmelblau, 1972).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "HIMMELBLAU_MINIMA",
    "PROBLEMS",
    "Problem",
    "beale",
    "himmelblau",
    "quadratic",
    "rosenbrock",
    "saddle",
]


class Problem(NamedTuple):
    """A 2-D minimization problem: ``loss(theta) -> scalar`` for ``theta`` of shape ``(2,)``."""

    name: str
    loss: Callable[[jax.Array], jax.Array]
    x0: tuple[float, float]
    minimum: tuple[float, float]
    min_value: float
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    formula: str


def quadratic(a1: float = 1.0, a2: float = 20.0, x0: tuple[float, float] = (-1.0, 0.8)) -> Problem:
    r"""The lecture's quadratic form :math:`L(\vartheta) = \vartheta \cdot A \vartheta`,
    :math:`A = \mathrm{diag}(a_1, a_2)`, :math:`a_1 \ll a_2`: gradient 2 A theta, Hessian 2 A.

    Gradient descent is stable only for eta < 1 / a2 and then shrinks the flat direction by
    (1 - 2 eta a1) per step; Newton's step :math:`-H^{-1} g = -\vartheta` lands on 0 at once.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxopt_lectures.problems import quadratic
      >>> float(quadratic(1.0, 20.0).loss(jnp.array([1.0, 1.0])))
      21.0
    """
    if not 0 < a1 <= a2:
        raise ValueError(f"need 0 < a1 <= a2, got a1={a1}, a2={a2}")
    A = jnp.array([a1, a2], jnp.float32)

    def loss(theta: jax.Array) -> jax.Array:
        return jnp.sum(theta * A * theta)

    return Problem(
        name="quadratic",
        loss=loss,
        x0=x0,
        minimum=(0.0, 0.0),
        min_value=0.0,
        xlim=(-1.2, 1.2),
        ylim=(-1.0, 1.0),
        formula=rf"$\theta \cdot A \theta$, $A = \mathrm{{diag}}({a1:g}, {a2:g})$",
    )


def rosenbrock() -> Problem:
    r"""Rosenbrock's valley :math:`(1 - x)^2 + 100 (y - x^2)^2`, minimum 0 at (1, 1).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxopt_lectures.problems import rosenbrock
      >>> float(rosenbrock().loss(jnp.array([1.0, 1.0])))
      0.0
    """

    def loss(theta: jax.Array) -> jax.Array:
        x, y = theta[0], theta[1]
        return (1 - x) ** 2 + 100 * (y - x**2) ** 2

    return Problem(
        name="rosenbrock",
        loss=loss,
        x0=(-1.2, 1.0),
        minimum=(1.0, 1.0),
        min_value=0.0,
        xlim=(-1.6, 1.6),
        ylim=(-0.6, 1.8),
        formula=r"$(1 - x)^2 + 100\,(y - x^2)^2$",
    )


def beale() -> Problem:
    r"""Beale's function :math:`\sum_{i=1}^3 (c_i - x + x y^i)^2`, c = (1.5, 2.25, 2.625),
    minimum 0 at (3, 0.5).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxopt_lectures.problems import beale
      >>> float(beale().loss(jnp.array([3.0, 0.5])))
      0.0
    """

    def loss(theta: jax.Array) -> jax.Array:
        x, y = theta[0], theta[1]
        return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2

    return Problem(
        name="beale",
        loss=loss,
        x0=(1.0, 1.4),
        minimum=(3.0, 0.5),
        min_value=0.0,
        xlim=(-0.5, 4.0),
        ylim=(-1.0, 2.0),
        formula=r"$\sum_{i=1}^{3} (c_i - x + x y^i)^2$",
    )


def saddle(x0: tuple[float, float] = (1.0, 1e-3)) -> Problem:
    r"""A saddle between two valleys: :math:`x^2 + y^4/4 - y^2/2`, saddle point at the origin,
    minima -1/4 at (0, +-1). Starting next to the ridge y = 0 the gradient along y is tiny.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxopt_lectures.problems import saddle
      >>> float(saddle().loss(jnp.array([0.0, 1.0])))
      -0.25
    """

    def loss(theta: jax.Array) -> jax.Array:
        x, y = theta[0], theta[1]
        return x**2 + 0.25 * y**4 - 0.5 * y**2

    return Problem(
        name="saddle",
        loss=loss,
        x0=x0,
        minimum=(0.0, 1.0),
        min_value=-0.25,
        xlim=(-1.2, 1.2),
        ylim=(-0.6, 1.4),
        formula=r"$x^2 + y^4/4 - y^2/2$",
    )


HIMMELBLAU_MINIMA: tuple[tuple[float, float], ...] = (
    (3.0, 2.0),
    (-2.805118, 3.131312),
    (-3.779310, -3.283186),
    (3.584428, -1.848126),
)
"""Himmelblau's four minima (value 0), the exact one first, the others to six decimals."""


def himmelblau() -> Problem:
    r"""Himmelblau's function :math:`(x^2 + y - 11)^2 + (x + y^2 - 7)^2` (Himmelblau, 1972).

    Four minima of value 0, at (3, 2), about (-2.805, 3.131), (-3.779, -3.283) and
    (3.584, -1.848) (:data:`HIMMELBLAU_MINIMA`), a local maximum near (-0.271, -0.923) and saddle
    points between them: which minimum a method reaches depends on where it starts and on how
    far its first steps throw it.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxopt_lectures.problems import himmelblau
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
        minimum=HIMMELBLAU_MINIMA[0],
        min_value=0.0,
        xlim=(-5.0, 5.0),
        ylim=(-5.0, 5.0),
        formula=r"$(x^2 + y - 11)^2 + (x + y^2 - 7)^2$",
    )


PROBLEMS: dict[str, Callable[[], Problem]] = {
    "rosenbrock": rosenbrock,
    "beale": beale,
    "saddle": saddle,
}
