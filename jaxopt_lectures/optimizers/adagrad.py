"""AdaGrad: a diagonal, data-driven stand-in for Newton's inverse Hessian.

Lecture: G_i^(t) = sqrt(sum_{j<=t} g_i^(j)^2), theta_t = theta_{t-1} - eta G^-1 g (elementwise).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_lectures._checks import check_dtype, check_non_negative
from jaxopt_lectures._tree import (
    abs_sq,
    check_tree_match,
    compute_dtype,
    map_leaves,
    real_dtype,
    update_dtype,
    zeros_like,
)
from jaxopt_lectures.optimizers.transform import descent

__all__ = ["ScaleByAdagradState", "adagrad", "scale_by_adagrad"]


class ScaleByAdagradState(NamedTuple):
    """Running sum of squared gradients (the lecture's G^2, per coordinate)."""

    sum_of_squares: optax.Updates


# Long: a 38-line docstring; init and update share the checked arguments (optax's closure).
def scale_by_adagrad(
    initial_accumulator_value: float = 0.0,
    eps: float = 1e-10,
    *,
    accumulator_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Divide each coordinate by the root of the sum of its squared gradients so far.

    .. math::
        s_t = s_{t-1} + g_t^2, \qquad x_t = \frac{g_t}{\sqrt{s_t} + \epsilon}

    with :math:`s_0` = ``initial_accumulator_value``. ``eps`` is *outside* the square root, as in
    PyTorch. A zero gradient gets a zero update (never 0/0, even with ``eps=0`` and an empty
    accumulator); a NaN or infinite gradient gives a non-finite update, and the accumulator keeps
    the NaN, as in optax (so ``optax.apply_if_finite`` sees it).

    Lecture: :math:`G = \sqrt{s_t}`, the root of the sum of squared gradients up to and including
    the one being divided (the slide's indices start that sum one step late, which would leave the
    first step dividing by an empty sum; we follow Duchi et al. (2011) and every library). With
    :math:`s_0 = 0` the first step therefore has magnitude :math:`\eta` in every coordinate.

    Args:
      eps: epsilon >= 0 added to the root, against division by (nearly) zero.
      initial_accumulator_value: s_0 >= 0.
      accumulator_dtype: dtype of the accumulator; ``None`` keeps each parameter's (real) dtype.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with a ``ScaleByAdagradState``.

    optax has no ``scale_by_adagrad``; its ``scale_by_rss(initial_accumulator_value, eps)`` puts
    eps inside the root: at ``eps=0`` the two agree exactly.

    Dtypes: float, bf16/f16 (computed in float32), complex (the sum of :math:`|g|^2` is real);
    integer gradients give float updates and a float accumulator.

    Example:
      >>> import jax.numpy as jnp, jaxopt_lectures as jl
      >>> tx = jl.scale_by_adagrad(eps=0.0)
      >>> state = tx.init(jnp.zeros(1))
      >>> for g in (3.0, 4.0):
      ...     updates, state = tx.update(jnp.array([g]), state)
      >>> updates  # 4 / sqrt(3**2 + 4**2)
      Array([0.8], dtype=float32)
    """
    check_non_negative("eps", eps)
    check_non_negative("initial_accumulator_value", initial_accumulator_value)
    check_dtype("accumulator_dtype", accumulator_dtype)

    def init_fn(params: optax.Params) -> ScaleByAdagradState:
        zeros = zeros_like(params, accumulator_dtype, real=True)
        return ScaleByAdagradState(
            sum_of_squares=jax.tree.map(
                lambda z: z + jnp.asarray(initial_accumulator_value, z.dtype), zeros
            )
        )

    def update_fn(
        updates: optax.Updates,
        state: ScaleByAdagradState,
        params: optax.Params | None = None,
        **extra_args: object,
    ) -> tuple[optax.Updates, ScaleByAdagradState]:
        del params, extra_args
        check_tree_match(updates, state.sum_of_squares, "scale_by_adagrad")

        def leaf(g: jax.Array, s: jax.Array) -> tuple[jax.Array, jax.Array]:
            cd = compute_dtype(g.dtype, s.dtype)
            g_c = g.astype(cd)
            s_new = s.astype(real_dtype(cd)) + abs_sq(g_c)  # s_t = s_{t-1} + |g_t|^2
            x = jnp.where(g_c == 0, 0.0, g_c / (jnp.sqrt(s_new) + eps))  # NaN still shows
            return x.astype(update_dtype(g.dtype)), s_new.astype(s.dtype)

        new_updates, sum_of_squares = map_leaves(leaf, 2, updates, state.sum_of_squares)
        return new_updates, ScaleByAdagradState(sum_of_squares=sum_of_squares)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def adagrad(
    learning_rate: optax.ScalarOrSchedule = 0.01,
    initial_accumulator_value: float = 0.0,
    eps: float = 1e-10,
    *,
    accumulator_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""AdaGrad (Duchi, Hazan and Singer, 2011).

    .. math::
        G_i^{(t)} = \sqrt{\textstyle\sum_{j \le t} (g_i^{(j)})^2}, \qquad
        \vartheta^{(t)} = \vartheta^{(t-1)} - \eta\, (G^{(t)} + \epsilon)^{-1} g^{(t)}

    Lecture symbols: eta = ``learning_rate``, G = the root of ``state[0].sum_of_squares``. The
    lecture presents it as the cheap diagonal approximation of Newton-Raphson's :math:`H^{-1}`:
    O(d) work per step instead of O(d^3). Its rates only shrink, which is why RMSprop came next.

    Args:
      learning_rate: eta >= 0, a number or a schedule.
      initial_accumulator_value: starting value >= 0 of the sum of squares.
      eps: epsilon >= 0, outside the square root.
      accumulator_dtype: dtype of the accumulator; ``None`` keeps each parameter's dtype.

    Returns:
      ``chain(scale_by_adagrad(...), scale_by_learning_rate(learning_rate))``.

    Dtypes: see :func:`scale_by_adagrad`.

    Peers: the defaults equal ``torch.optim.Adagrad(params, lr=0.01)`` (``lr_decay=0``). The
    arguments are optax's, in optax's order, with PyTorch's defaults. optax's
    ``adagrad`` puts eps inside the root and starts the sum at 0.1; with
    ``optax.adagrad(learning_rate, initial_accumulator_value=0.0, eps=0.0)`` it equals this
    optimizer with ``eps=0`` exactly, and the default ``eps=1e-10`` up to that eps.

    Example:
      >>> import jax, jax.numpy as jnp, optax, jaxopt_lectures as jl
      >>> loss = lambda w: jnp.sum((w - jnp.array([1.0, -2.0])) ** 2)
      >>> tx = jl.adagrad(learning_rate=0.5)
      >>> w = jnp.zeros(2)
      >>> state = tx.init(w)
      >>> step = jax.jit(lambda w, s: tx.update(jax.grad(loss)(w), s))
      >>> for _ in range(200):
      ...     updates, state = step(w, state)
      ...     w = optax.apply_updates(w, updates)
      >>> bool(jnp.allclose(w, jnp.array([1.0, -2.0]), atol=1e-4))
      True
    """
    return optax.chain(
        scale_by_adagrad(
            eps=eps,
            initial_accumulator_value=initial_accumulator_value,
            accumulator_dtype=accumulator_dtype,
        ),
        descent(learning_rate),
    )
