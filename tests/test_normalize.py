"""Input normalization: float32 stability, batch-order independence, the lecture, sklearn."""

from __future__ import annotations

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import enable_x64
from hypothesis import given, settings

from jaxopt_lectures import nn

# Every call runs under jit: one program per shape and dtype, none per eager operation.
update = jax.jit(nn.normalizer_update)
fit = jax.jit(nn.normalizer_fit, static_argnames=("shape", "dtype"))
merge = jax.jit(nn.normalizer_merge)
init = jax.jit(nn.normalizer_init, static_argnums=(0, 1))
normalize = jax.jit(nn.normalize, static_argnames=("eps", "min_std"))
var = jax.jit(lambda state: state.var)


def test_float32_variance_of_large_mean_small_spread_data() -> None:
    # mean 1e4, std 3: float32's ulp at 1e4 is 1e-3, at the 1e8 of E[x^2] it is 8.
    rng = np.random.default_rng(0)
    x64 = 1e4 + 3.0 * rng.standard_normal((50_000, 4))
    x = np.asarray(x64, np.float32)
    truth = x.astype(np.float64).var(axis=0)  # the float64 variance of the float32 data
    # The trap is real: the one-pass formula E[x^2] - E[x]^2 in float32 is off by far more.
    naive = jax.jit(lambda a: jnp.mean(a * a, axis=0) - jnp.mean(a, axis=0) ** 2)(x)
    assert np.max(np.abs(np.asarray(naive) / truth - 1)) > 1e-2
    # Streamed batch by batch (Chan's merge) and fitted in one call, both within 1e-3.
    state = init(4)
    for batch in np.split(x, 50):
        state = update(state, batch)
    assert state.count.dtype == state.mean.dtype == jnp.float32
    assert float(state.count) == 50_000
    np.testing.assert_allclose(var(state), truth, rtol=1e-3)
    np.testing.assert_allclose(state.mean, x.astype(np.float64).mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(var(fit(x)), truth, rtol=1e-3)


@settings(max_examples=25, deadline=None)
@given(
    permutation=st.permutations(range(64)),
    sizes=st.lists(st.sampled_from([1, 2, 3, 5, 8]), min_size=1, max_size=8),
)
def test_any_batch_order_and_sizes_give_the_same_statistics(
    permutation: list[int], sizes: list[int]
) -> None:
    # A few batch sizes only (the data has a row for every batch of the longest list), so that the
    # jitted update compiles a handful of shapes in all.
    rng = np.random.default_rng(1)
    data = 5.0 + rng.standard_normal((64, 3)) * np.array([1.0, 10.0, 0.1])
    rows = data[permutation][: sum(sizes)]  # any subset, in any order
    with enable_x64():
        state = init(3, jnp.float64)
        for batch in np.split(rows, np.cumsum(sizes)[:-1]):
            state = update(state, batch)
        unchanged = update(state, rows[:0])  # an empty batch changes nothing
        for before, after in zip(state, unchanged, strict=True):
            np.testing.assert_array_equal(after, before)
        np.testing.assert_allclose(state.count, len(rows))
        np.testing.assert_allclose(state.mean, rows.mean(axis=0), rtol=1e-13)
        np.testing.assert_allclose(var(state), rows.var(axis=0), rtol=1e-12, atol=1e-15)


@settings(max_examples=15, deadline=None)
@given(order=st.permutations(range(4)), pair_first=st.booleans())
def test_merging_states_is_symmetric_and_associative(order: list[int], pair_first: bool) -> None:
    rng = np.random.default_rng(2)
    data = rng.standard_normal((20, 2)) * 3 + 7
    parts = np.split(data, [3, 4, 12])  # unequal shards: 3, 1, 8, 8 rows
    with enable_x64():
        states = [fit(parts[i], dtype=jnp.float64) for i in order]
        if pair_first:  # ((a b) (c d))
            merged = merge(merge(states[0], states[1]), merge(*states[2:]))
        else:  # (((a b) c) d)
            merged = states[0]
            for s in states[1:]:
                merged = merge(merged, s)
        np.testing.assert_allclose(merged.mean, data.mean(axis=0), rtol=1e-13)
        np.testing.assert_allclose(var(merged), data.var(axis=0), rtol=1e-12)


def test_normalized_fitted_data_has_mean_zero_and_variance_one() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1000, 6)) * np.arange(1, 7) + np.arange(6) * 100.0
    y = normalize(fit(x), x)
    np.testing.assert_allclose(np.mean(np.asarray(y, np.float64), axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.var(np.asarray(y, np.float64), axis=0), 1.0, rtol=1e-4)


def test_the_lecture_formula_and_sklearn_standard_scaler() -> None:
    from sklearn.preprocessing import StandardScaler  # imported here: seconds at collection

    rng = np.random.default_rng(4)
    train = rng.standard_normal((200, 5)) * [1.0, 2.0, 3.0, 0.5, 4.0] + [0.0, 1.0, -2.0, 3.0, 5.0]
    test = rng.standard_normal((30, 5))
    with enable_x64():
        state = fit(train, dtype=jnp.float64)
        mu, sigma2 = train.mean(axis=0), ((train - train.mean(axis=0)) ** 2).mean(axis=0)
        # Frozen at evaluation: the test set is normalized with the training set's statistics.
        np.testing.assert_allclose(
            normalize(state, test, eps=1e-3), (test - mu) / np.sqrt(sigma2 + 1e-3)
        )
        scaler = StandardScaler().fit(train)
        np.testing.assert_allclose(state.mean, scaler.mean_, rtol=1e-13)
        np.testing.assert_allclose(var(state), scaler.var_, rtol=1e-12)
        np.testing.assert_allclose(
            normalize(state, test, eps=0.0), scaler.transform(test), rtol=1e-12
        )


def test_min_std_floors_constant_components() -> None:
    # Like the digits' border pixels: always 0 in training, occasionally not at test time.
    train = np.stack([np.zeros(50), np.linspace(0.0, 16.0, 50)], axis=1).astype(np.float32)
    state = fit(train)
    test = np.array([[3.0, 8.0]], np.float32)
    plain = np.asarray(normalize(state, test))
    assert plain[0, 0] > 1e4  # the lecture's formula: 3 / sqrt(1e-8)
    floored = np.asarray(normalize(state, test, min_std=1.0))
    assert floored[0, 0] == 3.0  # merely shifted (by a mean of 0)
    np.testing.assert_allclose(floored[0, 1], plain[0, 1])  # others unchanged


def test_per_channel_statistics_over_leading_axes() -> None:
    images = (np.random.default_rng(5).uniform(size=(6, 4, 4, 3)) * [1, 2, 3]).astype(np.float32)
    per_channel = fit(images, shape=(3,))
    flat = fit(images.reshape(-1, 3))
    np.testing.assert_allclose(per_channel.mean, flat.mean, rtol=1e-6)
    np.testing.assert_allclose(var(per_channel), var(flat), rtol=1e-5)
    assert float(per_channel.count) == 6 * 4 * 4
    assert fit(images).mean.shape == (4, 4, 3)  # per pixel and channel


def test_integer_inputs_and_shape_errors() -> None:
    pixels = np.array([[0, 255], [255, 255]], np.uint8)
    state = fit(pixels)
    assert state.mean.dtype == jnp.float32
    np.testing.assert_allclose(state.mean, [127.5, 255.0])
    with pytest.raises(ValueError, match=r"shape \(\.\.\., \*\(2,\)\)"):
        nn.normalizer_update(state, np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        nn.normalize(state, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="same shape"):
        nn.normalizer_merge(state, init(3))
    with pytest.raises(ValueError, match="eps"):
        nn.normalize(state, pixels, eps=-1.0)
    with pytest.raises(ValueError, match="min_std"):
        nn.normalize(state, pixels, min_std=-1.0)
    with pytest.raises(ValueError, match="dtype"):
        nn.normalizer_init(2, jnp.int32)


def test_vmap_over_data_sets_and_across_a_mapped_axis() -> None:
    data = (np.random.default_rng(6).standard_normal((3, 40, 2)) * [1, 5] + 2).astype(np.float32)
    states = jax.jit(jax.vmap(nn.normalizer_fit))(data)
    variances = np.asarray(var(states))
    for i in range(3):
        np.testing.assert_allclose(variances[i], np.asarray(data[i]).var(axis=0), rtol=1e-5)
    # axis_name: four shards of one data set give every shard the global statistics.
    shards = data[0].reshape(4, 10, 2)
    synced = jax.jit(jax.vmap(lambda s: nn.normalizer_fit(s, axis_name="d"), axis_name="d"))(shards)
    np.testing.assert_allclose(var(synced), np.broadcast_to(variances[0], (4, 2)), rtol=1e-5)
    np.testing.assert_array_equal(synced.count, 40.0)


def test_docstrings_carry_the_lecture_formula_and_the_peer() -> None:
    assert r"\hat{x}_i = \frac{x_i - \mu_i}" in (nn.normalize.__doc__ or "")
    assert "n_a n_b" in (nn.normalizer_update.__doc__ or "")  # Chan et al.'s merge
    assert "sklearn.preprocessing.StandardScaler" in (nn.normalizer_fit.__doc__ or "")
