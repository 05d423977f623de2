"""The building blocks every alias composes: the learning-rate step and the velocity.

Two floors, as optax's ``transform.py`` and ``alias.py``: this module imports nothing else from
``jaxopt_lectures.optimizers``; every optimizer module (``sgd``, ``momentum``, ``adam``, ...) builds
its alias from its own ``scale_by_*`` and these blocks, and none imports another optimizer module.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_lectures._checks import (
    check_bool,
    check_dtype,
    check_learning_rate,
    check_non_negative,
)
from jaxopt_lectures._tree import (
    check_tree_match,
    compute_dtype,
    map_leaves,
    safe_increment,
    update_dtype,
    zeros_like,
)

__all__ = [
    "ScaleByLearningRateState",
    "TraceState",
    "scale_by_learning_rate",
    "trace",
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


class TraceState(NamedTuple):
    """The velocity: the decayed sum of past incoming updates (the lecture's ``-u`` in momentum)."""

    trace: optax.Updates


# Long: a 32-line docstring; init and update share the checked arguments (optax's closure).
def trace(
    decay: float,
    nesterov: bool = False,
    accumulator_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Accumulate a velocity :math:`v_t = \gamma v_{t-1} + x_t` of the incoming updates.

    Emits :math:`v_t`, or with ``nesterov=True`` the look-ahead combination
    :math:`x_t + \gamma v_t`. Placed after :func:`scale_by_learning_rate` (as :func:`momentum` and
    :func:`nag` do) the incoming :math:`x_t = -\eta_t g_t`, so :math:`v_t = -u_t` is the lecture's
    velocity with the descent sign applied.

    Args:
      decay: gamma >= 0, the lecture's "coefficient of friction" (weight of the past). 1 is
        allowed (no friction: the plain running sum), as in optax.
      nesterov: emit the Nesterov combination instead of the velocity.
      accumulator_dtype: dtype of the velocity; ``None`` keeps each parameter's dtype (a float
        one for integer parameters).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with a ``TraceState``.

    Same arguments, defaults, state and numbers as ``optax.trace(decay, nesterov,
    accumulator_dtype)``; the recursion is PyTorch's momentum buffer with ``dampening=0``.

    Dtypes: float, bf16/f16 (computed in float32, stored in the accumulator's dtype), complex
    (the velocity is complex); integer updates give a float velocity and float updates.

    Example:
      >>> import jax.numpy as jnp, jaxopt_lectures as jl
      >>> tx = jl.trace(decay=0.5)
      >>> state = tx.init(jnp.zeros(1))
      >>> for _ in range(2):
      ...     updates, state = tx.update(jnp.ones(1), state)
      >>> updates  # 1 + 0.5 * 1
      Array([1.5], dtype=float32)
    """
    check_non_negative("decay", decay)
    check_bool("nesterov", nesterov)
    check_dtype("accumulator_dtype", accumulator_dtype)

    def init_fn(params: optax.Params) -> TraceState:
        return TraceState(trace=zeros_like(params, accumulator_dtype))

    def update_fn(
        updates: optax.Updates,
        state: TraceState,
        params: optax.Params | None = None,
        **extra_args: object,
    ) -> tuple[optax.Updates, TraceState]:
        del params, extra_args
        check_tree_match(updates, state.trace, "trace")

        def leaf(x: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
            cd = compute_dtype(x.dtype, v.dtype)
            x_c = x.astype(cd)
            v_new = decay * v.astype(cd) + x_c  # v_t = gamma v_{t-1} + x_t
            out = x_c + decay * v_new if nesterov else v_new
            return out.astype(update_dtype(x.dtype)), v_new.astype(v.dtype)

        new_updates, new_trace = map_leaves(leaf, 2, updates, state.trace)
        return new_updates, TraceState(trace=new_trace)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
