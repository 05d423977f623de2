"""Input normalization: standardize every input component with the data set's mean and variance.

Lecture, over the data set D (component-wise):

    mu = 1/|D| sum_{x in D} x,    sigma_i^2 = 1/|D| sum_{x in D} (x_i - mu_i)^2,
    x_hat_i = (x_i - mu_i) / sqrt(sigma_i^2 + eps)

The statistics are kept as a streaming state (count, mean, M2 = the sum of squared deviations) that
takes the data batch by batch and merges with the parallel formula of Chan, Golub and LeVeque, so a
data set larger than memory, or spread over devices or hosts, is standardized exactly as if it had
been seen in one piece. The state is plain data: fit it on the training set, then it stays frozen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from jaxopt_lectures._checks import check_dtype, check_non_negative
from jaxopt_lectures._tree import compute_dtype
from jaxopt_lectures.nn._axis import AxisName, psum_count

__all__ = [
    "NormalizerState",
    "normalize",
    "normalizer_fit",
    "normalizer_init",
    "normalizer_merge",
    "normalizer_update",
]


class NormalizerState(NamedTuple):
    """Streaming statistics of the data seen so far, one entry per input component.

    ``count`` is kept in the floating dtype of the state, so it never wraps around the way an int32
    counter does after 2**31 examples (in float32 it is exact up to 2**24 examples and rounds, with
    a relative error of 6e-8, beyond that). The sum of squared deviations is kept as
    ``M2 = m2 * scale**2`` with ``scale`` a power of two per component: 1 for ordinary data (then
    ``m2`` is M2 itself, bit for bit), larger only when the deviations are so large that their
    squares would overflow the dtype (``|x - mu|`` above 2**32 in float32), so that data whose
    values are finite always gives finite statistics and a finite standardization.
    ``var`` is the lecture's biased variance M2 / count.
    """

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as in optax
    mean: jax.Array
    m2: jax.Array
    scale: jax.Array

    def _per_state(self, a: jax.Array) -> jax.Array:  # broadcast count over a stack of states
        return a.reshape(a.shape + (1,) * (self.m2.ndim - a.ndim))

    @property
    def var(self) -> jax.Array:
        """The lecture's ``sigma^2 = M2 / |D|`` (biased, as sklearn's ``StandardScaler``).

        Also works on a stack of states (the output of ``vmap``): the count broadcasts per state.
        Where sigma^2 itself is beyond the dtype's range (``|x|`` around 1e20 and more in float32)
        it is inf; :func:`normalize` works from sigma and stays finite.
        """
        return self.m2 / self._per_state(jnp.maximum(self.count, 1)) * self.scale * self.scale

    def std(self, eps: float = 0.0) -> jax.Array:
        """sqrt(sigma^2 + eps), computed without squaring ``scale`` (finite for finite data)."""
        scaled_var = self.m2 / self._per_state(jnp.maximum(self.count, 1))
        return jnp.sqrt(scaled_var + eps / (self.scale * self.scale)) * self.scale


def batch_moments(
    x: jax.Array, axes: tuple[int, ...], axis_name: AxisName | None = None, caller: str = "nn"
) -> tuple[int, jax.Array, jax.Array]:
    """Count, mean and M2 (sum of squared deviations) of ``x`` over ``axes``, without cancellation.

    The corrected two-pass algorithm (Chan, Golub and LeVeque, 1983): a first pass gives a shift
    close to the mean, the second sums the centered values d = x - shift and their squares, and

        mean = shift + sum(d) / n,        M2 = sum(d^2) - sum(d)^2 / n,

    which is exact for any shift and loses nothing when the shift is close to the mean. The naive
    ``E[x^2] - E[x]^2`` loses every digit of a float32 variance when |mean| / std > ~3e3.

    With ``axis_name`` the sums run over every device along that mapped axis (``lax.psum``), so each
    device gets the statistics of the whole, global batch (synchronized statistics). The count is a
    Python int (shapes are static, and ``psum`` of an int is static too).

    Gradients: the shift is under ``stop_gradient``. The result does not depend on it, so the
    derivatives are those of the textbook formulas, at a lower cost.
    """
    count, mean, m2, _ = scaled_moments(x, axes, axis_name, caller, guard=False)
    return count, mean, m2


# Deviations are divided by a power of two 2**k (exact) when they exceed 2**(max_exponent / 4):
# their squares then stay below 2**(max_exponent / 2), and sums of up to 2**(max_exponent / 2)
# of them cannot overflow (float32: deviations up to 2**32 ~ 4e9 are not scaled at all).
def _scale_for(magnitude: jax.Array) -> jax.Array:
    """A power of two per entry: 1 when ``magnitude`` is small enough to square and sum."""
    limit = jnp.finfo(magnitude.dtype).maxexp // 4
    _, exponent = jnp.frexp(magnitude)
    return jnp.ldexp(jnp.ones_like(magnitude), jnp.maximum(exponent - limit, 0))


def scaled_moments(
    x: jax.Array,
    axes: tuple[int, ...],
    axis_name: AxisName | None = None,
    caller: str = "nn",
    *,
    guard: bool = True,
) -> tuple[int, jax.Array, jax.Array, jax.Array]:
    """Count, mean and M2 of ``x`` over ``axes`` as ``(count, mean, m2, scale)``, M2 = m2 scale^2.

    As :func:`batch_moments`, and safe from overflow for any finite ``x``: the values are divided
    by a power of two before the first sum, and the deviations before they are squared. For
    ordinary data both powers are 1 and the numbers are those of :func:`batch_moments`, bit for
    bit. ``scale`` has the shape of ``mean``. ``caller`` names the public function in the error
    raised for an ``axis_name`` that is not mapped. ``guard=False`` leaves the guard out (scale
    1): :func:`batch_moments` for batch norm, whose activations stay far from overflow and whose
    training loop should not pay for the two extra reductions.
    """
    count = math.prod(x.shape[a] for a in axes)
    if axis_name is not None:
        count = psum_count(count, axis_name, caller)
    zeros = jnp.zeros(tuple(s for a, s in enumerate(x.shape) if a not in axes), x.dtype)
    if count == 0:
        return 0, zeros, zeros, jnp.ones_like(zeros)

    def reduce(fn: Any, value: Any, collective: Any) -> Any:
        out = fn(value, axis=axes, keepdims=True)
        return out if axis_name is None else collective(out, axis_name)

    # The powers of two and the shift are constants for differentiation (pmax has no JVP rule,
    # so the gradient is stopped on their inputs); the result does not depend on them.
    x_const = lax.stop_gradient(x)
    if guard:
        first = _scale_for(reduce(jnp.max, jnp.abs(x_const), lax.pmax))
        shift = reduce(jnp.sum, x_const / first, lax.psum) / count * first
    else:
        shift = reduce(jnp.sum, x_const, lax.psum) / count
    d = x - shift
    if guard:
        scale = _scale_for(reduce(jnp.max, jnp.abs(lax.stop_gradient(d)), lax.pmax))
        d = d / scale
    sums = (jnp.sum(d, axis=axes), jnp.sum(d * d, axis=axes))  # second pass, centered
    if axis_name is not None:
        sums = lax.psum(sums, axis_name)  # one collective for both sums
    s1, s2 = sums
    m2 = jnp.maximum(s2 - s1 * s1 / count, 0.0)
    if not guard:
        return count, jnp.squeeze(shift, axis=axes) + s1 / count, m2, jnp.ones_like(m2)
    scale = jnp.squeeze(scale, axis=axes)
    return count, jnp.squeeze(shift, axis=axes) + s1 / count * scale, m2, scale


def _merge(
    state: NormalizerState,
    count_b: ArrayLike,
    mean_b: jax.Array,
    m2_b: jax.Array,
    scale_b: jax.Array,
) -> NormalizerState:
    """Chan et al.'s parallel formula: the statistics of the union of two disjoint sets.

    Every term of M2 is brought to the common power-of-two scale (exactly) before it is added.
    """
    dtype = state.mean.dtype
    count_a, mean_a, m2_a, scale_a = state
    count = count_a + jnp.asarray(count_b, dtype)
    weight_b = jnp.where(count > 0, count_b / jnp.maximum(count, 1), 0.0)  # n_b / n
    delta = mean_b.astype(dtype) - mean_a  # mean_b - mean_a
    mean = mean_a + delta * weight_b
    scale = jnp.maximum(jnp.maximum(scale_a, scale_b.astype(dtype)), _scale_for(jnp.abs(delta)))
    ra, rb, rd = scale_a / scale, scale_b.astype(dtype) / scale, delta / scale
    # M2 = M2_a + M2_b + delta^2 n_a n_b / n, in units of scale^2
    m2 = m2_a * ra * ra + m2_b.astype(dtype) * rb * rb + rd * rd * count_a * weight_b
    return NormalizerState(count=count.astype(dtype), mean=mean, m2=m2, scale=scale)


def normalizer_init(shape: int | Sequence[int], dtype: Any = jnp.float32) -> NormalizerState:
    """An empty normalizer for inputs whose trailing dimensions are ``shape``.

    Args:
      shape: the shape of the statistics: the shape of one example (``(64,)`` for 8x8 digits,
        ``(28, 28)`` per pixel) or of its trailing axes only (``(3,)`` for per-channel statistics
        of ``(batch, height, width, 3)`` images).
      dtype: a floating dtype for the state (count included).

    Returns:
      A ``NormalizerState`` with count 0, mean 0, M2 0 (and scale 1).

    Example:
      >>> import jax.numpy as jnp, jaxopt_lectures as jl
      >>> state = jl.nn.normalizer_init(2)
      >>> state = jl.nn.normalizer_update(state, jnp.array([[0.0, 10.0], [2.0, 30.0]]))
      >>> state.mean, state.var
      (Array([ 1., 20.], dtype=float32), Array([  1., 100.], dtype=float32))
    """
    check_dtype("dtype", dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    zeros = jnp.zeros(shape, dtype)
    return NormalizerState(count=jnp.zeros([], dtype), mean=zeros, m2=zeros, scale=zeros + 1)


def normalizer_update(
    state: NormalizerState, batch: ArrayLike, *, axis_name: AxisName | None = None
) -> NormalizerState:
    r"""Merge a batch into the running statistics (Chan et al.'s parallel formula).

    The batch's own count :math:`n_b`, mean and :math:`M2_b` are computed in two passes (centered,
    see ``batch_moments``) and merged into the state :math:`(n_a, \mu_a, M2_a)`:

    .. math::
        n = n_a + n_b, \quad \delta = \mu_b - \mu_a, \quad
        \mu = \mu_a + \delta\, \frac{n_b}{n}, \quad
        M2 = M2_a + M2_b + \delta^2\, \frac{n_a n_b}{n}

    so the result does not depend on how the data was cut into batches or in which order they came
    (up to rounding), and equals one pass over the whole data set.

    Args:
      state: the statistics so far.
      batch: an array of shape ``(..., *shape)``: every leading axis is a batch axis.
      axis_name: a mapped axis (``shard_map``, ``pmap``, ``vmap`` with ``axis_name``) over which the
        batch is split; every device then merges the statistics of the whole, global batch and the
        states stay identical across devices.

    Returns:
      The updated ``NormalizerState``.

    Example:
      >>> import jax.numpy as jnp, jaxopt_lectures as jl
      >>> state = jl.nn.normalizer_init(2)
      >>> state = jl.nn.normalizer_update(state, jnp.array([[1.0, 10.0], [3.0, 10.0]]))
      >>> state = jl.nn.normalizer_update(state, jnp.array([[5.0, 40.0]]))
      >>> state.mean, state.var
      (Array([ 3., 20.], dtype=float32), Array([  2.6666667, 200.       ], dtype=float32))
    """
    batch = jnp.asarray(batch)
    shape = state.mean.shape
    feature_ndim = len(shape)
    if batch.ndim < feature_ndim or batch.shape[batch.ndim - feature_ndim :] != shape:
        raise ValueError(
            f"normalizer_update: the batch has shape {batch.shape} but the normalizer keeps "
            f"statistics of shape {shape}; the batch must have shape (..., *{shape})."
        )
    cd = compute_dtype(state.mean.dtype, batch.dtype)
    axes = tuple(range(batch.ndim - feature_ndim))
    count_b, mean_b, m2_b, scale_b = scaled_moments(
        batch.astype(cd), axes, axis_name, "normalizer_update"
    )
    if count_b == 0:
        return state
    merged = _merge(jax.tree.map(lambda a: a.astype(cd), state), count_b, mean_b, m2_b, scale_b)
    return jax.tree.map(lambda new, old: new.astype(old.dtype), merged, state)


def normalizer_merge(state_a: NormalizerState, state_b: NormalizerState) -> NormalizerState:
    """The statistics of two disjoint data sets, from their two states (Chan et al.'s formula).

    Lets workers or hosts fit their shards independently and combine the results. The merge is
    symmetric and associative up to rounding.

    Example:
      >>> import jax.numpy as jnp, jaxopt_lectures as jl
      >>> a = jl.nn.normalizer_fit(jnp.array([[1.0], [3.0]]))
      >>> b = jl.nn.normalizer_fit(jnp.array([[5.0]]))
      >>> jl.nn.normalizer_merge(a, b).mean
      Array([3.], dtype=float32)
    """
    if state_a.mean.shape != state_b.mean.shape:
        raise ValueError(
            f"normalizer_merge: the states keep statistics of shapes {state_a.mean.shape} and "
            f"{state_b.mean.shape}; only states of the same shape can be merged."
        )
    return _merge(state_a, state_b.count, state_b.mean, state_b.m2, state_b.scale)


def normalizer_fit(
    x: ArrayLike,
    *,
    shape: int | Sequence[int] | None = None,
    dtype: Any = jnp.float32,
    axis_name: AxisName | None = None,
) -> NormalizerState:
    """The statistics of a whole data set in one call: ``normalizer_update(normalizer_init(), x)``.

    Args:
      x: the data, of shape ``(num_examples, *shape)`` (or with more leading batch axes).
      shape: the shape of the statistics; defaults to ``x.shape[1:]`` (per component of an example).
      dtype: a floating dtype for the state.
      axis_name: as in :func:`normalizer_update`.

    Returns:
      A ``NormalizerState``. Same numbers as ``sklearn.preprocessing.StandardScaler().fit(x)``:
      ``mean`` is its ``mean_``, ``var`` its ``var_`` (both use the biased ``1/|D|`` variance).

    Example:
      >>> import jax.numpy as jnp, jaxopt_lectures as jl
      >>> x = jnp.array([[0.0, 10.0], [2.0, 30.0], [4.0, 50.0]])
      >>> state = jl.nn.normalizer_fit(x)
      >>> x_hat = jl.nn.normalize(state, x, eps=0.0)
      >>> bool(jnp.allclose(x_hat.mean(axis=0), 0.0, atol=1e-6))
      True
      >>> bool(jnp.allclose(x_hat.std(axis=0), 1.0))  # standardized: unit variance
      True
    """
    x = jnp.asarray(x)
    if shape is None:
        if x.ndim == 0:
            raise ValueError("normalizer_fit: x must have a leading batch axis, got a scalar")
        shape = x.shape[1:]
    return normalizer_update(normalizer_init(shape, dtype), x, axis_name=axis_name)


def normalize(
    state: NormalizerState, x: ArrayLike, eps: float = 1e-8, *, min_std: float = 0.0
) -> jax.Array:
    r"""Standardize inputs with frozen statistics: the lecture's input normalization.

    .. math::
        \hat{x}_i = \frac{x_i - \mu_i}{\max\left(\sqrt{\sigma_i^2 + \epsilon},\
        \mathrm{min\_std}\right)}

    With the default ``min_std=0`` this is exactly the lecture's formula. A component that is
    constant in the training data (the border pixels of the digits, always 0) has
    :math:`\sigma_i = 0`, and then any other value at test time is multiplied by
    :math:`1/\sqrt{\epsilon}` = 1e4; ``min_std`` floors the denominator (at 1 pixel unit, say) so
    such components are merely shifted. The state is not changed: normalize the validation and test
    sets with the training set's statistics.

    Args:
      state: statistics from :func:`normalizer_fit` or :func:`normalizer_update`.
      x: inputs of shape ``(..., *shape)``.
      eps: epsilon >= 0 inside the root, "to avoid division by zero".
      min_std: a floor >= 0 on the denominator, in the units of the inputs.

    Returns:
      The standardized inputs, in the dtype that ``x`` and the state promote to.

    Peer: ``sklearn.preprocessing.StandardScaler`` divides by ``sqrt(var)`` and replaces a zero
    standard deviation by 1; here ``eps=0, min_std=...`` gives a floor instead.

    Example:
      >>> import jax.numpy as jnp, jaxopt_lectures as jl
      >>> x = jnp.array([[1.0, 10.0], [3.0, 10.0]])
      >>> jl.nn.normalize(jl.nn.normalizer_fit(x), x, eps=0.0, min_std=1.0)
      Array([[-1.,  0.],
             [ 1.,  0.]], dtype=float32)
    """
    check_non_negative("eps", eps)
    check_non_negative("min_std", min_std)
    x = jnp.asarray(x)
    shape = state.mean.shape
    if x.ndim < len(shape) or x.shape[x.ndim - len(shape) :] != shape:
        raise ValueError(
            f"normalize: x has shape {x.shape} but the normalizer keeps statistics of shape "
            f"{shape}; x must have shape (..., *{shape})."
        )
    return (x - state.mean) / jnp.maximum(state.std(eps), min_std)
