"""Adam: momentum on the gradient and RMSprop on its square, both bias-corrected.

Lecture: m_t = beta1 g_t + (1 - beta1) m_{t-1}, r_t = beta2 g_t^2 + (1 - beta2) r_{t-1},
m_hat = m / (1 - (1 - beta1)^t), r_hat = r / (1 - (1 - beta2)^t), theta -= eta m_hat / sqrt(r_hat),
with the lecture's beta1 = 1 - ``b1`` and beta2 = 1 - ``b2``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_lectures._checks import check_dtype, check_non_negative, check_unit_interval
from jaxopt_lectures._tree import (
    check_tree_match,
    compute_dtype,
    map_leaves,
    safe_increment,
    zeros_like,
)
from jaxopt_lectures.optimizers.sgd import scale_by_learning_rate

__all__ = ["ScaleByAdamState", "adam", "scale_by_adam"]


class ScaleByAdamState(NamedTuple):
    """Step count t, EMA of gradients (lecture m) and EMA of squared gradients (lecture r)."""

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as in optax
    mu: optax.Updates
    nu: optax.Updates


def scale_by_adam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    accumulator_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""The bias-corrected Adam direction.

    .. math::
        m_t &= b_1 m_{t-1} + (1 - b_1)\, g_t, \qquad v_t = b_2 v_{t-1} + (1 - b_2)\, g_t^2 \\
        x_t &= \frac{m_t / (1 - b_1^t)}{\sqrt{v_t / (1 - b_2^t)} + \epsilon}

    with :math:`m_0 = v_0 = 0` and t counted from 1. The two corrections are scalars computed once
    per step, not per leaf. A coordinate whose first moment is exactly 0 gets a zero step, so
    ``eps=0`` never produces 0/0 (optax and PyTorch give NaN there).

    Args:
      b1: in [0, 1), weight of the past in the first moment (lecture beta1 = 1 - b1).
      b2: in [0, 1), weight of the past in the second moment (lecture beta2 = 1 - b2).
      eps: epsilon >= 0, outside the square root.
      accumulator_dtype: dtype of both moments; ``None`` keeps each parameter's dtype.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with a ``ScaleByAdamState``.
    """
    check_unit_interval("b1", b1)
    check_unit_interval("b2", b2)
    check_non_negative("eps", eps)
    check_dtype("accumulator_dtype", accumulator_dtype)

    def init_fn(params: optax.Params) -> ScaleByAdamState:
        return ScaleByAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=zeros_like(params, accumulator_dtype),
            nu=zeros_like(params, accumulator_dtype),
        )

    def update_fn(
        updates: optax.Updates,
        state: ScaleByAdamState,
        params: optax.Params | None = None,
        **extra_args: object,
    ) -> tuple[optax.Updates, ScaleByAdamState]:
        del params, extra_args
        check_tree_match(updates, state.mu, "scale_by_adam")
        count = safe_increment(state.count)
        t = count.astype(jnp.result_type(float))  # float32, or float64 when x64 is enabled
        correction1 = 1 - b1**t  # 1 - (1 - beta1)^t in the lecture
        correction2 = 1 - b2**t

        def leaf(
            g: jax.Array, m: jax.Array, v: jax.Array
        ) -> tuple[jax.Array, jax.Array, jax.Array]:
            cd = compute_dtype(g.dtype, m.dtype, v.dtype)
            g_c = g.astype(cd)
            m_new = b1 * m.astype(cd) + (1 - b1) * g_c  # EMA of the gradient
            v_new = b2 * v.astype(cd) + (1 - b2) * (g_c * g_c)  # EMA of its square
            m_hat = m_new / correction1.astype(cd)
            v_hat = v_new / correction2.astype(cd)
            # 0/0 (a coordinate that only ever saw zero gradients, with eps=0) is a zero step.
            x = jnp.where(m_hat == 0, 0.0, m_hat / (jnp.sqrt(v_hat) + eps))
            return x.astype(g.dtype), m_new.astype(m.dtype), v_new.astype(v.dtype)

        new_updates, mu, nu = map_leaves(leaf, 3, updates, state.mu, state.nu)
        return new_updates, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def adam(
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    accumulator_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Adam (Kingma and Ba, 2015).

    Lecture:

    .. math::
        m^{(t)} &= \beta_1 g^{(t)} + (1-\beta_1)\, m^{(t-1)}, \qquad
        r^{(t)} = \beta_2 (g^{(t)})^2 + (1-\beta_2)\, r^{(t-1)} \\
        \hat m^{(t)} &= \frac{m^{(t)}}{1 - (1-\beta_1)^t}, \qquad
        \hat r^{(t)} = \frac{r^{(t)}}{1 - (1-\beta_2)^t} \\
        \vartheta^{(t)} &= \vartheta^{(t-1)} - \eta\,
        \frac{\hat m^{(t)}}{\sqrt{\hat r^{(t)}} + \epsilon}

    Lecture symbols: eta = ``learning_rate``, beta1 = 1 - ``b1``, beta2 = 1 - ``b2`` (the lecture
    weights the new value; the paper and every library weight the past, so the familiar
    ``b1=0.9, b2=0.999`` are the lecture's beta1 = 0.1, beta2 = 0.001). The slide divides by
    :math:`\sqrt{\hat r}` alone and indexes the moments one step late; we follow the paper: the
    current gradient is included, and eps keeps the division safe.

    Args:
      learning_rate: eta >= 0, a number or a schedule.
      b1: in [0, 1), weight of the past in the first moment.
      b2: in [0, 1), weight of the past in the second moment.
      eps: epsilon >= 0, outside the square root.
      accumulator_dtype: dtype of both moments; ``None`` keeps each parameter's dtype.

    Returns:
      ``chain(scale_by_adam(b1, b2, eps), scale_by_learning_rate(learning_rate))``.

    Peers: the defaults equal ``torch.optim.Adam(params)`` and ``optax.adam(1e-3)``.

    Example:
      >>> import jax, jax.numpy as jnp, optax, jaxopt_lectures as jl
      >>> loss = lambda w: jnp.sum((w - jnp.array([1.0, -2.0])) ** 2)
      >>> tx = jl.adam(learning_rate=0.1)
      >>> w = jnp.zeros(2)
      >>> state = tx.init(w)
      >>> step = jax.jit(lambda w, s: tx.update(jax.grad(loss)(w), s))
      >>> for _ in range(300):
      ...     updates, state = step(w, state)
      ...     w = optax.apply_updates(w, updates)
      >>> bool(jnp.allclose(w, jnp.array([1.0, -2.0]), atol=1e-2))
      True
    """
    return optax.chain(
        scale_by_adam(b1=b1, b2=b2, eps=eps, accumulator_dtype=accumulator_dtype),
        scale_by_learning_rate(learning_rate),
    )
