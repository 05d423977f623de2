"""Momentum ("let the ball run") and Nesterov's accelerated gradient ("... but be predictive").

Lecture, with u_0 = 0 and 0 <= gamma < 1 the momentum ("coefficient of friction"):

    momentum: u_t = gamma u_{t-1} + eta dL/dtheta(theta_{t-1}),    theta_t = theta_{t-1} - u_t
    NAG:      u_t = gamma u_{t-1} + eta dL/dtheta(theta_{t-1} - gamma u_{t-1})  (same theta_t)

The learning rate sits *inside* the velocity, as the lecture writes it: a gradient keeps the rate
at which it was taken. optax and PyTorch keep the raw gradients in the velocity and multiply the
whole velocity by the *current* rate instead; the two agree at a constant rate and differ under a
schedule.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_lectures._checks import (
    check_bool,
    check_dtype,
    check_non_negative,
    check_unit_interval,
)
from jaxopt_lectures._tree import (
    check_tree_match,
    compute_dtype,
    map_leaves,
    update_dtype,
    zeros_like,
)
from jaxopt_lectures.optimizers.sgd import descent
from jaxopt_lectures.xla_options import _one_loop_constants, cpu_multi_output_fusion_enabled

__all__ = ["TraceState", "momentum", "nag", "trace"]


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
            return _trace_leaf(x, v, decay, nesterov)

        new_updates, new_trace = map_leaves(leaf, 2, updates, state.trace)
        return new_updates, TraceState(trace=new_trace)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _trace_leaf(
    x: jax.Array, v: jax.Array, decay: Any, nesterov: bool
) -> tuple[jax.Array, jax.Array]:
    """One leaf of :func:`trace`: the update and the new velocity."""
    cd = compute_dtype(x.dtype, v.dtype)
    x_c = x.astype(cd)
    v_new = decay * v.astype(cd) + x_c  # v_t = gamma v_{t-1} + x_t
    out = x_c + decay * v_new if nesterov else v_new
    return out.astype(update_dtype(x.dtype)), v_new.astype(v.dtype)


def momentum(
    learning_rate: optax.ScalarOrSchedule,
    momentum: float = 0.9,
    accumulator_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Gradient descent with momentum, exactly as the lecture writes it.

    .. math::
        u^{(t)} = \gamma\, u^{(t-1)} + \eta_t\, \frac{\partial L}{\partial\vartheta}(B,
        \vartheta^{(t-1)}), \quad u^{(0)} = 0, \qquad
        \vartheta^{(t)} = \vartheta^{(t-1)} - u^{(t)}

    Lecture symbols: eta = ``learning_rate``, gamma = ``momentum``. Built as
    ``chain(scale_by_learning_rate(learning_rate), trace(decay=momentum))``, so the state holds
    :math:`-u`.

    Args:
      learning_rate: eta >= 0, a number or a schedule.
      momentum: gamma in [0, 1).
      accumulator_dtype: dtype of the velocity; ``None`` keeps each parameter's dtype.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Dtypes: float, bf16/f16 (computed in float32), complex; integer parameters get a float
    velocity and float updates.

    Peers: at a constant rate this equals ``torch.optim.SGD(params, lr, momentum)`` and
    ``optax.sgd(learning_rate, momentum)``. Under a schedule it does not: they compute
    :math:`\eta_t \sum_s \gamma^{t-s} g_s`, rescaling every past gradient by today's rate,
    while here each gradient keeps the rate of its own step,
    :math:`\sum_s \gamma^{t-s} \eta_s g_s`. After a sudden rate drop theirs slows down at once and
    ours coasts on the velocity it had built.

    Example:
      >>> import jax, jax.numpy as jnp, optax, jaxopt_lectures as jl
      >>> loss = lambda w: jnp.sum(jnp.array([1.0, 50.0]) * w**2)
      >>> tx = jl.momentum(learning_rate=0.01, momentum=0.9)
      >>> @jax.jit
      ... def step(w, state):
      ...     updates, state = tx.update(jax.grad(loss)(w), state)
      ...     return optax.apply_updates(w, updates), state
      >>> w = jnp.array([1.0, 1.0])
      >>> state = tx.init(w)
      >>> for _ in range(300):
      ...     w, state = step(w, state)
      >>> float(loss(w)) < 1e-6
      True
    """
    return _momentum_chain(learning_rate, momentum, False, accumulator_dtype)


