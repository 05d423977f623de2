"""RMSprop: AdaGrad with the sum of squared gradients replaced by an exponential moving average.

Lecture: EMA(g^2)_t = gamma g_t^2 + (1 - gamma) EMA(g^2)_{t-1}, G = sqrt(EMA(g^2)),
theta_t = theta_{t-1} - eta G^-1 g, with the lecture's gamma = 1 - ``decay``.
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
from jaxopt_lectures.optimizers.momentum import trace
from jaxopt_lectures.optimizers.sgd import descent

__all__ = ["ScaleByRmsState", "ScaleByRmsWithCountState", "rmsprop", "scale_by_rms"]


class ScaleByRmsState(NamedTuple):
    """Exponential moving average of squared gradients (the lecture's EMA(g^2))."""

    nu: optax.Updates


class ScaleByRmsWithCountState(NamedTuple):
    """Step count (for the bias correction) and the moving average of squared gradients."""

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as in optax
    nu: optax.Updates


def scale_by_rms(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
    *,
    accumulator_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Divide by the root of an exponential moving average of squared gradients.

    .. math::
        \nu_t = \rho\, \nu_{t-1} + (1 - \rho)\, |g_t|^2, \quad \nu_0 = \nu_{init}, \qquad
        x_t = \frac{g_t}{\sqrt{\hat\nu_t + \epsilon}} \;\text{(default)} \quad\text{or}\quad
        x_t = \frac{g_t}{\sqrt{\hat\nu_t} + \epsilon} \;\text{(}\texttt{eps\_in\_sqrt=False}\text{)}

    with :math:`\rho` = ``decay``, the weight of the *past*, and :math:`\hat\nu_t = \nu_t` or,
    with ``bias_correction``, :math:`\nu_t / (1 - \rho^t)`. The lecture writes the weight of the
    *new* value: its :math:`\gamma = 1 - \rho`, so ``decay=0.9`` is the lecture's
    :math:`\gamma = 0.1`. The lecture's (Hinton's, PyTorch's) RMSprop puts eps outside the root:
    ``eps_in_sqrt=False``, which :func:`rmsprop` passes. A zero gradient gets a zero update even
    where the formula reads 0/0 (eps=0); a NaN or infinite gradient gives a non-finite update.

    Args:
      decay: rho in [0, 1).
      eps: epsilon >= 0.
      initial_scale: nu_0 >= 0, the starting value of the average.
      eps_in_sqrt: add eps inside the root (optax's default) or outside it (the lecture's).
      bias_correction: divide the average by :math:`1 - \rho^t`; the state then also counts
        steps (``ScaleByRmsWithCountState``, as optax).
      accumulator_dtype: dtype of the average (an addition to optax's arguments); ``None`` keeps
        each parameter's (real) dtype.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with a ``ScaleByRmsState`` (or a
      ``ScaleByRmsWithCountState`` with ``bias_correction``).

    Same arguments, defaults, states and numbers as ``optax.scale_by_rms(decay, eps,
    initial_scale, eps_in_sqrt, bias_correction)``.

    Dtypes: float, bf16/f16 (computed in float32), complex (the average of :math:`|g|^2` is real;
    optax keeps it complex with a zero imaginary part); integer gradients give float updates.

    Example:
      >>> import jax.numpy as jnp, jaxopt_lectures as jl
      >>> tx = jl.scale_by_rms(decay=0.75, eps=0.0)
      >>> updates, state = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
      >>> updates  # 2 / sqrt(0.25 * 4)
      Array([2.], dtype=float32)
    """
    check_unit_interval("decay", decay)
    check_non_negative("eps", eps)
    check_non_negative("initial_scale", initial_scale)
    check_bool("eps_in_sqrt", eps_in_sqrt)
    check_bool("bias_correction", bias_correction)
    check_dtype("accumulator_dtype", accumulator_dtype)

    def init_fn(params: optax.Params) -> ScaleByRmsState | ScaleByRmsWithCountState:
        nu = jax.tree.map(
            lambda z: z + jnp.asarray(initial_scale, z.dtype),
            zeros_like(params, accumulator_dtype, real=True),
        )
        if bias_correction:
            return ScaleByRmsWithCountState(count=jnp.zeros([], jnp.int32), nu=nu)
        return ScaleByRmsState(nu=nu)

    def update_fn(
        updates: optax.Updates,
        state: ScaleByRmsState | ScaleByRmsWithCountState,
        params: optax.Params | None = None,
        **extra_args: object,
    ) -> tuple[optax.Updates, ScaleByRmsState | ScaleByRmsWithCountState]:
        del params, extra_args
        check_tree_match(updates, state.nu, "scale_by_rms")
        if isinstance(state, ScaleByRmsWithCountState):
            count = safe_increment(state.count)
            correction = 1 - decay ** count.astype(jnp.result_type(float))
        else:
            count, correction = None, None

        def leaf(g: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
            cd = compute_dtype(g.dtype, v.dtype)
            g_c = g.astype(cd)
            v_new = decay * v.astype(real_dtype(cd)) + (1 - decay) * abs_sq(g_c)  # EMA(|g|^2)_t
            v_hat = v_new if correction is None else v_new / correction.astype(v_new.dtype)
            if eps_in_sqrt:  # noqa: SIM108  (optax's default: g / sqrt(nu + eps))
                x = g_c * jax.lax.rsqrt(v_hat + eps)
            else:  # the lecture's, Hinton's and PyTorch's: g / (sqrt(nu) + eps)
                x = g_c / (jnp.sqrt(v_hat) + eps)
            x = jnp.where(g_c == 0, 0.0, x)  # no 0/0 for a zero gradient; NaN still shows
            return x.astype(update_dtype(g.dtype)), v_new.astype(v.dtype)

        new_updates, nu = map_leaves(leaf, 2, updates, state.nu)
        if count is None:
            return new_updates, ScaleByRmsState(nu=nu)
        return new_updates, ScaleByRmsWithCountState(count=count, nu=nu)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def rmsprop(
    learning_rate: optax.ScalarOrSchedule = 0.01,
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = False,
    centered: bool = False,
    momentum: float | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
    *,
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
      eps: epsilon >= 0.
      initial_scale: starting value >= 0 of the average (optax's).
      eps_in_sqrt: ``False`` (default here, the lecture's and PyTorch's): eps outside the root;
        ``True`` is optax's default.
      centered: optax's centered variant (dividing by the standard deviation instead of the
        root mean square) is not provided: ``True`` raises ``ValueError``; the argument keeps
        optax's positions.
      momentum: ``None``, or a heavy-ball decay applied after the rate, as optax's ``momentum``
        (and PyTorch's): the step is then the velocity of the scaled updates.
      nesterov: with ``momentum``, the Nesterov variant.
      bias_correction: divide the average by :math:`1 - \rho^t` (optax's).
      accumulator_dtype: dtype of the average; ``None`` keeps each parameter's (real) dtype.

    Returns:
      ``chain(scale_by_rms(decay, eps, initial_scale, eps_in_sqrt, bias_correction),
      scale_by_learning_rate(learning_rate))``, followed by ``trace(momentum, nesterov)`` when
      ``momentum`` is given.

    Peers: equals ``torch.optim.RMSprop(params, lr, alpha=decay, eps=eps, momentum=...)``
    (PyTorch's default alpha is 0.99) and ``optax.rmsprop(learning_rate, decay, eps,
    initial_scale, eps_in_sqrt=False, momentum=..., nesterov=..., bias_correction=...)``.

    Dtypes: see :func:`scale_by_rms`.
    """
    check_bool("nesterov", nesterov)
    check_bool("centered", centered)
    if centered:
        raise ValueError(
            "rmsprop: centered=True is not provided by this library; use "
            "optax.rmsprop(..., centered=True), which composes with everything here"
        )
    if momentum is None and nesterov:
        raise ValueError("rmsprop: nesterov=True needs momentum to be set")
    parts = [
        scale_by_rms(
            decay=decay,
            eps=eps,
            initial_scale=initial_scale,
            eps_in_sqrt=eps_in_sqrt,
            bias_correction=bias_correction,
            accumulator_dtype=accumulator_dtype,
        ),
        descent(learning_rate),
    ]
    if momentum is not None:
        parts.append(trace(decay=momentum, nesterov=nesterov))
    return optax.chain(*parts)
