"""Trajectories of an optimizer on a small problem (the lecture's quadratic, Rosenbrock, ...).

:func:`run_trajectories` runs many optimizer/problem pairs in one compiled program, each a
``lax.scan`` over the steps (the optimizers may have different state types, which is why they are
compiled side by side and not ``vmap``-ed; sweeps over rates are in :mod:`.sweeps`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxopt_lectures._checks import check_int
from jaxopt_lectures.experiments.engine.timing import Timer, timed

__all__ = [
    "LossFn",
    "OptimizerFactory",
    "Trajectory",
    "TrajectoryJob",
    "run_trajectories",
    "trajectory",
]

K = TypeVar("K")
LossFn = Callable[[jax.Array], jax.Array]
OptimizerFactory = Callable[[Any], optax.GradientTransformation]  # learning rate -> transform


class Trajectory(NamedTuple):
    """The iterates of an optimizer: ``points[t]`` after t steps (``points[0]`` = the start) and
    ``losses[t]`` = loss(points[t]). Leading axes are added by sweeps."""

    points: Any
    losses: Any


class TrajectoryJob(NamedTuple):
    """One optimizer on one problem: minimize ``loss_fn`` from ``x0`` with ``optimizer``."""

    loss_fn: LossFn
    x0: Any
    optimizer: optax.GradientTransformation


def trajectory(
    loss_fn: LossFn, x0: jax.Array, tx: optax.GradientTransformation, num_steps: int
) -> Trajectory:
    """``num_steps`` steps of ``tx`` on ``loss_fn`` as one ``lax.scan`` (traceable, not jitted).

    The loss is passed to every update as the extra argument ``value_fn``, which Newton's
    transforms need and the first-order ones ignore.
    """
    x0 = jnp.asarray(x0, jnp.float32)

    def step(carry: tuple[jax.Array, Any], _: None) -> tuple[tuple[jax.Array, Any], jax.Array]:
        x, state = carry
        grads = jax.grad(loss_fn)(x)
        updates, state = tx.update(grads, state, x, value_fn=loss_fn)
        x = optax.apply_updates(x, updates)
        return (x, state), x

    _, xs = jax.lax.scan(step, (x0, tx.init(x0)), None, length=num_steps)
    points = jnp.concatenate([x0[None], xs])
    return Trajectory(points=points, losses=jax.vmap(loss_fn)(points))


def run_trajectories(
    jobs: Mapping[K, TrajectoryJob], num_steps: int, *, timer: Timer | None = None
) -> dict[K, Trajectory]:
    """Run every job for ``num_steps`` steps, all in one compiled program.

    Args:
      jobs: ``{key: TrajectoryJob(loss_fn, x0, optimizer)}``; the optimizers may have different
        state types (SGD, Adam, Newton ...), which is why they are compiled side by side and not
        ``vmap``-ed.
      num_steps: the number of updates.
      timer: collects the compile and run time (:class:`~.timing.Timer`).

    Returns:
      ``{key: Trajectory}`` with NumPy arrays: ``points`` of shape ``(num_steps + 1, *x0.shape)``
      and ``losses`` of shape ``(num_steps + 1,)``. A diverging run shows as inf or NaN.

    Example:
      >>> import jax.numpy as jnp, jaxopt_lectures as jl
      >>> from jaxopt_lectures.experiments.engine import TrajectoryJob, run_trajectories
      >>> loss = lambda x: jnp.sum(x**2)
      >>> out = run_trajectories({"gd": TrajectoryJob(loss, jnp.ones(2), jl.sgd(0.25))}, 3)
      >>> out["gd"].losses.tolist()
      [2.0, 0.5, 0.125, 0.03125]
    """
    check_int("num_steps", num_steps)
    keys = list(jobs)

    @jax.jit
    def run_all(x0s: list[jax.Array]) -> list[Trajectory]:
        return [
            trajectory(jobs[k].loss_fn, x0, jobs[k].optimizer, num_steps)
            for k, x0 in zip(keys, x0s, strict=True)
        ]

    x0s = [jnp.asarray(jobs[k].x0, jnp.float32) for k in keys]
    results = timed("trajectories", run_all, x0s, timer=timer)
    return {k: jax.tree.map(np.asarray, r) for k, r in zip(keys, results, strict=True)}
