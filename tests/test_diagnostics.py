"""Diagnostics: vanishing gradients (sigmoid vs ReLU), deep linear networks, Hessian eigenvalues."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import enable_x64
from jax.flatten_util import ravel_pytree

from jaxopt_lectures import diagnostics, nn

# --- vanishing gradients: 10 hidden layers of 64 at initialization ------------------------------


@pytest.fixture(scope="module")
def digits() -> tuple[jax.Array, jax.Array]:
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    x = jax.jit(lambda a: nn.normalize(nn.normalizer_fit(a), a[:256], min_std=1.0))(images)
    return x, jnp.asarray(labels[:256])


def layer_gradient_norms(activation: str, x: jax.Array, y: jax.Array) -> np.ndarray:
    """Weight-gradient norms of the 10 hidden layers (input side first) for seeds 0, 1, 2."""

    def norms(key: jax.Array) -> jax.Array:
        params, state = nn.mlp_init(key, [64] + [64] * 10 + [10], activation=activation)

        def loss(params: list, x: jax.Array, y: jax.Array) -> jax.Array:
            logits, _ = nn.mlp_apply(params, state, x, activation=activation, training=True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        return diagnostics.per_layer_grad_norms(loss, params, x, y, entry="w")[:10]

    keys = jax.random.split(jax.random.key(0), 3)
    return np.asarray(jax.jit(jax.vmap(norms))(keys))


def test_sigmoid_gradients_vanish_with_depth_and_relu_gradients_do_not(
    digits: tuple[jax.Array, jax.Array],
) -> None:
    sigmoids = layer_gradient_norms("sigmoid", *digits)  # Glorot init (the default)
    relus = layer_gradient_norms("relu", *digits)  # He init (the default)
    for sigmoid, relu in zip(sigmoids, relus, strict=True):
        # Sigmoid: each layer further from the output gets roughly sigma'(0) = 1/4 of the
        # gradient (geometric mean of the per-layer ratios in (3, 5.5); 4**-9 = 4e-6 overall).
        sigmoid_factor = (sigmoid[-1] / sigmoid[0]) ** (1 / 9)
        assert 3.0 < sigmoid_factor < 5.5
        assert sigmoid[0] / sigmoid[-1] < diagnostics.sigmoid_derivative_bound(7)
        # ReLU with He initialization: flat within a small factor across all ten layers.
        assert relu.max() / relu.min() < 5.0
        assert 0.7 < (relu[-1] / relu[0]) ** (1 / 9) < 1.4
        # Far faster: the input-side / output-side ratios differ by over four orders of magnitude.
        assert (sigmoid[0] / sigmoid[-1]) < 1e-4 * (relu[0] / relu[-1])


def test_per_layer_grad_norms_are_the_norms_of_each_layers_gradient() -> None:
    params = [{"w": np.array([[1.0, 2.0]]), "b": np.array([0.5, 0.0])}, {"w": np.ones((2, 1))}]
    params = jax.tree.map(lambda a: a.astype(np.float32), params)
    x = np.array([[0.3], [-0.7]], np.float32)

    def loss(p: list, x: jax.Array) -> jax.Array:
        return jnp.sum(jnp.tanh(x @ p[0]["w"] + p[0]["b"]) @ p[1]["w"]) ** 2

    # By hand: dL/dh = 2 s w1^T with s = sum(tanh(z) w1); dL/dz = dL/dh (1 - tanh^2 z).
    h = np.tanh(x @ params[0]["w"] + params[0]["b"])
    s = np.sum(h @ params[1]["w"])
    grad_w1 = 2 * s * h.sum(axis=0)[:, None]
    grad_z = 2 * s * params[1]["w"].T * (1 - h**2)
    grad_w0, grad_b0 = x.T @ grad_z, grad_z.sum(axis=0)
    first = np.sqrt(np.sum(grad_w0**2) + np.sum(grad_b0**2))

    @jax.jit
    def norms(params: list) -> tuple[jax.Array, jax.Array]:
        return (
            diagnostics.per_layer_grad_norms(loss, params, x),
            diagnostics.per_layer_grad_norms(loss, params, x, entry="w"),
        )

    whole, weights = norms(params)
    np.testing.assert_allclose(whole, [first, np.linalg.norm(grad_w1)], rtol=1e-5)
    np.testing.assert_allclose(
        weights, [np.linalg.norm(grad_w0), np.linalg.norm(grad_w1)], rtol=1e-5
    )
    with pytest.raises(ValueError, match="list or tuple"):
        diagnostics.per_layer_grad_norms(loss, {"layer": params[0]}, x)  # type: ignore[arg-type]
    # vmap over an ensemble of parameters (the first member is the one above).
    stacked = jax.tree.map(lambda a: np.stack([a, 2 * a]), params)
    ensemble = jax.jit(jax.vmap(lambda p: norms(p)[0]))(stacked)
    np.testing.assert_allclose(ensemble[0], whole, rtol=1e-6)
    assert not np.allclose(ensemble[1], whole)


def test_the_sigmoid_derivative_is_at_most_one_quarter() -> None:
    x = np.linspace(-20.0, 20.0, 4001)
    d = np.asarray(jax.jit(diagnostics.sigmoid_derivative)(x.astype(np.float32)))
    assert d.dtype == np.float32
    exact = np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))) ** 2  # float64, no cancellation
    np.testing.assert_allclose(d, exact, rtol=1e-5)  # accurate in the saturated tails too
    assert float(d.max()) == diagnostics.sigmoid_derivative_bound() == 0.25
    assert x[int(np.argmax(d))] == 0.0
    assert diagnostics.sigmoid_derivative_bound(3) == 0.25**3
    with pytest.raises(ValueError, match="num_layers"):
        diagnostics.sigmoid_derivative_bound(-1)


# --- the deep linear network: W^k x = sum_i lambda_i^k (e_i . x) e_i ----------------------------


def symmetric_matrix(eigenvalues: list[float], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((3, 3)))
    return q @ np.diag(eigenvalues) @ q.T, q


def test_deep_linear_network_layers_equal_the_eigen_expansion() -> None:
    lam = [1.2, 0.9, 0.5]
    W, E = symmetric_matrix(lam)
    x = np.array([0.3, -1.0, 2.0])

    @jax.jit(static_argnums=2)
    def both_methods(W: jax.Array, x: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
        """Layer by layer and by the eigen expansion, for a Python int depth."""
        return (
            diagnostics.deep_linear_network(W, x, k),
            diagnostics.deep_linear_network(W, x, k, method="eigen"),
        )

    with enable_x64():
        for k in [0, 1, 5, 20]:
            direct, eigen = both_methods(W, x, k)
            np.testing.assert_allclose(direct, np.linalg.matrix_power(W, k) @ x, rtol=1e-12)
            scale = np.linalg.norm(direct)
            np.testing.assert_allclose(eigen, direct, rtol=1e-10, atol=1e-12 * scale)
            # The lecture: the component along e_i is lambda_i^k (e_i . x).
            np.testing.assert_allclose(
                E.T @ direct, np.array(lam) ** k * (E.T @ x), rtol=1e-10, atol=1e-12 * scale
            )
        # Batched inputs, and a traced depth under jit.
        batch = np.stack([x, 2 * x])
        np.testing.assert_allclose(
            jax.jit(diagnostics.deep_linear_network)(W, batch, jnp.asarray(5)),
            np.stack([np.linalg.matrix_power(W, 5) @ v for v in batch]),
            rtol=1e-12,
        )


@pytest.mark.parametrize(("top", "trend"), [(1.3, "explodes"), (0.7, "vanishes")])
def test_output_and_gradient_scale_as_lambda_to_the_k(top: float, trend: str) -> None:
    W, E = symmetric_matrix([top, 0.6 * top, 0.2 * top], seed=1)
    x = np.ones(3)
    readout = np.array([1.0, -2.0, 0.5])
    depths = np.arange(1, 31)
    with enable_x64():

        def out(x: jax.Array, k: jax.Array) -> jax.Array:
            return jnp.dot(readout, diagnostics.deep_linear_network(W, x, k))

        # Forward mode differentiates through a traced depth, so one compilation covers all k.
        both = jax.jit(jax.vmap(lambda k: (out(jnp.asarray(x), k), jax.jacfwd(out)(x, k))))
        outputs, grads = (np.asarray(a) for a in both(jnp.asarray(depths)))
        # Reverse mode with a Python int depth gives the same gradient.
        reverse = jax.jit(jax.grad(out), static_argnums=1)(x, 30)
        np.testing.assert_allclose(reverse, grads[-1], rtol=1e-12)
    # d(w . W^k x)/dx = (W^T)^k w = sum_i lambda_i^k (e_i . w) e_i: exactly lambda_1^k along e_1 ...
    np.testing.assert_allclose(grads @ E[:, 0], top**depths * (E[:, 0] @ readout), rtol=1e-10)
    # ... and the whole gradient and output grow or shrink by lambda_1 per layer once it dominates.
    ratios = [np.linalg.norm(b) / np.linalg.norm(a) for a, b in itertools.pairwise(grads)]
    np.testing.assert_allclose(ratios[-5:], top, rtol=1e-4)
    np.testing.assert_allclose(outputs[-1] / outputs[-2], top, rtol=1e-4)
    if trend == "explodes":
        assert np.linalg.norm(grads[-1]) > 1e3 * np.linalg.norm(grads[0])
    else:
        assert np.linalg.norm(grads[-1]) < 1e-3 * np.linalg.norm(grads[0])


def test_deep_linear_network_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="square"):
        diagnostics.deep_linear_network(np.ones((2, 3)), np.ones(3), 2)
    with pytest.raises(ValueError, match="k must"):
        diagnostics.deep_linear_network(np.eye(2), np.ones(2), -1)
    with pytest.raises(ValueError, match="method"):
        diagnostics.deep_linear_network(np.eye(2), np.ones(2), 2, method="svd")


# --- the Hessian's top eigenvalue by power iteration ----------------------------------------------


def test_power_iteration_agrees_with_the_dense_hessian() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((32, 4)), rng.integers(0, 3, 32)
    with enable_x64():
        params, state = jax.jit(
            lambda key: nn.mlp_init(key, [4, 6, 3], activation="tanh", dtype=jnp.float64)
        )(jax.random.key(3))

        def loss(params: list, x: jax.Array, y: jax.Array) -> jax.Array:
            logits, _ = nn.mlp_apply(params, state, x, activation="tanh", training=True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        flat, unravel = ravel_pytree(params)
        hessian = jax.jit(jax.hessian(lambda f: loss(unravel(f), x, y)))(flat)
        eigenvalues = np.linalg.eigvalsh(np.asarray(hessian))
        expected = eigenvalues[np.argmax(np.abs(eigenvalues))]

        # Any start vector converges to it (one jitted vmap over keys).
        top = jax.jit(
            jax.vmap(
                lambda k: diagnostics.hessian_top_eigenvalue(loss, params, k, x, y, num_iters=300)
            )
        )
        found = top(jax.random.split(jax.random.key(0), 3))
        np.testing.assert_allclose(found, expected, rtol=1e-8)


def test_power_iteration_returns_the_largest_magnitude_with_its_sign() -> None:
    curvatures = np.array([1.0, -3.0, 2.0], np.float32)  # a saddle: the sharpest curves down

    def loss(w: dict) -> jax.Array:
        return 0.5 * jnp.sum(curvatures * w["a"] ** 2) + 0.25 * w["b"] ** 2

    params = {"a": np.ones(3, np.float32), "b": np.ones((), np.float32)}
    top = jax.jit(lambda key: diagnostics.hessian_top_eigenvalue(loss, params, key, num_iters=100))
    found = top(jax.random.key(0))
    np.testing.assert_allclose(found, -3.0, rtol=1e-5)
    with pytest.raises(ValueError, match="num_iters"):
        diagnostics.hessian_top_eigenvalue(loss, params, jax.random.key(0), num_iters=0)


def test_docstrings_carry_the_lecture_equations() -> None:
    assert r"\le 4^{-k}" in (diagnostics.sigmoid_derivative_bound.__doc__ or "")
    assert r"\lambda_1^k (e_1 \cdot x)\, e_1" in (diagnostics.deep_linear_network.__doc__ or "")
    assert "jax.jvp" in (diagnostics.hessian_top_eigenvalue.__doc__ or "")
