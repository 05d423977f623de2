"""Stochastic gradient descent with a constant or decaying learning rate.

Lecture: theta_t = theta_{t-1} - eta dL/dtheta(B, theta_{t-1}), on a mini-batch B ("possibly a
singleton"), with a decaying learning rate eta.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxopt_lectures._checks import check_bool, check_non_negative, check_positive
from jaxopt_lectures.optimizers.transform import (
    ScaleByLearningRateState,
    descent,
    scale_by_learning_rate,
    trace,
)

__all__ = [
    "ScaleByLearningRateState",
    "inverse_time_decay",
    "scale_by_learning_rate",
    "sgd",
]


def sgd(
    learning_rate: optax.ScalarOrSchedule,
    momentum: float | None = None,
    nesterov: bool = False,
    accumulator_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Stochastic (mini-batch) gradient descent, the lecture's first update rule.

    Lecture: :math:`\vartheta^{(t)} = \vartheta^{(t-1)} - \eta\,
    \frac{\partial}{\partial\vartheta} L(B, \vartheta^{(t-1)})`, with ``learning_rate`` = eta.
    Pass a schedule such as :func:`inverse_time_decay` for the lecture's decaying learning rate.

    Args:
      learning_rate: eta >= 0, a number or a schedule.
      momentum: ``None`` (plain SGD, the lecture's rule) or optax's heavy-ball decay: then this is
        ``optax.sgd(learning_rate, momentum, nesterov)`` exactly, the velocity holding raw
        gradients and multiplied by today's rate. The lecture's momentum, with the rate inside
        the velocity, is :func:`momentum` / :func:`nag`.
      nesterov: with ``momentum``, the Nesterov variant (optax's).
      accumulator_dtype: with ``momentum``, the dtype of the velocity.

    Returns:
      ``scale_by_learning_rate(learning_rate)``, or with ``momentum``
      ``chain(trace(momentum, nesterov, accumulator_dtype), scale_by_learning_rate(...))``.

    Identical numerics: ``torch.optim.SGD(params, lr)`` (with a matching LR scheduler) and
    ``optax.sgd(learning_rate, momentum, nesterov)``. Without momentum the state is a single
    transform's (not optax's 2-tuple with an ``EmptyState``).

    Dtypes: float, bf16/f16 (computed in float32), complex; integer gradients give float updates.

    Example:
      >>> import jax, jax.numpy as jnp, optax, jaxopt_lectures as jl
      >>> loss = lambda w: jnp.sum((w - 3.0) ** 2)
      >>> tx = jl.sgd(jl.inverse_time_decay(0.4, decay_rate=0.1, decay_steps=1))
      >>> w = jnp.zeros(2)
      >>> state = tx.init(w)
      >>> for _ in range(20):
      ...     updates, state = tx.update(jax.grad(loss)(w), state)
      ...     w = optax.apply_updates(w, updates)
      >>> bool(jnp.allclose(w, 3.0, atol=1e-3))
      True
    """
    check_bool("nesterov", nesterov)
    if momentum is None:
        if nesterov or accumulator_dtype is not None:
            raise ValueError("sgd: nesterov and accumulator_dtype need momentum to be set")
        return descent(learning_rate)
    return optax.chain(
        trace(decay=momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype),
        descent(learning_rate),
    )


def inverse_time_decay(
    init_value: float,
    decay_rate: float,
    decay_steps: float,
    staircase: bool = False,
) -> optax.Schedule:
    r"""The classic decaying learning rate :math:`\eta_t = \eta_0 / (1 + r\, t / s)`.

    With ``staircase=True`` the ratio t / s is rounded down, so the rate drops in steps every
    ``decay_steps`` updates. Decaying as :math:`1/t` satisfies Robbins and Monro's conditions
    (:math:`\sum \eta_t = \infty`, :math:`\sum \eta_t^2 < \infty`) under which SGD converges on a
    convex problem despite the mini-batch noise, which a constant rate does not.

    Args:
      init_value: eta_0 >= 0, the rate at step 0.
      decay_rate: r >= 0; 0 gives a constant rate.
      decay_steps: s > 0, the number of steps over which the rate falls to eta_0 / (1 + r).
      staircase: decay in discrete steps.

    Returns:
      A schedule ``count -> eta`` (float32, or float64 when x64 is enabled), usable wherever a
      learning rate is accepted, ours or optax's.

    Equivalent to ``jax.example_libraries.optimizers.inverse_time_decay(init_value, decay_steps,
    decay_rate, staircase)`` (note the different argument order there) and to
    ``torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1 / (1 + decay_rate * t / decay_steps))``.

    Example:
      >>> import jaxopt_lectures as jl
      >>> schedule = jl.inverse_time_decay(1.0, decay_rate=1.0, decay_steps=10)
      >>> float(schedule(0)), float(schedule(10)), float(schedule(30))
      (1.0, 0.5, 0.25)
    """
    check_non_negative("init_value", init_value)
    check_non_negative("decay_rate", decay_rate)
    check_positive("decay_steps", decay_steps)
    check_bool("staircase", staircase)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        t = jnp.asarray(count, jnp.result_type(float)) / decay_steps
        if staircase:
            t = jnp.floor(t)
        return init_value / (1.0 + decay_rate * t)

    return schedule
