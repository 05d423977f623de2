"""Dropout (Srivastava et al., 2014): knock out units at random, afresh for every mini-batch.

Lecture: "for each mini-batch, a small percentage of 'units' is de-activated". With drop probability
p = ``rate``, every unit is kept with probability 1 - p (a Bernoulli mask m) and the kept ones are
scaled up ("inverted" dropout) so that the expected activation is unchanged:

    y = m * x / (1 - p),    m_i ~ Bernoulli(1 - p),    E[y] = x,

which makes inference the identity (the original paper scales the weights by 1 - p at test time
instead; the two agree in expectation).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxopt_lectures._checks import check_bool, check_unit_interval

__all__ = ["dropout"]


# Long for its docstring (33 of 63 lines: equation, symbols, equivalents, example).
def dropout(
    key: jax.Array,
    x: ArrayLike,
    rate: float | jax.Array,
    *,
    training: bool,
    broadcast_dims: Sequence[int] = (),
) -> jax.Array:
    r"""Inverted dropout: zero each entry with probability ``rate``, divide the rest by 1 - rate.

    .. math::
        y = \frac{m \odot x}{1 - p}, \qquad m_i \sim \mathrm{Bernoulli}(1 - p), \qquad
        \mathbb{E}[y] = x

    The same ``key`` gives the same mask; split or fold in a new key for every mini-batch (and
    every layer) to knock out a fresh set of units each time, as the lecture's figures show.

    Args:
      key: a PRNG key (``jax.random.key`` or ``jax.random.PRNGKey``).
      x: the activations.
      rate: the drop probability p in [0, 1) (PyTorch's ``p``, flax's ``rate``). A Python or NumPy
        number is checked here; a JAX array (under ``jit`` or ``vmap``) is not, and must also be
        below 1.
      training: a Python bool; ``False`` returns ``x`` unchanged (inference).
      broadcast_dims: axes along which one mask value is shared (e.g. ``(0,)`` drops the same units
        for every example of the batch, ``(1, 2)`` whole channels of ``(batch, h, w, c)`` images).

    Returns:
      An array like ``x``; ``x`` itself when not training or when ``rate`` is the number 0.

    Peers: ``torch.nn.Dropout(p=rate)`` and ``flax.linen.Dropout(rate, broadcast_dims)`` compute the
    same function (their masks come from different random streams).

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_lectures as jl
      >>> y = jl.nn.dropout(jax.random.key(0), jnp.ones(8), 0.5, training=True)
      >>> sorted(set(y.tolist()))  # kept units are scaled by 1 / (1 - 0.5)
      [0.0, 2.0]
      >>> jl.nn.dropout(jax.random.key(0), jnp.ones(3), 0.5, training=False)
      Array([1., 1., 1.], dtype=float32)
    """
    check_bool("training", training)
    check_unit_interval("rate", rate)
    x = jnp.asarray(x)
    dims = tuple(d % x.ndim if -x.ndim <= d < x.ndim else d for d in broadcast_dims)
    if any(not 0 <= d < x.ndim for d in dims) or len(set(dims)) != len(dims):
        raise ValueError(
            f"broadcast_dims must be distinct axes of x (ndim {x.ndim}), "
            f"got {tuple(broadcast_dims)}"
        )
    if not training or (not isinstance(rate, jax.Array) and float(rate) == 0.0):
        return x
    if not hasattr(key, "dtype"):  # None, a Python int: not a key
        raise ValueError(
            f"dropout: training with rate > 0 needs a PRNG key, got {key!r}. Pass "
            "key=jax.random.key(seed) and a new one for every mini-batch "
            "(jax.random.fold_in(key, step)), or training=False for inference."
        )
    keep = 1.0 - rate
    mask_shape = tuple(1 if d in dims else s for d, s in enumerate(x.shape))
    mask = jax.random.bernoulli(key, keep, mask_shape)
    y = jnp.where(mask, x / keep, 0.0)
    return y.astype(x.dtype) if jnp.issubdtype(x.dtype, jnp.floating) else y
