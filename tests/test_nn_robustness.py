"""``jl.nn`` at the edges: finite data far from 1 is standardized without overflow, and calls
that JAX would answer with an internal error get a message that says what to do."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxopt_lectures import nn

# Every call runs under jit: one program per shape, none per eager operation.
fit = jax.jit(nn.normalizer_fit)
update = jax.jit(nn.normalizer_update)
merge = jax.jit(nn.normalizer_merge)
init = jax.jit(nn.normalizer_init, static_argnums=(0,))
std = jax.jit(lambda state: state.std())
var = jax.jit(lambda state: state.var)


@pytest.mark.parametrize("magnitude", [1e19, 1e25, 1e30, 1e37])
def test_normalizer_does_not_overflow_on_finite_float32_data(magnitude: float) -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((1000, 3)) * magnitude).astype(np.float32)
    x[:, 2] += np.float32(magnitude)  # a large mean as well as a large spread
    state = fit(x)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(state.mean, x64.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std(state), x64.std(0), rtol=1e-5)
    y = np.asarray(jax.jit(nn.normalize)(state, x))
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, (x64 - x64.mean(0)) / x64.std(0), rtol=1e-4, atol=1e-5)
    # Streamed in batches and merged: the same statistics.
    merged = merge(fit(x[:300]), fit(x[300:]))
    np.testing.assert_allclose(std(merged), x64.std(0), rtol=1e-5)
    streamed = update(update(init(3), x[:10]), x[10:])
    np.testing.assert_allclose(std(streamed), x64.std(0), rtol=1e-5)


def test_merging_distant_small_spread_sets_does_not_overflow() -> None:
    a = fit(np.float32([[0.0], [1.0]]))
    b = fit(np.float32([[3e30], [3e30]]))
    merged = merge(a, b)
    np.testing.assert_allclose(std(merged), [1.5e30], rtol=1e-6)
    assert np.isinf(var(merged)).all()  # sigma^2 = 2.25e60 is beyond float32: inf, honestly


def test_ordinary_data_keeps_scale_one_and_the_textbook_numbers() -> None:
    rng = np.random.default_rng(1)
    x = (5 + 3 * rng.standard_normal((500, 4))).astype(np.float32)
    state = fit(x)
    np.testing.assert_array_equal(state.scale, 1.0)
    np.testing.assert_allclose(state.m2, ((x - x.mean(0)) ** 2).sum(0), rtol=1e-5)
    np.testing.assert_allclose(var(state), x.astype(np.float64).var(0), rtol=1e-5)


@pytest.mark.parametrize("jit", [False, True])
def test_axis_name_outside_a_mapped_axis_says_what_to_do(jit: bool) -> None:
    x = np.ones((4, 3), np.float32)
    params, bn_state = jax.jit(nn.batch_norm_init, static_argnums=(0,))(3)
    empty = init(3)
    calls = {
        "batch_norm": lambda x: nn.batch_norm(params, bn_state, x, training=True, axis_name="b"),
        "normalizer_update": lambda x: nn.normalizer_update(empty, x, axis_name="b"),
        "normalizer_fit": lambda x: nn.normalizer_fit(x, axis_name="b"),
    }
    for name, call in calls.items():
        caller = "batch_norm" if name == "batch_norm" else "normalizer_update"
        with pytest.raises(ValueError, match=rf"{caller}: axis_name='b' is not a mapped axis"):
            (jax.jit(call) if jit else call)(x)
    # Inside a mapped axis of that name it works.
    out = jax.jit(jax.vmap(calls["normalizer_fit"], axis_name="b"))(np.ones((2, 4, 3), np.float32))
    assert out.count.shape == (2,)


@pytest.mark.parametrize("key", [None, 0])
def test_dropout_without_a_key_says_what_to_do(key: object) -> None:
    with pytest.raises(ValueError, match=r"dropout: training with rate > 0 needs a PRNG key"):
        nn.dropout(key, jnp.ones(4), 0.5, training=True)  # type: ignore[arg-type]
    np.testing.assert_array_equal(nn.dropout(key, jnp.ones(4), 0.5, training=False), 1.0)  # type: ignore[arg-type]
