"""Dropout: knock-out statistics, inverted scaling, determinism, identities and failure modes."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxopt_lectures import nn

dropout = jax.jit(nn.dropout, static_argnames=("training", "broadcast_dims"))

N = 400_000  # entries per statistical test


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_keep_rate_and_mean_within_five_binomial_sigmas(rate: float) -> None:
    keep = 1 - rate
    y = np.asarray(dropout(jax.random.key(0), np.ones(N, np.float32), rate, training=True))
    kept = y != 0
    # The number kept is Binomial(N, keep): its fraction has std sqrt(keep (1 - keep) / N).
    assert abs(kept.mean() - keep) < 5 * math.sqrt(keep * (1 - keep) / N)
    # Every kept unit is scaled by exactly 1 / keep (inverted dropout) ...
    np.testing.assert_allclose(y[kept], np.float32(1.0) / np.float32(keep), rtol=1e-6)
    # ... so the mean is unbiased: one entry is 1/keep w.p. keep, else 0, std sqrt((1-keep)/keep).
    assert abs(y.mean() - 1.0) < 5 * math.sqrt((1 - keep) / keep / N)


def test_same_key_same_mask_new_key_new_mask() -> None:
    x = np.arange(1.0, 1001.0, dtype=np.float32)
    a = dropout(jax.random.key(1), x, 0.3, training=True)
    b = dropout(jax.random.key(1), x, 0.3, training=True)
    c = dropout(jax.random.key(2), x, 0.3, training=True)
    np.testing.assert_array_equal(a, b)
    assert np.any((np.asarray(a) == 0) != (np.asarray(c) == 0))
    # A raw uint32 key (jax.random.PRNGKey) works too.
    d = dropout(jax.random.PRNGKey(1), x, 0.3, training=True)
    assert d.shape == x.shape


def test_identity_when_not_training_or_rate_zero() -> None:
    x = jax.device_put(np.random.default_rng(3).standard_normal((7, 5)).astype(np.float32))
    assert nn.dropout(jax.random.key(4), x, 0.0, training=True) is x
    assert nn.dropout(jax.random.key(4), x, 0.5, training=False) is x
    # A traced rate of 0 keeps everything too (the Bernoulli draw is u < 1, always true).
    np.testing.assert_array_equal(dropout(jax.random.key(4), x, np.float32(0.0), training=True), x)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan"), True, "0.5", np.array([0.1, 0.2])])
def test_bad_rates_raise_naming_rate(rate: object) -> None:
    with pytest.raises(ValueError, match="rate"):
        nn.dropout(jax.random.key(0), np.ones(3), rate, training=True)  # type: ignore[arg-type]


def test_training_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match="training"):
        nn.dropout(jax.random.key(0), np.ones(3), 0.5, training=1)  # type: ignore[arg-type]


def test_broadcast_dims_share_the_mask_along_those_axes() -> None:
    x = np.ones((64, 8, 3), np.float32)
    y = np.asarray(dropout(jax.random.key(5), x, 0.5, training=True, broadcast_dims=(0,)))
    np.testing.assert_array_equal(y, np.broadcast_to(y[:1], y.shape))  # same units for all rows
    assert 0 < (y[0] == 0).mean() < 1
    # Negative axes count from the end: whole channels of (batch, h, w, c)-like inputs.
    z = np.asarray(dropout(jax.random.key(6), x, 0.5, training=True, broadcast_dims=(-2,)))
    np.testing.assert_array_equal(z, np.broadcast_to(z[:, :1], z.shape))
    with pytest.raises(ValueError, match="broadcast_dims"):
        nn.dropout(jax.random.key(0), x, 0.5, training=True, broadcast_dims=(3,))
    with pytest.raises(ValueError, match="broadcast_dims"):
        nn.dropout(jax.random.key(0), x, 0.5, training=True, broadcast_dims=(0, -3))


def test_gradient_is_the_mask_over_keep() -> None:
    x = np.linspace(-1.0, 1.0, 50, dtype=np.float32)
    key = jax.random.key(7)
    g = jax.jit(jax.grad(lambda x: jnp.sum(nn.dropout(key, x, 0.25, training=True))))(x)
    mask = np.asarray(dropout(key, np.ones(50, np.float32), 0.25, training=True)) != 0
    np.testing.assert_allclose(g, mask / 0.75, rtol=1e-6)


def test_vmap_over_keys_and_rates_under_jit() -> None:
    keys = jax.random.split(jax.random.key(8), 4)
    rates = np.array([0.0, 0.2, 0.5, 0.8], np.float32)
    ys = jax.jit(jax.vmap(lambda k, r: nn.dropout(k, jnp.ones(20_000), r, training=True)))(
        keys, rates
    )
    np.testing.assert_allclose((np.asarray(ys) != 0).mean(axis=1), 1 - rates, atol=0.02)
    for key, rate, y in zip(keys, rates, np.asarray(ys), strict=True):  # each lane on its own
        np.testing.assert_array_equal(
            y, dropout(key, np.ones(20_000, np.float32), rate, training=True)
        )


def test_low_precision_stays_low_precision() -> None:
    y = dropout(jax.random.key(9), np.ones(16, jnp.bfloat16), 0.5, training=True)
    assert y.dtype == jnp.bfloat16
    assert set(np.asarray(y, np.float32).tolist()) <= {0.0, 2.0}


def test_docstring_carries_the_knock_out_and_the_peers() -> None:
    doc = nn.dropout.__doc__ or ""
    assert r"y = \frac{m \odot x}{1 - p}" in doc
    assert r"m_i \sim \mathrm{Bernoulli}(1 - p)" in doc
    assert "torch.nn.Dropout(p=rate)" in doc
