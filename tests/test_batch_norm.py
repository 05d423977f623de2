"""Batch norm: the lecture's moving-average recursion, inference formula, gradients, and flax."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import enable_x64

from jaxopt_lectures import nn

NUM_FEATURES = 5

# One compilation per configuration instead of one per primitive (eager dispatch compiles each op).
batch_norm = jax.jit(
    nn.batch_norm, static_argnames=("training", "decay", "eps", "axis_name", "allow_single_example")
)
batch_norm_init = jax.jit(nn.batch_norm_init, static_argnums=(0, 1))


def batches(seed: int, num: int, offset: float = 3.0) -> list[np.ndarray]:
    """float64 batches of varying sizes, with a per-feature offset and spread.

    The sizes (2 to 16 examples) come from a short list, so that a jitted step compiles a few
    shapes only."""
    rng = np.random.default_rng(seed)
    loc = offset * rng.standard_normal(NUM_FEATURES)
    spread = rng.uniform(0.5, 2.0, NUM_FEATURES)
    return [
        loc + spread * rng.standard_normal((int(rng.choice([2, 7, 16])), NUM_FEATURES))
        for _ in range(num)
    ]


def lecture_reference(
    xs: list[np.ndarray], decay: float
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """float64 NumPy, straight from the slides: mu_B, sigma_B^2 (1/m), MA(1) = the first batch."""
    delta = 1.0 - decay
    out = []
    ma_mu = ma_var = None
    for x in xs:
        mu_b = x.mean(axis=0)
        var_b = ((x - mu_b) ** 2).mean(axis=0)
        if ma_mu is None:
            ma_mu, ma_var = mu_b, var_b
        else:
            ma_mu = delta * mu_b + (1 - delta) * ma_mu
            ma_var = delta * var_b + (1 - delta) * ma_var
        out.append((ma_mu, ma_var, (x - mu_b) / np.sqrt(var_b + 1e-5)))
    return out


def random_params(seed: int, dtype: jnp.dtype) -> nn.BatchNormParams:
    rng = np.random.default_rng(seed)
    return nn.BatchNormParams(
        scale=rng.uniform(0.5, 2.0, NUM_FEATURES).astype(dtype),
        bias=rng.standard_normal(NUM_FEATURES).astype(dtype),
    )


# --- the lecture's recursion, float64, step by step ------------------------------------------


def test_state_follows_the_lecture_recursion_batch_after_batch() -> None:
    decay = 0.8
    xs = batches(0, 12)
    with enable_x64():
        params = random_params(1, jnp.float64)
        _, state = batch_norm_init(NUM_FEATURES, jnp.float64)
        step = jax.jit(lambda s, x: batch_norm(params, s, x, training=True, decay=decay))
        for t, (x, (ma_mu, ma_var, x_hat)) in enumerate(
            zip(xs, lecture_reference(xs, decay), strict=True), start=1
        ):
            y, state = step(state, x)
            assert int(state.count) == t
            np.testing.assert_allclose(state.mean, ma_mu, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(state.var, ma_var, rtol=1e-12, atol=1e-12)
            expected = x_hat * np.asarray(params.scale) + np.asarray(params.bias)
            np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
            if t == 1:  # MA(1) is a copy of the first batch's statistics: whatever the
                # initial averages hold, they get no weight (no zero-initialization bias).
                garbage = state._replace(
                    count=np.zeros([], np.int32),
                    mean=np.asarray(state.mean) + 1e6,
                    var=np.asarray(state.var) * 1e6,
                )
                _, again = step(garbage, x)
                np.testing.assert_array_equal(again.mean, state.mean)
                np.testing.assert_array_equal(again.var, state.var)


def test_inference_uses_the_moving_averages() -> None:
    xs = batches(2, 4)
    with enable_x64():
        params = random_params(3, jnp.float64)
        _, state = batch_norm_init(NUM_FEATURES, jnp.float64)
        for x in xs:
            _, state = batch_norm(params, state, x, training=True)
        x_test = np.random.default_rng(4).standard_normal((7, NUM_FEATURES))
        y, after = batch_norm(params, state, x_test, training=False, eps=1e-3)
        expected = (x_test - np.asarray(state.mean)) / np.sqrt(np.asarray(state.var) + 1e-3)
        expected = expected * np.asarray(params.scale) + np.asarray(params.bias)
        np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
        jax.tree.map(np.testing.assert_array_equal, after, state)  # inference keeps the state
        # One example at a time gives the same numbers (inference is per example).
        y0, _ = batch_norm(params, state, x_test[0], training=False, eps=1e-3)
        np.testing.assert_allclose(y0, expected[0], rtol=1e-12, atol=1e-12)


def test_gradients_match_finite_differences_and_state_is_stop_gradient() -> None:
    rng = np.random.default_rng(5)
    x0 = 2.0 + rng.standard_normal((6, 3))
    weights = rng.standard_normal((6, 3))
    with enable_x64():
        params, state = batch_norm_init(3, jnp.float64)
        params = nn.BatchNormParams(
            scale=np.array([0.5, 1.5, -1.0]), bias=np.array([0.1, 0.0, -0.3])
        )

        def loss(flat: jax.Array) -> jax.Array:
            x, scale, bias = flat[:18].reshape(6, 3), flat[18:21], flat[21:]
            y, _ = batch_norm(nn.BatchNormParams(scale, bias), state, x, training=True)
            return jnp.sum(jnp.sin(y) * weights)

        flat = np.concatenate([np.ravel(x0), params.scale, params.bias])
        grad = jax.jit(jax.grad(loss))(flat)
        f = jax.jit(loss)
        h = 1e-6
        eye = np.eye(flat.size)
        fd = np.array([(f(flat + h * e) - f(flat - h * e)) / (2 * h) for e in eye])
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
        # Gradients flow through the batch statistics: the x-gradient of every feature sums to 0
        # over the batch (shifting a whole feature changes nothing after normalization).
        np.testing.assert_allclose(grad[:18].reshape(6, 3).sum(axis=0), 0.0, atol=1e-12)

        def state_sum(x: jax.Array) -> jax.Array:
            _, new = batch_norm(params, state, x, training=True)
            return jnp.sum(new.mean) + jnp.sum(new.var)

        np.testing.assert_array_equal(jax.jit(jax.grad(state_sum))(x0), 0.0)


# --- flax's BatchNorm: momentum = decay, the same recursion after the first batch ---------------


def test_matches_flax_batch_norm_with_momentum_equal_to_decay() -> None:
    import flax.linen as fnn

    decay, eps = 0.7, 1e-3
    xs = [x.astype(np.float32) for x in batches(6, 5)]
    # use_fast_variance=False: flax's default computes E[x^2] - E[x]^2 (see the float32 test).
    module = fnn.BatchNorm(
        use_running_average=False, momentum=decay, epsilon=eps, use_fast_variance=False
    )
    variables = jax.jit(module.init)(jax.random.key(0), xs[0])
    batch_stats = variables["batch_stats"]
    init_mean = np.asarray(batch_stats["mean"])  # flax starts at mean 0, var 1
    init_var = np.asarray(batch_stats["var"])
    flax_step = jax.jit(
        lambda stats, x: module.apply(
            {"params": variables["params"], "batch_stats": stats}, x, mutable=["batch_stats"]
        )
    )
    params, state = batch_norm_init(NUM_FEATURES)
    for t, x in enumerate(xs, start=1):
        y_flax, updates = flax_step(batch_stats, x)
        batch_stats = updates["batch_stats"]
        y, state = batch_norm(params, state, x, training=True, decay=decay, eps=eps)
        # The normalized training output is the same function of the batch, always.
        np.testing.assert_allclose(y, y_flax, rtol=1e-5, atol=1e-5)
        # The averages: flax also weights the past by momentum = decay, but averages its arbitrary
        # start (0, 1) in where the lecture copies the first batch; so flax_t = ours_t +
        # decay**t * (flax_init - MA(1)), and the two agree exactly once that term is removed.
        if t == 1:
            first_mean, first_var = np.asarray(state.mean), np.asarray(state.var)
        np.testing.assert_allclose(
            batch_stats["mean"],
            np.asarray(state.mean) + decay**t * (init_mean - first_mean),
            rtol=1e-5,
            atol=1e-5,
        )
        np.testing.assert_allclose(
            batch_stats["var"],
            np.asarray(state.var) + decay**t * (init_var - first_var),
            rtol=1e-5,
            atol=1e-5,
        )
    # The recursions themselves are identical: started from flax's state, one more batch of ours
    # lands on flax's next state.
    x = xs[0]
    synced = nn.BatchNormState(
        count=np.ones([], np.int32), mean=batch_stats["mean"], var=batch_stats["var"]
    )
    _, ours = batch_norm(params, synced, x, training=True, decay=decay, eps=eps)
    _, updates = flax_step(batch_stats, x)
    np.testing.assert_allclose(ours.mean, updates["batch_stats"]["mean"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.var, updates["batch_stats"]["var"], rtol=1e-6, atol=1e-6)


def test_float32_statistics_survive_a_large_mean() -> None:
    # mean 1e4, std 1: E[x^2] - E[x]^2 in float32 subtracts two numbers near 1e8 (ulp 8).
    rng = np.random.default_rng(7)
    x64 = 1e4 + rng.standard_normal((256, NUM_FEATURES))
    x = x64.astype(np.float32)
    true_var = x.astype(np.float64).var(axis=0)
    x32 = x
    naive = np.mean(x32 * x32, axis=0) - np.mean(x32, axis=0) ** 2  # float32 throughout
    assert np.max(np.abs(np.asarray(naive) / true_var - 1)) > 0.1  # the data is a real trap
    params, state = batch_norm_init(NUM_FEATURES)
    y, state = batch_norm(params, state, x, training=True)
    np.testing.assert_allclose(state.var, true_var, rtol=1e-4)
    np.testing.assert_allclose(
        np.var(np.asarray(y, np.float64), axis=0), true_var / (true_var + 1e-5), rtol=1e-3
    )


# --- shapes, failure modes, jit and vmap ----------------------------------------------------------


def test_inputs_with_extra_axes_reduce_over_all_but_the_last() -> None:
    x = np.asarray(np.random.default_rng(8).standard_normal((4, 3, 2, NUM_FEATURES)), np.float32)
    params, state = batch_norm_init(NUM_FEATURES)
    y, s = batch_norm(params, state, x, training=True)
    y_flat, s_flat = batch_norm(params, state, x.reshape(-1, NUM_FEATURES), training=True)
    np.testing.assert_allclose(y.reshape(-1, NUM_FEATURES), y_flat, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(s.mean, s_flat.mean, rtol=1e-6)
    np.testing.assert_allclose(s.var, s_flat.var, rtol=1e-5)


def test_a_batch_of_one_raises_unless_allowed() -> None:
    params, state = batch_norm_init(3)
    one = np.array([[1.0, 2.0, 3.0]], np.float32)
    with pytest.raises(ValueError, match="one value per feature"):
        batch_norm(params, state, one, training=True)
    with pytest.raises(ValueError, match="one value per feature"):
        batch_norm(params, state, one[None], training=True)  # (1, 1, 3): still one value
    y, new = batch_norm(params, state, one, training=True, allow_single_example=True)
    np.testing.assert_array_equal(y, 0.0)  # x - mu_B = 0: the output is beta
    np.testing.assert_array_equal(new.mean, one[0])
    # Two spatial positions of one image are two values per feature, as in PyTorch.
    batch_norm(params, state, np.ones((1, 2, 3), np.float32), training=True)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"decay": 1.0}, "decay"),
        ({"decay": -0.1}, "decay"),
        ({"eps": 0.0}, "eps"),
        ({"eps": -1e-5}, "eps"),
        ({"training": 1}, "training"),
        ({"allow_single_example": "yes"}, "allow_single_example"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(kwargs: dict, name: str) -> None:
    params, state = batch_norm_init(3)
    arguments = {"training": True, **kwargs}
    with pytest.raises(ValueError, match=name):
        batch_norm(params, state, np.ones((4, 3), np.float32), **arguments)


def test_shape_errors_are_clear() -> None:
    params, state = batch_norm_init(3)
    with pytest.raises(ValueError, match=r"expected \(batch, ..., 3\)"):
        batch_norm(params, state, np.ones((4, 2), np.float32), training=True)
    with pytest.raises(ValueError, match="expected"):
        batch_norm(params, state, np.ones(3, np.float32), training=True)  # no batch axis
    with pytest.raises(ValueError, match="num_features"):
        nn.batch_norm_init(0)


def test_jit_and_vmap_over_an_ensemble() -> None:
    rng = np.random.default_rng(9)
    xs = np.asarray(2 + rng.standard_normal((3, 8, NUM_FEATURES)), np.float32)
    params, state = jax.jit(jax.vmap(lambda _: nn.batch_norm_init(NUM_FEATURES)))(np.arange(3))
    params = params._replace(scale=np.arange(1.0, 4.0, dtype=np.float32)[:, None] * np.ones(5))

    @jax.jit
    def step(p: nn.BatchNormParams, s: nn.BatchNormState, x: jax.Array) -> tuple:
        y, s = batch_norm(p, s, x, training=True)
        y_eval, _ = batch_norm(p, s, x, training=False)
        return y, s, y_eval

    ys, states, evals = jax.tree.map(np.asarray, jax.vmap(step)(params, state, xs))
    for i in range(3):
        member = jax.tree.map(lambda a, i=i: np.asarray(a)[i], (params, state, xs))
        y, s, y_eval = step(*member)
        np.testing.assert_allclose(ys[i], y, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(evals[i], y_eval, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(states.var[i], s.var, rtol=1e-6)
    assert states.count.tolist() == [1, 1, 1]


def test_low_precision_inputs_keep_their_dtype() -> None:
    params, state = batch_norm_init(NUM_FEATURES)
    x = (100 + np.random.default_rng(10).standard_normal((32, 5))).astype(jnp.bfloat16)
    y, new = batch_norm(params, state, x, training=True)
    assert y.dtype == jnp.bfloat16
    assert new.mean.dtype == new.var.dtype == jnp.float32
    assert new.count.dtype == jnp.int32


def test_docstring_carries_the_recursion_and_the_peer_mapping() -> None:
    doc = nn.batch_norm.__doc__ or ""
    assert r"MA(\mu)^{(t)} = \delta\, \mu_{B^{(t)}} + (1 - \delta)\, MA(\mu)^{(t-1)}" in doc
    assert "delta` = 1 - ``decay``" in doc
    assert "torch.nn.BatchNorm1d(momentum=1 - decay" in doc
    assert "flax.linen.BatchNorm(momentum=decay" in doc


@pytest.mark.parametrize("dtype", [np.uint8, np.int32])
def test_integer_inputs_are_promoted_to_float_as_flax_does(dtype: type) -> None:
    """Pixels in uint8 (a realistic mistake) are normalized, not truncated back to integers: the
    output is float32 (flax's rule: the result type of x, scale and bias, at least inexact), the
    running statistics are those of the values, and scale and bias get their gradients."""
    import flax.linen as fnn

    rng = np.random.default_rng(11)
    x = rng.integers(0, 256, (16, NUM_FEATURES)).astype(dtype)
    x[:4, 0] = [0, 50, 200, 255]
    params = random_params(12, jnp.float32)
    _, state = batch_norm_init(NUM_FEATURES)
    x64 = x.astype(np.float64)
    mean, var = x64.mean(axis=0), x64.var(axis=0)
    scale64, bias64 = (np.asarray(p, np.float64) for p in params)
    expected = (x64 - mean) / np.sqrt(var + 1e-5) * scale64 + bias64

    y, new = batch_norm(params, state, x, training=True)
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(new.mean), mean, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(new.var), var, rtol=1e-5)
    y_eval, _ = batch_norm(params, new, x, training=False)
    assert y_eval.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y_eval), expected, rtol=1e-4, atol=1e-4)

    module = fnn.BatchNorm(use_running_average=False, epsilon=1e-5, use_fast_variance=False)
    variables = {"params": {"scale": params.scale, "bias": params.bias}, "batch_stats": {}}
    variables["batch_stats"] = jax.jit(module.init)(jax.random.key(0), x)["batch_stats"]
    y_flax, _ = jax.jit(lambda v, x: module.apply(v, x, mutable=["batch_stats"]))(variables, x)
    assert y_flax.dtype == y.dtype
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_flax), rtol=1e-5, atol=1e-5)

    weights = rng.standard_normal(x.shape)

    def loss(params: nn.BatchNormParams, x: jax.Array) -> jax.Array:
        return jnp.sum(nn.batch_norm(params, state, x, training=True)[0] * weights)

    grads = jax.jit(jax.grad(loss))(params, x)
    grads_float = jax.jit(jax.grad(loss))(params, x.astype(np.float32))
    assert np.all(np.asarray(grads.scale) != 0)
    assert np.all(np.asarray(grads.bias) != 0)
    for got, want in zip(grads, grads_float, strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
