"""AdaDelta: RMSprop with the units fixed by a second average, of the squared steps.

Lecture: D = sqrt(EMA(Delta theta^2)), G = sqrt(EMA(g^2)), theta_t = theta_{t-1} - eta D G^-1 g.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_lectures._checks import check_dtype, check_positive, check_unit_interval
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

__all__ = ["ScaleByAdadeltaState", "adadelta", "scale_by_adadelta"]


class ScaleByAdadeltaState(NamedTuple):
    """EMA of squared gradients (lecture G^2) and EMA of squared steps (lecture D^2)."""

    e_g: optax.Updates
    e_x: optax.Updates


# Long: a 35-line docstring; init and update share the checked arguments (optax's closure).
def scale_by_adadelta(
    rho: float = 0.9,
    eps: float = 1e-6,
    *,
    accumulator_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Zeiler's AdaDelta direction, a step with the units of the parameters.

    .. math::
        E[g^2]_t &= \rho\, E[g^2]_{t-1} + (1-\rho)\, g_t^2 \\
        \Delta_t &= \frac{\sqrt{E[\Delta^2]_{t-1} + \epsilon}}{\sqrt{E[g^2]_t + \epsilon}}\, g_t \\
        E[\Delta^2]_t &= \rho\, E[\Delta^2]_{t-1} + (1-\rho)\, \Delta_t^2

    with both averages starting at 0. The output :math:`\Delta_t` is a descent *direction*; the
    sign is applied by :func:`scale_by_learning_rate` in :func:`adadelta`. The average of squared
    steps uses :math:`\Delta_t` before any learning rate, as Zeiler, PyTorch and optax do.

    Args:
      rho: in [0, 1), the weight of the past in both averages (lecture: 1 - its decay weight).
      eps: epsilon > 0. It also sets the size of the first steps (about sqrt(eps) per
        coordinate), so it cannot be 0: with eps = 0 every step would be exactly 0.
      accumulator_dtype: dtype of both averages (an addition to optax's arguments); ``None``
        keeps each parameter's (real) dtype.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with a ``ScaleByAdadeltaState``.

    Same arguments, defaults, state and numbers as ``optax.scale_by_adadelta(rho, eps)``.

    Dtypes: float, bf16/f16 (computed in float32), complex (both averages hold the real
    :math:`|g|^2` and :math:`|\Delta|^2`; optax squares complex numbers as ``g**2`` and does not
    support them); integer gradients give float updates. A NaN or infinite gradient gives a
    non-finite update, and a NaN in the state shows in every later update, as in optax.

    Implementation note: the update is read back from the *new* average of squared steps,
    :math:`\Delta_t = \sqrt{(E[\Delta^2]_t + \rho\epsilon) / (\rho (E[g^2]_t + \epsilon) +
    (1-\rho) g_t^2)}\; g_t`, which equals the ratio above exactly (expand
    :math:`E[\Delta^2]_t`). Both outputs then follow the new average, so XLA needs no copy of
    the old one, and the step on a large leaf is faster than ``optax.scale_by_adadelta``'s as
    written on XLA:CPU (the "jl / optax" column of ``docs/performance.md``). The two
    square roots are taken separately, so neither a tiny ratio nor a huge :math:`g_t^2`
    underflows or overflows where the textbook form does not.

    Example:
      >>> import jax.numpy as jnp, jaxopt_lectures as jl
      >>> tx = jl.scale_by_adadelta(rho=0.9, eps=1e-6)
      >>> updates, state = tx.update(jnp.array([1.0]), tx.init(jnp.zeros(1)))
      >>> round(float(updates[0]), 6)  # sqrt(eps / (0.1 + eps))
      0.003162
    """
    check_unit_interval("rho", rho)
    check_positive("eps", eps, " (with eps = 0 AdaDelta's steps are all exactly 0)")
    check_dtype("accumulator_dtype", accumulator_dtype)

    def init_fn(params: optax.Params) -> ScaleByAdadeltaState:
        return ScaleByAdadeltaState(
            e_g=zeros_like(params, accumulator_dtype, real=True),
            e_x=zeros_like(params, accumulator_dtype, real=True),
        )

    def update_fn(
        updates: optax.Updates,
        state: ScaleByAdadeltaState,
        params: optax.Params | None = None,
        **extra_args: object,
    ) -> tuple[optax.Updates, ScaleByAdadeltaState]:
        del params, extra_args
        check_tree_match(updates, state.e_g, "scale_by_adadelta")

        def leaf(g: jax.Array, e_g: jax.Array, e_x: jax.Array) -> tuple[jax.Array, ...]:
            cd = compute_dtype(g.dtype, e_g.dtype, e_x.dtype)
            g_c, e_x_c = g.astype(cd), e_x.astype(real_dtype(cd))
            g_sq = abs_sq(g_c)
            e_g_new = rho * e_g.astype(real_dtype(cd)) + (1 - rho) * g_sq  # E[g^2]_t
            step = jnp.sqrt(e_x_c + eps) / jnp.sqrt(e_g_new + eps) * jnp.abs(g_c)  # |Delta_t|
            e_x_new = rho * e_x_c + (1 - rho) * step**2  # E[Delta^2]_t
            denominator = rho * (e_g_new + eps) + (1 - rho) * g_sq  # 0 only if rho = g = 0
            ratio = jnp.sqrt(e_x_new + rho * eps) / jnp.sqrt(denominator)  # D_{t-1} / G_t
            delta = jnp.where(denominator == 0, 0.0, ratio) * g_c  # Delta_t (implementation note)
            out = delta.astype(update_dtype(g.dtype))
            return out, e_g_new.astype(e_g.dtype), e_x_new.astype(e_x.dtype)

        new_updates, e_g, e_x = map_leaves(leaf, 3, updates, state.e_g, state.e_x)
        return new_updates, ScaleByAdadeltaState(e_g=e_g, e_x=e_x)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def adadelta(
    learning_rate: optax.ScalarOrSchedule = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    *,
    accumulator_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""AdaDelta (Zeiler, 2012): no hand-tuned global rate needed.

    .. math::
        \vartheta^{(t)} = \vartheta^{(t-1)} - \eta\, D^{(t-1)} \bigl(G^{(t)}\bigr)^{-1} g^{(t)},
        \qquad D = \sqrt{\mathrm{EMA}(\Delta\vartheta^2) + \epsilon},\;
        G = \sqrt{\mathrm{EMA}(g^2) + \epsilon}

    Lecture symbols: eta = ``learning_rate`` (Zeiler's method is eta = 1, the default), the two
    EMAs weight the new value by the lecture's gamma = 1 - ``rho``. The lecture's :math:`G^{(t-1)}`
    is read, as in the paper, as including the current gradient.

    Args:
      learning_rate: eta >= 0, a number or a schedule. Defaults to 1.0, Zeiler's method. The
        descent sign is always applied: unlike ``optax.adadelta()`` (whose default
        ``learning_rate=None`` skips the sign flip and so *climbs* the loss) no setting of this
        function ascends.
      rho: in [0, 1), the weight of the past (PyTorch's ``rho``).
      eps: epsilon > 0.
      accumulator_dtype: dtype of both averages; ``None`` keeps each parameter's (real) dtype.

    Returns:
      ``chain(scale_by_adadelta(rho, eps), scale_by_learning_rate(learning_rate))``.

    Dtypes: see :func:`scale_by_adadelta`.

    Peers: the defaults equal ``torch.optim.Adadelta(params)`` (lr=1.0, rho=0.9, eps=1e-6) and
    ``optax.adadelta(1.0)``.

    Example:
      >>> import jax, jax.numpy as jnp, optax, jaxopt_lectures as jl
      >>> loss = lambda w: jnp.sum((w - jnp.array([1.0, -2.0])) ** 2)
      >>> tx = jl.adadelta()  # no rate to tune: the steps grow from sqrt(eps)
      >>> w = jnp.zeros(2)
      >>> state = tx.init(w)
      >>> step = jax.jit(lambda w, s: tx.update(jax.grad(loss)(w), s))
      >>> for _ in range(500):
      ...     updates, state = step(w, state)
      ...     w = optax.apply_updates(w, updates)
      >>> float(loss(w)) < 0.01 * float(loss(jnp.zeros(2)))
      True
    """
    return optax.chain(
        scale_by_adadelta(rho=rho, eps=eps, accumulator_dtype=accumulator_dtype),
        descent(learning_rate),
    )
