"""Stochastic gradient descent with a constant or decaying learning rate.

Lecture: theta_t = theta_{t-1} - eta dL/dtheta(B, theta_{t-1}), on a mini-batch B ("possibly a
singleton"), with a decaying learning rate eta.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_lectures._checks import (
    check_bool,
    check_learning_rate,
    check_non_negative,
    check_positive,
)
from jaxopt_lectures._tree import compute_dtype, safe_increment, update_dtype

__all__ = [
    "ScaleByLearningRateState",
    "inverse_time_decay",
    "scale_by_learning_rate",
    "sgd",
]


class ScaleByLearningRateState(NamedTuple):
    """Step counter t (int32, saturating) at which the next update evaluates the schedule.

    Only a schedule has this state; a constant rate has ``optax.EmptyState()``, as in optax
    (``optax.ScaleByScheduleState`` is the same record there).
    """

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as in optax


# Long: a 34-line docstring; init and update share the checked arguments (optax's closure).
def scale_by_learning_rate(
    learning_rate: optax.ScalarOrSchedule | None = None,
    *,
    flip_sign: bool = True,
) -> optax.GradientTransformationExtraArgs:
    r"""Multiply the updates by ``-learning_rate``: the one place the descent sign is applied.

    Lecture: the step :math:`-\eta\, g` of gradient descent, with :math:`\eta` = ``learning_rate``.

    .. math::
        u_t = -\eta_t\, g_t

    Every alias of the library ends with this transform, so the sign flip happens exactly once
    in any chain. A schedule is evaluated at the number of updates done before this one, so the
    first update uses ``schedule(0)`` (optax's convention).

    Args:
      learning_rate: eta >= 0, a number or a schedule ``step -> eta`` (ours, optax's, or any
        callable of an int32 step count). ``None`` scales nothing (the identity), as in optax.
      flip_sign: multiply by ``-learning_rate`` (descent, the default) or by ``+learning_rate``.

    Returns:
      An ``optax.GradientTransformationExtraArgs``. Its state is a ``ScaleByLearningRateState``
      (the step count) under a schedule and ``optax.EmptyState()`` otherwise, so
      ``optax.tree_utils.tree_get(state, "count")`` finds one count in ``jl.adam(1e-3)``.

    Equivalent to ``optax.scale_by_learning_rate(learning_rate, flip_sign=flip_sign)``, same
    argument names, defaults and state types.

    Dtypes: the update has the gradient's dtype (float, bf16/f16 computed in float32, complex);
    an integer gradient gives a float update, as in optax.

    Example:
      >>> import jax.numpy as jnp, jaxopt_lectures as jl
      >>> tx = jl.scale_by_learning_rate(0.1)
      >>> updates, state = tx.update(jnp.array([1.0, -2.0]), tx.init(jnp.zeros(2)))
      >>> updates
      Array([-0.1,  0.2], dtype=float32)
    """
    check_bool("flip_sign", flip_sign)
    if learning_rate is None:
        return optax.with_extra_args_support(optax.identity())
    check_learning_rate(learning_rate)
    sign = -1.0 if flip_sign else 1.0

    def scaled(updates: optax.Updates, eta: Any) -> optax.Updates:
        def step(g: Any) -> jax.Array:
            g = jnp.asarray(g)
            cd = compute_dtype(g.dtype)
            return (sign * eta * g.astype(cd)).astype(update_dtype(g.dtype))

        return jax.tree.map(step, updates)

    if not callable(learning_rate):

        def init_constant(params: optax.Params) -> optax.EmptyState:
            del params
            return optax.EmptyState()

        def update_constant(
            updates: optax.Updates,
            state: optax.EmptyState,
            params: optax.Params | None = None,
            **extra_args: object,
        ) -> tuple[optax.Updates, optax.EmptyState]:
            del params, extra_args
            return scaled(updates, learning_rate), state

        return optax.GradientTransformationExtraArgs(init_constant, update_constant)

    schedule = learning_rate

    def init_fn(params: optax.Params) -> ScaleByLearningRateState:
        del params
        return ScaleByLearningRateState(count=jnp.zeros([], jnp.int32))

    def update_fn(
        updates: optax.Updates,
        state: ScaleByLearningRateState,
        params: optax.Params | None = None,
        **extra_args: object,
    ) -> tuple[optax.Updates, ScaleByLearningRateState]:
        del params, extra_args
        updates = scaled(updates, schedule(state.count))
        return updates, ScaleByLearningRateState(count=safe_increment(state.count))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def descent(learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformationExtraArgs:
    """``scale_by_learning_rate(learning_rate)`` for the aliases, which require a rate.

    ``scale_by_learning_rate(None)`` is the identity (optax's convention for the building block);
    an alias given ``None`` would then climb the loss, so the aliases refuse it.
    """
    check_learning_rate(learning_rate)
    return scale_by_learning_rate(learning_rate)


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
    from jaxopt_lectures.optimizers.momentum import trace  # momentum.py imports this module

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
