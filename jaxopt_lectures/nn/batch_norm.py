"""Batch normalization (Ioffe and Szegedy, 2015): normalize each layer's input over the mini-batch.

Lecture, for a mini-batch B = {x^(i)}, i = 1..m, all operations element-wise (per feature):

    mu_B = 1/m sum_i x^(i),   sigma_B^2 = 1/m sum_i (x^(i) - mu_B)^2,
    x_hat^(i) = (x^(i) - mu_B) / sqrt(sigma_B^2 + eps),   BN(x^(i)) = gamma x_hat^(i) + beta

with trainable gamma (``scale``) and beta (``bias``). Training also collects moving averages

    MA(mu)^(t)      = delta mu_B(t)      + (1 - delta) MA(mu)^(t-1),
    MA(sigma^2)^(t) = delta sigma_B(t)^2 + (1 - delta) MA(sigma^2)^(t-1),
    MA(mu)^(1) = mu_B(1),  MA(sigma^2)^(1) = sigma_B(1)^2  (the first batch's statistics)

and inference normalizes with them instead of the batch's statistics. Here delta = 1 - ``decay``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from jaxopt_lectures._checks import (
    check_bool,
    check_dtype,
    check_int,
    check_positive,
    check_unit_interval,
)
from jaxopt_lectures._tree import compute_dtype, safe_increment, update_dtype
from jaxopt_lectures.nn._axis import AxisName
from jaxopt_lectures.nn.normalize import batch_moments

__all__ = ["BatchNormParams", "BatchNormState", "batch_norm", "batch_norm_init"]


class BatchNormParams(NamedTuple):
    """The trainable parameters of one batch-norm layer, one entry per feature."""

    scale: jax.Array  # the lecture's gamma, initialized to 1
    bias: jax.Array  # the lecture's beta, initialized to 0


class BatchNormState(NamedTuple):
    """The moving averages collected in training (not trained: threaded through the calls).

    ``count`` is the number of training batches seen (int32, saturating): at 0 the next training
    call *copies* the batch's statistics (the lecture's MA(1) = mu_B(1)), afterwards it averages.
    Until that first batch, ``mean`` is 0 and ``var`` is 1, so inference leaves inputs unscaled.
    """

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as in optax
    mean: jax.Array  # MA(mu)
    var: jax.Array  # MA(sigma^2), of the biased batch variances


def batch_norm_init(
    num_features: int, dtype: Any = jnp.float32
) -> tuple[BatchNormParams, BatchNormState]:
    """Parameters (gamma = 1, beta = 0) and an empty state for ``num_features`` features.

    Args:
      num_features: the size of the last axis of the inputs.
      dtype: a floating dtype for the parameters and the moving averages.

    Returns:
      ``(BatchNormParams(scale, bias), BatchNormState(count=0, mean=0, var=1))``.

    Example:
      >>> import jaxopt_lectures as jl
      >>> params, state = jl.nn.batch_norm_init(3)
      >>> params.scale, params.bias  # the lecture's gamma and beta
      (Array([1., 1., 1.], dtype=float32), Array([0., 0., 0.], dtype=float32))
    """
    check_int("num_features", num_features)
    check_dtype("dtype", dtype)
    params = BatchNormParams(
        scale=jnp.ones(num_features, dtype), bias=jnp.zeros(num_features, dtype)
    )
    state = BatchNormState(
        count=jnp.zeros([], jnp.int32),
        mean=jnp.zeros(num_features, dtype),
        var=jnp.ones(num_features, dtype),
    )
    return params, state


# Long for its docstring (76 of 133 lines: equation, symbols, equivalents, example).
def batch_norm(
    params: BatchNormParams,
    state: BatchNormState,
    x: ArrayLike,
    *,
    training: bool,
    decay: float = 0.9,
    eps: float = 1e-5,
    axis_name: AxisName | None = None,
    allow_single_example: bool = False,
) -> tuple[jax.Array, BatchNormState]:
    r"""Batch normalization with its moving averages threaded as explicit state.

    Training (``training=True``) normalizes with the statistics of the mini-batch, and gradients
    flow through them:

    .. math::
        \mu_B = \frac{1}{m}\sum_{i=1}^m x^{(i)}, \quad
        \sigma_B^2 = \frac{1}{m}\sum_{i=1}^m (x^{(i)} - \mu_B)^2, \quad
        y^{(i)} = \gamma\, \frac{x^{(i)} - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}} + \beta

    (the variance is computed in two passes, centered, never as :math:`E[x^2] - E[x]^2`), and
    updates the moving averages under ``stop_gradient``:

    .. math::
        MA(\mu)^{(t)} = \delta\, \mu_{B^{(t)}} + (1 - \delta)\, MA(\mu)^{(t-1)}, \qquad
        MA(\mu)^{(1)} = \mu_{B^{(1)}}

    and the same for :math:`\sigma^2`, with the lecture's :math:`\delta` = 1 - ``decay``. Inference
    (``training=False``) uses them and returns the state unchanged:

    .. math::
        y = \gamma\, \frac{x - MA(\mu)}{\sqrt{MA(\sigma^2) + \epsilon}} + \beta

    Every axis but the last is a batch axis: ``(batch, features)``, or ``(batch, ..., features)``
    for per-channel statistics of images and sequences.

    Args:
      params: ``BatchNormParams(scale=gamma, bias=beta)`` from :func:`batch_norm_init`.
      state: the ``BatchNormState`` returned by the previous call (or by :func:`batch_norm_init`).
      x: inputs of shape ``(batch, ..., num_features)``; in inference a single example
        ``(num_features,)`` is fine too.
      training: a Python bool: batch statistics and a state update, or the moving averages.
      decay: the weight of the past in [0, 1): the lecture's delta = 1 - decay.
      eps: epsilon > 0 added to the variance, "to avoid division by zero".
      axis_name: the name of a mapped axis (``shard_map``, ``pmap``, ``vmap``) over which the batch
        is split: the statistics are then those of the whole, global batch (synchronized batch
        norm), exactly (counts, sums and centered sums of squares are summed across devices), and
        the states stay identical on every device.
      allow_single_example: training on one value per feature gives :math:`\sigma_B^2 = 0` and an
        output that is just :math:`\beta`, and raises ``ValueError`` (as PyTorch does) unless this
        is True.

    Returns:
      ``(y, new_state)``: the output in the dtype of a floating ``x`` (the statistics are computed
      in at least float32) and the state for the next call. Integer (or bool) inputs, uint8 pixels
      say, give an output in the parameters' floating dtype, as ``jl.nn.normalize`` and flax's
      ``BatchNorm`` do: cast back to integers, a normalized output would be truncated to a few
      values and the gradients of ``scale`` and ``bias`` would be 0. The moving averages keep the
      state's floating dtype either way.

    Peers and where the numbers differ:

    - ``torch.nn.BatchNorm1d(momentum=1 - decay, eps=eps)``: PyTorch's ``momentum`` is the weight
      of the *new* value, the lecture's delta. Its normalized training output is the same; its
      ``running_var`` averages the *unbiased* batch variance (m / (m - 1) times ours), while this
      module, like the lecture and flax, averages the biased :math:`\sigma_B^2` that the training
      output uses. PyTorch starts from ``running_mean=0, running_var=1`` instead of copying the
      first batch.
    - ``flax.linen.BatchNorm(momentum=decay, epsilon=eps)`` (and ``flax.nnx.BatchNorm``): the same
      recursion from the second batch on, but flax starts from ``mean=0, var=1`` and averages them
      in, so after t batches its averages still carry a weight ``decay**t`` of that arbitrary
      start (0.9**10 = 35% after 10 batches at the default here, 0.99**10 = 90% at flax's default
      momentum 0.99). Here :math:`MA^{(1)}` is the first batch's statistics, as in the lecture.
      flax's default ``use_fast_variance=True`` computes :math:`E[x^2] - E[x]^2`, which in float32
      loses the variance of inputs whose mean is large compared with their spread.

    Example:
      >>> import jax.numpy as jnp, jaxopt_lectures as jl
      >>> params, state = jl.nn.batch_norm_init(2)
      >>> x = jnp.array([[1.0, 10.0], [3.0, 30.0]])
      >>> y, state = jl.nn.batch_norm(params, state, x, training=True)
      >>> y.round(3)
      Array([[-1., -1.],
             [ 1.,  1.]], dtype=float32)
      >>> state.mean, state.var  # MA(1): the first batch's mean and (biased) variance
      (Array([ 2., 20.], dtype=float32), Array([  1., 100.], dtype=float32))
      >>> y, _ = jl.nn.batch_norm(params, state, jnp.array([2.0, 40.0]), training=False)
      >>> y.round(3)
      Array([0., 2.], dtype=float32)
    """
    check_bool("training", training)
    check_bool("allow_single_example", allow_single_example)
    check_unit_interval("decay", decay)
    check_positive("eps", eps)
    x = jnp.asarray(x)
    num_features = params.scale.shape[-1]
    if x.ndim < (2 if training else 1) or x.shape[-1] != num_features:
        raise ValueError(
            f"batch_norm: x has shape {x.shape}; expected (batch, ..., {num_features}) "
            f"for {num_features} features{'' if training else ' (or one example in inference)'}."
        )
    cd = compute_dtype(x.dtype, params.scale.dtype)
    out_dtype = _output_dtype(x.dtype, params.scale.dtype, params.bias.dtype)
    scale = params.scale.astype(cd)
    bias = params.bias.astype(cd)

    if not training:
        inv = lax.rsqrt(state.var.astype(cd) + eps)
        y = (x.astype(cd) - state.mean.astype(cd)) * (inv * scale) + bias
        return y.astype(out_dtype), state

    count, mean, m2 = batch_moments(x.astype(cd), tuple(range(x.ndim - 1)), axis_name, "batch_norm")
    if count == 0:
        raise ValueError(f"batch_norm: x has shape {x.shape}: an empty batch has no statistics.")
    if count == 1 and not allow_single_example:
        raise ValueError(
            f"batch_norm: training on one value per feature (x has shape {x.shape}"
            f"{'' if axis_name is None else f' on each device along {axis_name!r}'}): the batch "
            "variance is 0 and the output would be beta whatever x is. Use a batch of at least "
            "2 examples, training=False for inference, or allow_single_example=True."
        )
    var = m2 / count  # the lecture's biased sigma_B^2
    y = (x.astype(cd) - mean) * (lax.rsqrt(var + eps) * scale) + bias

    mu_b, var_b = lax.stop_gradient(mean), lax.stop_gradient(var)
    first = state.count == 0

    def moving_average(old: jax.Array, new: jax.Array) -> jax.Array:
        ma = decay * old.astype(cd) + (1 - decay) * new  # delta new + (1 - delta) old
        return jnp.where(first, new, ma).astype(old.dtype)  # MA(1) = the first batch

    new_state = BatchNormState(
        count=safe_increment(state.count),
        mean=moving_average(state.mean, mu_b),
        var=moving_average(state.var, var_b),
    )
    return y.astype(out_dtype), new_state


def _output_dtype(x_dtype: Any, scale_dtype: Any, bias_dtype: Any) -> Any:
    """A floating x keeps its dtype; integers (uint8 pixels, say) and bools are promoted with the
    parameters' dtype and to at least a float (flax's rule), never normalized back to integers."""
    if jnp.issubdtype(x_dtype, jnp.inexact):
        return x_dtype
    return update_dtype(jnp.result_type(x_dtype, scale_dtype, bias_dtype))
