"""Sweeps: one compiled program for many settings, as lanes of a ``vmap``.

:func:`sweep_trajectories` runs one optimizer at many learning rates on a small problem;
:func:`select_optimizer` makes *different* optimizers lanes of one ``vmap`` in training runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxopt_lectures._checks import check_int
from jaxopt_lectures.experiments.engine.timing import Timer, timed
from jaxopt_lectures.experiments.engine.trajectories import (
    LossFn,
    OptimizerFactory,
    Trajectory,
    trajectory,
)

__all__ = ["select_optimizer", "sweep_trajectories"]


def sweep_trajectories(
    make_optimizer: OptimizerFactory,
    loss_fn: LossFn,
    x0: Any,
    learning_rates: Sequence[float] | np.ndarray,
    num_steps: int,
    *,
    timer: Timer | None = None,
) -> Trajectory:
    """One optimizer at many learning rates, ``vmap``-ed: one compiled trajectory for all of them.

    Args:
      make_optimizer: ``learning_rate -> GradientTransformation``; called with a traced scalar,
        so every rate shares one state type (``lambda lr: jl.sgd(lr)``).
      loss_fn, x0: the problem.
      learning_rates: the rates to sweep.
      num_steps: the number of updates.
      timer: collects the compile and run time (:class:`~.timing.Timer`).

    Returns:
      A :class:`Trajectory` of NumPy arrays with a leading axis over the rates: ``points`` of
      shape ``(num_rates, num_steps + 1, *x0.shape)``. The numbers are those of running each rate
      on its own (the tests check it).
    """
    check_int("num_steps", num_steps)
    rates = jax.device_put(np.asarray(learning_rates, np.float32))

    @jax.jit
    def sweep(rates: jax.Array, x0: jax.Array) -> Trajectory:
        return jax.vmap(lambda lr: trajectory(loss_fn, x0, make_optimizer(lr), num_steps))(rates)

    return jax.tree.map(
        np.asarray, timed("sweep", sweep, rates, jnp.asarray(x0, jnp.float32), timer=timer)
    )


def select_optimizer(
    factories: Sequence[OptimizerFactory],
) -> Callable[[Any], optax.GradientTransformationExtraArgs]:
    """One optimizer factory that ``vmap`` can map over *different* optimizers.

    ``select_optimizer([f_0, ..., f_n])((i, lr))`` behaves exactly like ``f_i(lr)``: its state is
    the tuple of all the optimizers' states (so every choice has the same state type) and its
    update runs the i-th one with ``lax.switch``. Give a :class:`TrainRun` the hyperparameters
    ``((0, lr_0), (1, lr_1), ...)`` and the optimizers become lanes of one ``vmap`` (under
    ``vmap`` the switch computes every branch and selects, which costs the optimizers' elementwise
    work n times but compiles one training loop instead of n, about half the compile time for the
    lecture's seven optimizers). The numbers are those of separate runs (the tests check it).

    Example:
      >>> import jax.numpy as jnp, jaxopt_lectures as jl
      >>> from jaxopt_lectures.experiments.engine import select_optimizer
      >>> tx = select_optimizer([jl.sgd, jl.adam])(jnp.array([1.0, 0.1]))  # adam(0.1)
      >>> updates, _ = tx.update(jnp.array([3.0]), tx.init(jnp.zeros(1)))
      >>> round(float(updates[0]), 4)  # Adam's first step: -lr * sign(g)
      -0.1
    """
    factories = list(factories)

    def make(hyper: Any) -> optax.GradientTransformationExtraArgs:
        hyper = jnp.asarray(hyper)
        index = hyper[0].astype(jnp.int32)
        txs = [factory(hyper[1]) for factory in factories]

        def init_fn(params: Any) -> tuple[Any, ...]:
            return tuple(tx.init(params) for tx in txs)

        def update_fn(
            updates: Any, state: tuple[Any, ...], params: Any = None, **extra_args: Any
        ) -> tuple[Any, tuple[Any, ...]]:
            def branch(i: int) -> Callable[[Any], Any]:
                def apply(operands: Any) -> Any:
                    grads, states, p = operands
                    new, state_i = txs[i].update(grads, states[i], p, **extra_args)
                    return new, (*states[:i], state_i, *states[i + 1 :])

                return apply

            branches = [branch(i) for i in range(len(txs))]
            return jax.lax.switch(index, branches, (updates, state, params))

        return optax.GradientTransformationExtraArgs(init_fn, update_fn)

    return make
