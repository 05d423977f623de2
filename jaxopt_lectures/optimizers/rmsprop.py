"""RMSprop: AdaGrad with the sum of squared gradients replaced by an exponential moving average.

Lecture: EMA(g^2)_t = gamma g_t^2 + (1 - gamma) EMA(g^2)_{t-1}, G = sqrt(EMA(g^2)),
theta_t = theta_{t-1} - eta G^-1 g, with the lecture's gamma = 1 - ``decay``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_lectures._checks import check_dtype, check_non_negative, check_unit_interval
from jaxopt_lectures._tree import check_tree_match, compute_dtype, map_leaves, zeros_like
from jaxopt_lectures.optimizers.sgd import scale_by_learning_rate

__all__ = ["ScaleByRmsState", "rmsprop", "scale_by_rms"]


class ScaleByRmsState(NamedTuple):
    """Exponential moving average of squared gradients (the lecture's EMA(g^2))."""

    nu: optax.Updates


def scale_by_rms(
    decay: float = 0.9,
    eps: float = 1e-8,
    accumulator_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Divide by the root of an exponential moving average of squared gradients.

    .. math::
        \nu_t = \rho\, \nu_{t-1} + (1 - \rho)\, g_t^2, \quad \nu_0 = 0, \qquad
        x_t = \frac{g_t}{\sqrt{\nu_t} + \epsilon}

    with :math:`\rho` = ``decay``, the weight of the *past*. The lecture writes the weight of the
    *new* value: its :math:`\gamma = 1 - \rho`, so the default ``decay=0.9`` is the lecture's
    :math:`\gamma = 0.1`. ``eps`` is outside the root (as in PyTorch and Hinton's slides). A
    coordinate whose average is exactly 0 has only seen zero gradients and gets a zero update.

    Args:
      decay: rho in [0, 1).
      eps: epsilon >= 0 added to the root.
      accumulator_dtype: dtype of the average; ``None`` keeps each parameter's dtype.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with a ``ScaleByRmsState``.
    """
    check_unit_interval("decay", decay)
    check_non_negative("eps", eps)
    check_dtype("accumulator_dtype", accumulator_dtype)

    def init_fn(params: optax.Params) -> ScaleByRmsState:
        return ScaleByRmsState(nu=zeros_like(params, accumulator_dtype))

    def update_fn(
        updates: optax.Updates,
        state: ScaleByRmsState,
        params: optax.Params | None = None,
        **extra_args: object,
    ) -> tuple[optax.Updates, ScaleByRmsState]:
        del params, extra_args
        check_tree_match(updates, state.nu, "scale_by_rms")

        def leaf(g: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
            cd = compute_dtype(g.dtype, v.dtype)
            g_c = g.astype(cd)
            v_new = decay * v.astype(cd) + (1 - decay) * (g_c * g_c)  # EMA(g^2)_t
            x = jnp.where(v_new > 0, g_c / (jnp.sqrt(v_new) + eps), 0.0)
            return x.astype(g.dtype), v_new.astype(v.dtype)

        new_updates, nu = map_leaves(leaf, 2, updates, state.nu)
        return new_updates, ScaleByRmsState(nu=nu)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def rmsprop(
    learning_rate: optax.ScalarOrSchedule = 0.01,
    decay: float = 0.9,
    eps: float = 1e-8,
    accumulator_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""RMSprop (Hinton, Srivastava and Swersky, 2012, lecture 6e of "Neural Networks for ML").

    .. math::
        \mathrm{EMA}(g^2)^{(t)} = \gamma\, (g^{(t)})^2 + (1-\gamma)\, \mathrm{EMA}(g^2)^{(t-1)},
        \qquad \vartheta^{(t)} = \vartheta^{(t-1)} - \eta\,
        \frac{g^{(t)}}{\sqrt{\mathrm{EMA}(g^2)^{(t)}} + \epsilon}

    Lecture symbols: eta = ``learning_rate``, gamma = 1 - ``decay`` (the lecture weights the new
    value; we weight the past, as the papers, PyTorch and optax do).

    Args:
      learning_rate: eta >= 0, a number or a schedule.
      decay: rho in [0, 1), the weight of the past (lecture gamma = 1 - decay).
      eps: epsilon >= 0, outside the square root.
      accumulator_dtype: dtype of the average; ``None`` keeps each parameter's dtype.

    Returns:
      ``chain(scale_by_rms(decay, eps), scale_by_learning_rate(learning_rate))``.

    Peers: equals ``torch.optim.RMSprop(params, lr, alpha=decay, eps=eps)`` (PyTorch's default
    alpha is 0.99) and ``optax.rmsprop(learning_rate, decay, eps, eps_in_sqrt=False)`` (optax's
    default puts eps inside the root).
    """
    return optax.chain(
        scale_by_rms(decay=decay, eps=eps, accumulator_dtype=accumulator_dtype),
        scale_by_learning_rate(learning_rate),
    )