def nag(
    learning_rate: optax.ScalarOrSchedule,
    momentum: float = 0.9,
    accumulator_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Nesterov's accelerated gradient: momentum that evaluates the gradient at a look-ahead point.

    Lecture:

    .. math::
        u^{(t)} = \gamma\, u^{(t-1)} + \eta_t\, \frac{\partial L}{\partial\vartheta}(B,
        \vartheta^{(t-1)} - \gamma u^{(t-1)}), \qquad \vartheta^{(t)} = \vartheta^{(t-1)} - u^{(t)}

    An optimizer only sees the gradient at the parameters it holds, so the parameters held here
    are the look-ahead point :math:`\varphi^{(t)} = \vartheta^{(t)} - \gamma u^{(t)}` (Sutskever et
    al., 2013). Substituting gives the update the transform applies,

    .. math::
        \varphi^{(t)} = \varphi^{(t-1)} - \eta_t g_t - \gamma u^{(t)}, \qquad
        g_t = \frac{\partial L}{\partial\vartheta}(B, \varphi^{(t-1)}),

    exactly, also under a schedule. Start from :math:`\varphi^{(0)} = \vartheta^{(0)}` (as
    :math:`u^{(0)} = 0`); the lecture's :math:`\vartheta^{(t)} = \varphi^{(t)} + \gamma u^{(t)}` is
    ``params - momentum * state[1].trace`` (the state holds :math:`-u`). Lecture symbols:
    eta = ``learning_rate``, gamma = ``momentum``.

    Args:
      learning_rate: eta >= 0, a number or a schedule.
      momentum: gamma in [0, 1).
      accumulator_dtype: dtype of the velocity; ``None`` keeps each parameter's dtype.

    Returns:
      ``chain(scale_by_learning_rate(learning_rate), trace(momentum, nesterov=True))``.

    Dtypes: as :func:`momentum`.

    Peers: at a constant rate equal to ``torch.optim.SGD(params, lr, momentum, nesterov=True)`` and
    ``optax.sgd(learning_rate, momentum, nesterov=True)``; under a schedule they differ as explained
    in :func:`momentum`.

    Example:
      >>> import jax, jax.numpy as jnp, optax, jaxopt_lectures as jl
      >>> loss = lambda w: jnp.sum(jnp.array([1.0, 50.0]) * w**2)
      >>> tx = jl.nag(learning_rate=0.01, momentum=0.9)
      >>> @jax.jit
      ... def step(w, state):
      ...     updates, state = tx.update(jax.grad(loss)(w), state)
      ...     return optax.apply_updates(w, updates), state
      >>> w = jnp.array([1.0, 1.0])
      >>> state = tx.init(w)
      >>> for _ in range(300):
      ...     w, state = step(w, state)
      >>> float(loss(w)) < 1e-6
      True
    """
    return _momentum_chain(learning_rate, momentum, True, accumulator_dtype)


def _momentum_chain(
    learning_rate: optax.ScalarOrSchedule,
    momentum: float,
    nesterov: bool,
    accumulator_dtype: Any,
) -> optax.GradientTransformationExtraArgs:
    """``descent(learning_rate)`` followed by ``trace(momentum, nesterov)``: momentum and NAG."""
    check_unit_interval("momentum", momentum)
    scale = descent(learning_rate)
    chained = optax.chain(
        scale, trace(decay=momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype)
    )

    def update_fn(
        updates: optax.Updates,
        state: optax.OptState,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, optax.OptState]:
        new_updates, new_state = chained.update(updates, state, params, **extra_args)
        if cpu_multi_output_fusion_enabled():
            # With XLA:CPU multi-output fusion the step is computed a second time from the old
            # velocity, with a copy of the gradient (times 1) and of the momentum that XLA does
            # not merge with the first computation (see xla_options): the step's loop then reads
            # only what the new velocity's loop reads, and the two, with optax.apply_updates'
            # add, become one loop. Without the copy the rate-scaled gradient and the decayed
            # velocity, which both need, are loops of their own.
            scaled, _ = scale.update(jax.tree.map(_opaque_copy, updates), state[0], params)

            def step(x: jax.Array, v: jax.Array) -> tuple[jax.Array]:
                opaque = _one_loop_constants(compute_dtype(x.dtype, v.dtype), momentum)
                decay = momentum if opaque is None else opaque[0]
                return (_trace_leaf(x, v, decay, nesterov)[0],)

            (new_updates,) = map_leaves(step, 1, scaled, state[1].trace)
        return new_updates, new_state

    return optax.GradientTransformationExtraArgs(chained.init, update_fn)


def _opaque_copy(g: Any) -> Any:
    opaque = _one_loop_constants(jnp.result_type(g), 1.0)
    return g if opaque is None else g * opaque[0]
