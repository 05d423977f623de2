"""RMSprop: AdaGrad with the sum of squared gradients replaced by an exponential moving average.

Lecture: EMA(g^2)_t = gamma g_t^2 + (1 - gamma) EMA(g^2)_{t-1}, G = sqrt(EMA(g^2)),
theta_t = theta_{t-1} - eta G^-1 g, with the lecture's gamma = 1 - ``decay``. The centered
variant (:func:`scale_by_stddev`, ``rmsprop(centered=True)``) is optax's and PyTorch's, not the
lecture's.
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
from jaxopt_lectures.optimizers.transform import descent, trace

__all__ = [
    "ScaleByRStdDevState",
    "ScaleByRStdDevWithCountState",
    "ScaleByRmsState",
    "ScaleByRmsWithCountState",
    "rmsprop",
    "scale_by_rms",
    "scale_by_stddev",
]


class ScaleByRmsState(NamedTuple):
    """Exponential moving average of squared gradients (the lecture's EMA(g^2))."""

    nu: optax.Updates


class ScaleByRmsWithCountState(NamedTuple):
    """Step count (for the bias correction) and the moving average of squared gradients."""

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as in optax
    nu: optax.Updates


def _initial_average(params: optax.Params, initial_scale: float, dtype: Any) -> optax.Params:
    """The average of squares at step 0: ``initial_scale`` in every entry, real-valued."""
    return jax.tree.map(
        lambda z: z + jnp.asarray(initial_scale, z.dtype),
        zeros_like(params, dtype, real=True),
    )


def _count_and_correction(
    count: jax.Array | None, decay: float
) -> tuple[jax.Array | None, jax.Array | None]:
    """The next step count and the bias correction ``1 - decay**count``; ``None`` when untracked."""
    if count is None:
        return None, None
    count = safe_increment(count)
    return count, 1 - decay ** count.astype(jnp.result_type(float))


# Long: a 41-line docstring; init and update share the checked arguments (optax's closure).
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
        nu = _initial_average(params, initial_scale, accumulator_dtype)
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
        count, correction = _count_and_correction(
            state.count if isinstance(state, ScaleByRmsWithCountState) else None, decay
        )

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


class ScaleByRStdDevState(NamedTuple):
    """Moving averages of the gradients (``mu``) and of their squared magnitudes (``nu``)."""

    mu: optax.Updates
    nu: optax.Updates


class ScaleByRStdDevWithCountState(NamedTuple):
    """Step count (for the bias correction) and the two moving averages of ``scale_by_stddev``."""

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as in optax
    mu: optax.Updates
    nu: optax.Updates


# Long: a 63-line docstring; init and update share the checked arguments (optax's closure).
def scale_by_stddev(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
    *,
    accumulator_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Divide by a moving estimate of the gradients' standard deviation (centered RMSprop).

    .. math::
        \mu_t = \rho\, \mu_{t-1} + (1 - \rho)\, g_t, \quad \mu_0 = 0, \qquad
        \nu_t = \rho\, \nu_{t-1} + (1 - \rho)\, |g_t|^2, \quad \nu_0 = \nu_{init},

        \sigma^2_t = \max(\hat\nu_t - |\hat\mu_t|^2,\, 0), \qquad
        x_t = \frac{g_t}{\sqrt{\sigma^2_t + \epsilon}} \;\text{(default)} \quad\text{or}\quad
        x_t = \frac{g_t}{\sqrt{\sigma^2_t} + \epsilon}
        \;\text{(}\texttt{eps\_in\_sqrt=False}\text{)}

    with :math:`\rho` = ``decay``, the weight of the *past*, and :math:`\hat\mu_t, \hat\nu_t`
    the averages themselves or, with ``bias_correction``, both divided by :math:`1 - \rho^t`.
    :func:`scale_by_rms` divides by :math:`\sqrt{\hat\nu_t}`, the root mean square; this
    transform subtracts the squared mean first (Graves, 2013, "Generating Sequences With
    Recurrent Neural Networks", section 4), so a coordinate whose gradient is large but steady
    takes larger steps than one whose gradient is large and noisy.

    The lecture has no centered variant; in its notation (the weight of the *new* value,
    :math:`\gamma = 1 - \rho`) the two averages are
    :math:`\mathrm{EMA}(g)_t = \gamma g_t + (1 - \gamma) \mathrm{EMA}(g)_{t-1}` and its
    :math:`\mathrm{EMA}(g^2)_t`, and :math:`G = \sqrt{\mathrm{EMA}(g^2) - \mathrm{EMA}(g)^2}`
    replaces RMSprop's :math:`G = \sqrt{\mathrm{EMA}(g^2)}`.

    :math:`\hat\nu_t - |\hat\mu_t|^2` is never negative in exact arithmetic (Cauchy-Schwarz,
    for :math:`\nu_{init} \ge 0`), but in floating point it can round below zero when the
    gradient has been (nearly) constant, most easily with ``bias_correction``, where it is exactly
    0 for a constant gradient. optax then takes the root of a negative number (NaN, or with
    ``eps_in_sqrt`` and a rounding error below eps a number set by that error); here the estimate
    is clamped at 0. Otherwise the numbers are optax's. A zero gradient gets a zero update even
    where the formula reads 0/0 (eps=0); a NaN or infinite gradient gives a non-finite update
    (the clamp keeps NaN).

    Args:
      decay: rho in [0, 1), the weight of the past in both averages.
      eps: epsilon >= 0.
      initial_scale: nu_0 >= 0, the starting value of the average of squares (mu starts at 0).
      eps_in_sqrt: add eps inside the root (optax's default) or outside it (PyTorch's).
      bias_correction: divide both averages by :math:`1 - \rho^t`; the state then also counts
        steps (``ScaleByRStdDevWithCountState``, as optax).
      accumulator_dtype: dtype of both averages (an addition to optax's arguments); ``None``
        keeps each parameter's dtype (real for the average of squares).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with a ``ScaleByRStdDevState(mu, nu)`` (or a
      ``ScaleByRStdDevWithCountState(count, mu, nu)`` with ``bias_correction``).

    Same arguments, defaults, states and numbers as ``optax.scale_by_stddev(decay, eps,
    initial_scale, eps_in_sqrt, bias_correction)`` (but for the clamp above). With
    ``eps_in_sqrt=False`` and no bias correction it is the direction of
    ``torch.optim.RMSprop(alpha=decay, eps=eps, centered=True)``.

    Dtypes: float, bf16/f16 (computed in float32), complex (``mu`` complex, ``nu`` the real
    average of :math:`|g|^2`; optax keeps ``nu`` complex with a zero imaginary part); integer
    gradients give float updates.

    Example:
      >>> import jax.numpy as jnp, jaxopt_lectures as jl
      >>> tx = jl.scale_by_stddev(decay=0.75, eps=0.0)
      >>> updates, state = tx.update(jnp.array([4.0]), tx.init(jnp.zeros(1)))
      >>> updates  # mu = 1, nu = 4: 4 / sqrt(4 - 1**2)
      Array([2.309401], dtype=float32)
    """
    check_unit_interval("decay", decay)
    check_non_negative("eps", eps)
    check_non_negative("initial_scale", initial_scale)
    check_bool("eps_in_sqrt", eps_in_sqrt)
    check_bool("bias_correction", bias_correction)
    check_dtype("accumulator_dtype", accumulator_dtype)

    def init_fn(params: optax.Params) -> ScaleByRStdDevState | ScaleByRStdDevWithCountState:
        mu = zeros_like(params, accumulator_dtype)
        nu = _initial_average(params, initial_scale, accumulator_dtype)
        if bias_correction:
            return ScaleByRStdDevWithCountState(count=jnp.zeros([], jnp.int32), mu=mu, nu=nu)
        return ScaleByRStdDevState(mu=mu, nu=nu)

    def update_fn(
        updates: optax.Updates,
        state: ScaleByRStdDevState | ScaleByRStdDevWithCountState,
        params: optax.Params | None = None,
        **extra_args: object,
    ) -> tuple[optax.Updates, ScaleByRStdDevState | ScaleByRStdDevWithCountState]:
        del params, extra_args
        check_tree_match(updates, state.nu, "scale_by_stddev")
        count, correction = _count_and_correction(
            state.count if isinstance(state, ScaleByRStdDevWithCountState) else None, decay
        )

        def leaf(
            g: jax.Array, m: jax.Array, v: jax.Array
        ) -> tuple[jax.Array, jax.Array, jax.Array]:
            cd = compute_dtype(g.dtype, m.dtype, v.dtype)
            g_c = g.astype(cd)
            m_new = decay * m.astype(cd) + (1 - decay) * g_c  # EMA(g)_t
            v_new = decay * v.astype(real_dtype(cd)) + (1 - decay) * abs_sq(g_c)  # EMA(|g|^2)_t
            if correction is None:
                m_hat, v_hat = m_new, v_new
            else:
                m_hat = m_new / correction.astype(cd)
                v_hat = v_new / correction.astype(v_new.dtype)
            # The variance estimate; max(NaN, 0) is NaN, so a NaN gradient still shows.
            var = jnp.maximum(v_hat - abs_sq(m_hat), 0.0)
            if eps_in_sqrt:  # noqa: SIM108  (optax's default: g / sqrt(var + eps))
                x = g_c * jax.lax.rsqrt(var + eps)
            else:  # PyTorch's centered RMSprop: g / (sqrt(var) + eps)
                x = g_c / (jnp.sqrt(var) + eps)
            x = jnp.where(g_c == 0, 0.0, x)  # no 0/0 for a zero gradient; NaN still shows
            return x.astype(update_dtype(g.dtype)), m_new.astype(m.dtype), v_new.astype(v.dtype)

        new_updates, mu, nu = map_leaves(leaf, 3, updates, state.mu, state.nu)
        if count is None:
            return new_updates, ScaleByRStdDevState(mu=mu, nu=nu)
        return new_updates, ScaleByRStdDevWithCountState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# Long for its docstring (50 of 82 lines: equation, symbols, equivalents, example).
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
      centered: divide by the estimated standard deviation
        :math:`\sqrt{\mathrm{EMA}(g^2) - \mathrm{EMA}(g)^2}` instead of the root mean square
        (:func:`scale_by_stddev` replaces :func:`scale_by_rms`; optax's and PyTorch's ``centered``;
        not in the lecture). ``eps_in_sqrt`` and ``bias_correction`` apply to it unchanged.
      momentum: ``None``, or a heavy-ball decay applied after the rate, as optax's ``momentum``
        (and PyTorch's): the step is then the velocity of the scaled updates.
      nesterov: with ``momentum``, the Nesterov variant.
      bias_correction: divide the average by :math:`1 - \rho^t` (optax's).
      accumulator_dtype: dtype of the average; ``None`` keeps each parameter's (real) dtype.

    Returns:
      ``chain(scale_by_rms(decay, eps, initial_scale, eps_in_sqrt, bias_correction),
      scale_by_learning_rate(learning_rate))`` (``scale_by_stddev`` with ``centered``), followed
      by ``trace(momentum, nesterov)`` when ``momentum`` is given.

    Peers: equals ``torch.optim.RMSprop(params, lr, alpha=decay, eps=eps, momentum=...,
    centered=...)`` (PyTorch's default alpha is 0.99; its centered variant also puts eps outside
    the root, :math:`g / (\sqrt{v - m^2} + \epsilon)`, which is this function's default
    ``eps_in_sqrt=False``) and ``optax.rmsprop(learning_rate, decay, eps, initial_scale,
    eps_in_sqrt=False, centered=..., momentum=..., nesterov=..., bias_correction=...)`` (optax's
    default puts eps inside the root, for the centered variant as well). With ``centered`` the
    variance estimate is clamped at 0 where rounding takes it below (see
    :func:`scale_by_stddev`).

    Dtypes: see :func:`scale_by_rms` and :func:`scale_by_stddev`.

    Example:
      >>> import jax.numpy as jnp, jaxopt_lectures as jl
      >>> tx = jl.rmsprop(0.1, decay=0.75, eps=0.0, centered=True)
      >>> updates, state = tx.update(jnp.array([4.0]), tx.init(jnp.zeros(1)))
      >>> updates  # -0.1 * 4 / sqrt(4 - 1**2)
      Array([-0.2309401], dtype=float32)
    """
    check_bool("nesterov", nesterov)
    check_bool("centered", centered)
    if momentum is None and nesterov:
        raise ValueError("rmsprop: nesterov=True needs momentum to be set")
    scale = scale_by_stddev if centered else scale_by_rms
    parts = [
        scale(
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
