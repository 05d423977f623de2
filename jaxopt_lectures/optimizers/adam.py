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

from jaxopt_lectures._checks import (
    check_bool,
    check_dtype,
    check_non_negative,
    check_unit_interval,
)
from jaxopt_lectures._tree import (
    abs_sq,
    check_tree_match,
    compute_dtype,
    map_leaves,
    real_dtype,
    safe_increment,
    update_dtype,
    zeros_like,
)
from jaxopt_lectures.optimizers.transform import descent

__all__ = ["ScaleByAdamState", "adam", "scale_by_adam"]


class ScaleByAdamState(NamedTuple):
    """Step count t, EMA of gradients (lecture m) and EMA of squared gradients (lecture r)."""

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as in optax
    mu: optax.Updates
    nu: optax.Updates


def _moment_dtypes(mu_dtype: Any, accumulator_dtype: Any) -> tuple[Any, Any]:
    """The dtypes of Adam's two moments from optax's ``mu_dtype`` and our ``accumulator_dtype``."""
    check_dtype("mu_dtype", mu_dtype)
    check_dtype("accumulator_dtype", accumulator_dtype)
    if mu_dtype is not None and accumulator_dtype is not None:
        raise ValueError(
            "pass mu_dtype (the first moment's dtype, optax's argument) or accumulator_dtype "
            "(both moments' dtype), not both"
        )
    if accumulator_dtype is not None:
        return accumulator_dtype, accumulator_dtype
    return mu_dtype, None


# Long: a 40-line docstring; init and update share the checked arguments (optax's closure).
def scale_by_adam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    accumulator_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""The bias-corrected Adam direction.

    .. math::
        m_t &= b_1 m_{t-1} + (1 - b_1)\, g_t, \qquad v_t = b_2 v_{t-1} + (1 - b_2)\, |g_t|^2 \\
        x_t &= \frac{\hat m_t}{\sqrt{v_t / (1 - b_2^t) + \epsilon_{root}} + \epsilon}, \qquad
        \hat m_t = \frac{m_t}{1 - b_1^t}

    with :math:`m_0 = v_0 = 0` and t counted from 1. With ``nesterov=True`` (NAdam, Dozat 2016)
    :math:`\hat m_t = b_1 m_t / (1 - b_1^{t+1}) + (1 - b_1)\, g_t / (1 - b_1^t)`. The bias
    corrections are scalars computed once per step, not per leaf. A coordinate whose
    :math:`\hat m_t` is exactly 0 gets a zero step, so ``eps=0`` never produces 0/0 (optax and
    PyTorch give NaN there); a NaN or infinite gradient still gives a non-finite update.

    Args:
      b1: in [0, 1), weight of the past in the first moment (lecture beta1 = 1 - b1).
      b2: in [0, 1), weight of the past in the second moment (lecture beta2 = 1 - b2).
      eps: epsilon >= 0, outside the square root.
      eps_root: >= 0, inside the square root (optax's; for differentiating through the step).
      mu_dtype: dtype of the first moment; ``None`` keeps each parameter's dtype (optax's).
      nesterov: the NAdam variant, as optax's ``nesterov``.
      accumulator_dtype: dtype of *both* moments (an addition to optax's arguments: a bf16 second
        moment with ``b2=0.999`` stops decaying); not together with ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with a ``ScaleByAdamState``.

    Same arguments, defaults, state and numbers as ``optax.scale_by_adam(b1, b2, eps, eps_root,
    mu_dtype, nesterov=nesterov)``.

    Dtypes: float, bf16/f16 (computed in float32, stored in the state's dtype), complex (the first
    moment is complex, the second real: :math:`|g|^2 = g \bar g`; optax stores a complex second
    moment with zero imaginary part); integer parameters get float moments and float updates.

    Example:
      >>> import jax.numpy as jnp, jaxopt_lectures as jl
      >>> tx = jl.scale_by_adam()
      >>> updates, state = tx.update(jnp.array([0.5, -2.0]), tx.init(jnp.zeros(2)))
      >>> [round(float(u), 4) for u in updates]  # the first step is g / |g|, up to rounding
      [1.0, -1.0]
    """
    check_unit_interval("b1", b1)
    check_unit_interval("b2", b2)
    check_non_negative("eps", eps)
    check_non_negative("eps_root", eps_root)
    check_bool("nesterov", nesterov)
    mu_dt, nu_dt = _moment_dtypes(mu_dtype, accumulator_dtype)

    def init_fn(params: optax.Params) -> ScaleByAdamState:
        return ScaleByAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=zeros_like(params, mu_dt),
            nu=zeros_like(params, nu_dt, real=True),
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
        correction1_next = 1 - b1 ** (t + 1) if nesterov else correction1

        def leaf(
            g: jax.Array, m: jax.Array, v: jax.Array
        ) -> tuple[jax.Array, jax.Array, jax.Array]:
            cd = compute_dtype(g.dtype, m.dtype, v.dtype)
            g_c = g.astype(cd)
            m_new = b1 * m.astype(cd) + (1 - b1) * g_c  # EMA of the gradient
            v_new = b2 * v.astype(real_dtype(cd)) + (1 - b2) * abs_sq(
                g_c
            )  # EMA of its squared magnitude
            if nesterov:
                m_hat = b1 * m_new / correction1_next.astype(cd) + (
                    1 - b1
                ) * g_c / correction1.astype(cd)
            else:
                m_hat = m_new / correction1.astype(cd)
            v_hat = v_new / correction2.astype(v_new.dtype)
            # 0/0 (a coordinate that only ever saw zero gradients, with eps=0) is a zero step.
            x = jnp.where(m_hat == 0, 0.0, m_hat / (jnp.sqrt(v_hat + eps_root) + eps))
            return x.astype(update_dtype(g.dtype)), m_new.astype(m.dtype), v_new.astype(v.dtype)

        new_updates, mu, nu = map_leaves(leaf, 3, updates, state.mu, state.nu)
        return new_updates, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# Long for its docstring (50 of 73 lines: equation, symbols, equivalents, example).
def adam(
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
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
      eps_root: >= 0, inside the square root (optax's).
      mu_dtype: dtype of the first moment (optax's); ``None`` keeps each parameter's dtype.
      nesterov: NAdam (optax's ``nesterov``).
      accumulator_dtype: dtype of both moments (not with ``mu_dtype``); for bf16 models.

    Returns:
      ``chain(scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
      scale_by_learning_rate(learning_rate))``.

    Peers: the defaults equal ``torch.optim.Adam(params)`` and ``optax.adam(1e-3)``; every
    argument is optax's, with optax's default, except that ``learning_rate`` has PyTorch's.

    Dtypes: see :func:`scale_by_adam` (float, bf16/f16, complex, integer).

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
        scale_by_adam(
            b1=b1,
            b2=b2,
            eps=eps,
            eps_root=eps_root,
            mu_dtype=mu_dtype,
            nesterov=nesterov,
            accumulator_dtype=accumulator_dtype,
        ),
        descent(learning_rate),
    )
