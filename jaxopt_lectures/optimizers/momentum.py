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

from typing import Any

import optax

from jaxopt_lectures._checks import check_unit_interval
from jaxopt_lectures.optimizers.transform import TraceState, descent, trace

__all__ = ["TraceState", "momentum", "nag", "trace"]


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
    return optax.chain(
        descent(learning_rate),
        trace(decay=momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype),
    )
