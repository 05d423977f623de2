"""jl.curvature against the dense Hessian: Hessian-vector products, Lanczos eigenvalues,
Hutchinson's trace, the SLQ spectrum, Li et al.'s slices and Santurkar et al.'s smoothness measures.

The references are independent: ``jax.hessian`` of the flattened loss and ``np.linalg.eigvalsh``
in float64 (the dense Hessian has a few hundred rows here), or NumPy formulas written from the
definitions. Every call runs under ``jax.jit`` or ``jax.vmap``; the Monte Carlo estimators are
checked against their own standard errors over many seeds in one vmapped program.
"""

from __future__ import annotations

import itertools
import json
import textwrap
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import enable_x64, run_on_eight_devices
from jax.flatten_util import ravel_pytree

import jaxopt_lectures as jl
from jaxopt_lectures import curvature

SIZES = (5, 12, 12, 2)  # d = 254 parameters


def mlp_problem(dtype: Any, seed: int = 0) -> tuple[list[dict[str, jax.Array]], tuple[Any, Any]]:
    """A tanh MLP's parameters (a list of dicts) and a regression batch ``(x, y)``."""
    rng = np.random.default_rng(seed)
    params = [
        {
            "w": jnp.asarray(rng.standard_normal((a, b)) / np.sqrt(a), dtype),
            "b": jnp.asarray(0.1 * rng.standard_normal(b), dtype),
        }
        for a, b in itertools.pairwise(SIZES)
    ]
    x = jnp.asarray(rng.standard_normal((64, SIZES[0])), dtype)
    y = jnp.asarray(rng.standard_normal((64, SIZES[-1])), dtype)
    return params, (x, y)


def mlp_loss(params: list[dict[str, jax.Array]], batch: tuple[jax.Array, jax.Array]) -> jax.Array:
    h, target = batch
    for i, layer in enumerate(params):
        h = h @ layer["w"] + layer["b"]
        if i < len(params) - 1:
            h = jnp.tanh(h)
    return 0.5 * jnp.mean(jnp.sum((h - target) ** 2, axis=-1))


def dense_hessian(params: Any, batch: Any) -> np.ndarray:
    flat, unravel = ravel_pytree(params)
    return np.asarray(jax.jit(jax.hessian(lambda f: mlp_loss(unravel(f), batch)))(flat))


@pytest.fixture(scope="module")
def float64_problem() -> Any:
    with enable_x64():
        params, batch = mlp_problem(jnp.float64)
        H = dense_hessian(params, batch)
    return params, batch, H, np.linalg.eigvalsh(H)[::-1]  # descending


# --- Hessian-vector products ---------------------------------------------------------------------


def test_hvp_is_the_dense_hessian_times_v_and_batches_average(float64_problem: Any) -> None:
    params, batch, H, _ = float64_problem
    x, y = batch
    with enable_x64():
        flat, unravel = ravel_pytree(params)
        v_flat = np.random.default_rng(1).standard_normal(flat.size)
        v = unravel(jnp.asarray(v_flat))
        halves = [(x[:32], y[:32]), (x[32:], y[32:])]  # equal shapes: stacked, one loss program
        uneven = [(x[:16], y[:16]), (x[16:], y[16:])]  # different shapes: one term each

        @jax.jit
        def products(params: Any, v: Any) -> Any:
            return (
                jl.curvature.hvp(mlp_loss, params, v, batch),
                jl.curvature.hvp(mlp_loss, params, v, batches=halves),
                jl.curvature.hvp(mlp_loss, params, v, batches=iter(uneven)),
            )

        one, two, three = (ravel_pytree(t)[0] for t in products(params, v))
        H_uneven = (dense_hessian(params, uneven[0]) + dense_hessian(params, uneven[1])) / 2
    np.testing.assert_allclose(one, H @ v_flat, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(two, H @ v_flat, rtol=1e-10, atol=1e-12)  # equal halves: same mean
    np.testing.assert_allclose(three, H_uneven @ v_flat, rtol=1e-10, atol=1e-12)


# --- Lanczos -------------------------------------------------------------------------------------


def test_top_and_bottom_five_match_the_dense_eigenvalues(float64_problem: Any) -> None:
    params, batch, H, exact = float64_problem
    with enable_x64():
        run = jax.jit(
            lambda p, key: jl.curvature.hessian_eigenvalues(
                mlp_loss, p, batch, k=5, which="both", key=key, num_iterations=80
            )
        )
        values, vectors = run(params, jax.random.key(0))
        values, vectors = np.asarray(values), jax.tree.map(np.asarray, vectors)
    expected = np.concatenate([exact[:5], exact[-5:]])
    np.testing.assert_allclose(values, expected, rtol=1e-6)
    assert np.all(np.diff(np.asarray(values)) <= 0)  # descending
    # Eigenvectors: a pytree like params with a leading axis of 10, unit length, H u = lambda u.
    assert jax.tree.structure(vectors) == jax.tree.structure(params)
    U = np.concatenate([leaf.reshape(10, -1) for leaf in jax.tree.leaves(vectors)], axis=1)
    np.testing.assert_allclose(np.linalg.norm(U, axis=1), 1.0, rtol=1e-10)
    residual = np.linalg.norm(U @ H - values[:, None] * U, axis=1)
    assert np.all(residual < 1e-6 * np.abs(exact[0])), residual
    # Li et al.'s non-convexity ratio |lambda_min / lambda_max|.
    ratio = abs(values[-1] / values[0])
    np.testing.assert_allclose(ratio, abs(exact[-1] / exact[0]), rtol=1e-6)


def test_largest_smallest_and_float32(float64_problem: Any) -> None:
    _, _, _, exact = float64_problem
    params, batch = mlp_problem(jnp.float32)

    @jax.jit
    def both_ends(params: Any, key: jax.Array) -> Any:
        top, top_vecs = jl.curvature.hessian_eigenvalues(
            mlp_loss, params, batch, k=3, key=key, num_iterations=60
        )
        low, _ = jl.curvature.hessian_eigenvalues(
            mlp_loss, params, batch, k=2, which="smallest", key=key, num_iterations=60
        )
        return top, top_vecs, low

    top, top_vecs, low = both_ends(params, jax.random.key(1))
    assert top.dtype == jnp.float32
    assert top_vecs[0]["w"].dtype == jnp.float32
    assert top_vecs[0]["w"].shape == (3, *params[0]["w"].shape)
    np.testing.assert_allclose(top, exact[:3], rtol=1e-4)
    np.testing.assert_allclose(low, exact[-2:], rtol=1e-3)


def test_thick_restart_converges_a_basis_too_small_for_one_cycle(float64_problem: Any) -> None:
    """Top-5 and bottom-5 with 12 basis vectors (5 kept + 7 fresh per cycle): one cycle is far
    off, the restarts converge them to the dense eigenvalues and eigenvectors."""
    params, batch, H, exact = float64_problem

    def ends(p: Any, key: jax.Array, max_restarts: int) -> Any:
        return tuple(
            jl.curvature.hessian_eigenvalues(
                mlp_loss,
                p,
                batch,
                k=5,
                which=which,
                key=key,
                num_iterations=12,
                tol=1e-10,
                max_restarts=max_restarts,
            )
            for which in ("largest", "smallest")
        )

    with enable_x64():
        run = jax.jit(ends, static_argnums=2)
        (top, top_vecs), (low, low_vecs) = run(params, jax.random.key(3), 400)
        (top1, _), (low1, _) = run(params, jax.random.key(3), 0)
        top, low, top1, low1 = (np.asarray(a) for a in (top, low, top1, low1))
    # Without restarts 12 steps do not resolve the fifth eigenvalue at either end...
    assert np.max(np.abs(top1 - exact[:5]) / np.abs(exact[:5])) > 1e-4
    assert np.max(np.abs(low1 - exact[-5:]) / np.abs(exact[-5:])) > 1e-4
    # ...with them, the same memory gives the dense eigenvalues.
    np.testing.assert_allclose(top, exact[:5], rtol=1e-6)
    np.testing.assert_allclose(low, exact[-5:], rtol=1e-6)
    for values, vectors in ((top, top_vecs), (low, low_vecs)):
        U = np.concatenate([np.asarray(a).reshape(5, -1) for a in jax.tree.leaves(vectors)], 1)
        np.testing.assert_allclose(U @ U.T, np.eye(5), atol=1e-10)
        residual = np.linalg.norm(U @ H - values[:, None] * U, axis=1)
        assert np.all(residual < 1e-8 * np.abs(exact[0])), residual


def test_thick_restart_both_ends_and_float32(float64_problem: Any) -> None:
    _, _, _, exact = float64_problem
    expected = np.concatenate([exact[:3], exact[-3:]])
    with enable_x64():
        params, batch = mlp_problem(jnp.float64)
        both = jax.jit(
            lambda p, key: jl.curvature.hessian_eigenvalues(
                mlp_loss,
                p,
                batch,
                k=3,
                which="both",
                key=key,
                num_iterations=10,
                max_restarts=400,
            )[0]
        )(params, jax.random.key(4))
        both = np.asarray(both)
    np.testing.assert_allclose(both, expected, rtol=1e-6)
    params32, batch32 = mlp_problem(jnp.float32)
    top32 = jax.jit(
        lambda p, key: jl.curvature.hessian_eigenvalues(
            mlp_loss, p, batch32, k=3, key=key, num_iterations=8, max_restarts=400
        )[0]
    )(params32, jax.random.key(4))
    assert top32.dtype == jnp.float32
    np.testing.assert_allclose(top32, exact[:3], rtol=1e-4)


def test_lanczos_memory_grows_with_k_not_with_the_number_of_restarts() -> None:
    """The compiled program's scratch memory: the basis of k + p vectors plus a constant number
    of parameter-sized buffers, the same for 1 or 1000 restarts."""
    d, p = 4096, 8
    vector = 4 * d  # bytes of one float32 parameter vector
    loss = lambda w, c: 0.5 * jnp.sum(c * w**2)  # noqa: E731
    w, c = jnp.ones(d), jnp.linspace(-1.0, 2.0, d)

    def temp(k: int, max_restarts: int) -> int:
        run = jax.jit(
            lambda w, c, key: jl.curvature.hessian_eigenvalues(
                loss, w, c, k=k, key=key, num_iterations=k + p, max_restarts=max_restarts
            )
        )
        compiled = run.lower(w, c, jax.random.key(0)).compile()
        return int(compiled.memory_analysis().temp_size_in_bytes)

    small, small_long, large = temp(2, 1), temp(2, 1000), temp(10, 1)
    assert abs(small_long - small) < vector // 2, (small, small_long)
    # 8 more eigenvectors kept, and nothing else grows with k (the restart rotates in place).
    assert 7.5 * vector <= large - small <= 8.5 * vector, (small, large)
    for k, size in ((2, small), (10, large)):
        assert size <= (k + p + 8) * vector, (k, size / vector)


def test_lanczos_gives_matfree_tridiagonal_and_survives_an_exhausted_krylov_space() -> None:
    from matfree import decomp

    rng = np.random.default_rng(8)
    M = rng.standard_normal((30, 30))
    with enable_x64():
        A = jnp.asarray(M + M.T)
        v0 = jnp.asarray(rng.standard_normal(30))
        key = jax.random.key(0)

        @jax.jit
        def both(A: jax.Array, v0: jax.Array) -> Any:
            ours = curvature._lanczos(lambda u: A @ u, v0, 12, key)
            theirs = decomp.tridiag_sym(12, reortho="full", custom_vjp=False)(lambda u: A @ u, v0)
            return ours, theirs.Q_tall, theirs.J_small

        (Q, T), Q_ref, T_ref = both(A, v0)
        # A diagonal matrix with 3 distinct eigenvalues: the Krylov space from v0 has dimension 3.
        diag = jnp.repeat(jnp.array([3.0, 1.0, 0.5]), 4)
        _, T_small = jax.jit(lambda v: curvature._lanczos(lambda u: diag * u, v, 8, key))(v0[:12])
        Q, T, Q_ref, T_ref, T_small = (np.asarray(a) for a in (Q, T, Q_ref, T_ref, T_small))
    np.testing.assert_allclose(T, T_ref, atol=1e-10)
    np.testing.assert_allclose(np.abs(Q), np.abs(Q_ref), atol=1e-10)
    np.testing.assert_allclose(Q @ Q.T, np.eye(12), atol=1e-12)
    # After the space is exhausted (3 steps) Lanczos restarts from a random orthogonal vector:
    # the Ritz values stay inside the spectrum (a broken-down recurrence would give zeros or NaN)
    # and the three eigenvalues are found exactly.
    ritz = np.linalg.eigvalsh(T_small)
    assert np.all((ritz > 0.5 - 1e-10) & (ritz < 3.0 + 1e-10)), ritz
    for eigenvalue in (3.0, 1.0, 0.5):
        assert np.min(np.abs(ritz - eigenvalue)) < 1e-10, (eigenvalue, ritz)


# --- Hutchinson's trace and the spectrum ---------------------------------------------------------


@pytest.mark.integration  # Monte Carlo checks over many probes and seeds: seconds of compiling
def test_trace_is_within_three_standard_errors_in_95_percent_of_seeds(
    float64_problem: Any,
) -> None:
    params, batch, H, _ = float64_problem
    with enable_x64():
        run = jax.jit(
            jax.vmap(
                lambda key: jl.curvature.hessian_trace(
                    mlp_loss, params, batch, num_samples=30, key=key
                )
            )
        )
        estimates, errors = (np.asarray(a) for a in run(jax.random.split(jax.random.key(0), 200)))
    exact = np.trace(H)
    inside = np.abs(estimates - exact) <= 3 * errors
    assert inside.mean() >= 0.95, (inside.mean(), exact, estimates[:5], errors[:5])
    # The standard error is the spread of the estimates across seeds (not a constant).
    np.testing.assert_allclose(np.std(estimates), np.mean(errors), rtol=0.2)


@pytest.mark.integration  # Monte Carlo checks over many probes and seeds: seconds of compiling
def test_spectrum_moments_weights_and_density(float64_problem: Any) -> None:
    params, batch, _, exact = float64_problem
    d = exact.size
    with enable_x64():
        spectrum = jax.jit(
            lambda key: jl.curvature.hessian_spectrum(
                mlp_loss, params, batch, num_probes=40, num_iterations=20, key=key, batch_size=16
            )
        )(jax.random.key(3))
        moments = [spectrum.moment(p) for p in range(1, 5)]
        spectrum = jl.curvature.Spectrum(*(np.asarray(a) for a in spectrum))
    assert spectrum.nodes.shape == spectrum.weights.shape == (40, 20)
    np.testing.assert_allclose(np.sum(spectrum.weights, axis=1), 1.0, rtol=1e-10)
    for p, (estimate, se) in enumerate(moments, start=1):
        truth = np.sum(exact**p) / d  # the p-th moment of the spectral density
        assert abs(float(estimate) - truth) <= 3 * float(se), (p, float(estimate), truth, float(se))
    # The smoothed density is a density: it integrates to 1, and covers the extreme eigenvalues.
    grid, density = np.asarray(spectrum.grid), np.asarray(spectrum.density)
    np.testing.assert_allclose(np.sum(density) * (grid[1] - grid[0]), 1.0, rtol=1e-3)
    assert grid[0] < exact[-1]
    assert grid[-1] > exact[0]
    np.testing.assert_allclose(np.max(spectrum.nodes), exact[0], rtol=1e-6)  # Ritz values


# --- landscape slices and smoothness --------------------------------------------------------------


def test_filter_normalized_direction_and_slices() -> None:
    params = {
        "dense": jnp.asarray(np.random.default_rng(0).standard_normal((3, 4)), jnp.float32),
        "conv": jnp.asarray(np.random.default_rng(1).standard_normal((2, 2, 3, 5)), jnp.float32),
        "bias": jnp.ones(4),
    }

    def loss(p: Any, c: jax.Array) -> jax.Array:
        return c * sum(jnp.sum(jnp.cos(leaf)) for leaf in jax.tree.leaves(p))

    alphas = jnp.linspace(-1.0, 1.0, 5)
    betas = jnp.linspace(-0.5, 0.5, 3)

    @jax.jit
    def run(key: jax.Array) -> Any:
        k1, k2 = jax.random.split(key)
        d1 = jl.curvature.filter_normalized_direction(k1, params)
        d2 = jl.curvature.filter_normalized_direction(k2, params)
        line = jl.curvature.loss_slice(loss, params, 2.0, [d1], alphas)
        plane = jl.curvature.loss_slice(loss, params, 2.0, (d1, d2), [alphas, betas])
        return d1, d2, line, plane

    d1, d2, line, plane = run(jax.random.key(0))
    for name, axes in (("dense", 0), ("conv", (0, 1, 2))):
        np.testing.assert_allclose(
            np.linalg.norm(np.asarray(d1[name]).reshape(-1, params[name].shape[-1]), axis=0),
            np.linalg.norm(np.asarray(params[name]).reshape(-1, params[name].shape[-1]), axis=0),
            rtol=1e-5,
            err_msg=f"{name} along axes {axes}",
        )
    assert not np.any(np.asarray(d1["bias"]))  # vectors get no direction
    assert not np.allclose(d1["dense"], d2["dense"])

    def direct(a: float, b: float) -> float:
        point = jax.tree.map(lambda p, u, v: p + a * u + b * v, params, d1, d2)
        return float(loss(point, 2.0))

    np.testing.assert_allclose(line, [direct(a, 0.0) for a in alphas], rtol=1e-5)
    assert plane.shape == (3, 5)  # rows: the second direction's coefficients
    np.testing.assert_allclose(plane, [[direct(a, b) for a in alphas] for b in betas], rtol=1e-5)


def test_smoothness_along_the_gradient_of_a_quadratic() -> None:
    # L(w) = 1/2 w^T A w: g = A w, grad L(w - s g) = g - s A g, so the gradient change is
    # s ||A g|| and the effective beta is ||A g|| / ||g||; the losses 1/2 (w - s g)^T A (w - s g).
    rng = np.random.default_rng(4)
    M = rng.standard_normal((6, 6))
    A = M @ M.T / 6
    w = rng.standard_normal(6)
    sizes = np.array([0.05, 0.1, 0.4])
    with enable_x64():
        params = {"a": jnp.asarray(w[:4]), "b": jnp.asarray(w[4:])}

        def loss(p: Any, A: jax.Array) -> jax.Array:
            v = jnp.concatenate([p["a"], p["b"]])
            return 0.5 * v @ A @ v

        m = jax.jit(lambda p: jl.curvature.smoothness_along_gradient(loss, p, A, sizes))(params)
    g = A @ w
    losses = [0.5 * (w - s * g) @ A @ (w - s * g) for s in sizes]
    np.testing.assert_allclose(m.losses, losses, rtol=1e-12)
    np.testing.assert_allclose(m.loss_range, max(losses) - min(losses), rtol=1e-12)
    np.testing.assert_allclose(m.gradient_changes, sizes * np.linalg.norm(A @ g), rtol=1e-12)
    np.testing.assert_allclose(m.gradient_change, sizes[-1] * np.linalg.norm(A @ g), rtol=1e-12)
    np.testing.assert_allclose(
        m.beta_smoothness, np.linalg.norm(A @ g) / np.linalg.norm(g), rtol=1e-12
    )


@pytest.mark.integration  # imports flax and compiles a model: seconds
def test_flax_nnx_model_through_split() -> None:
    nnx = pytest.importorskip("flax.nnx")
    x = jnp.asarray(np.random.default_rng(5).standard_normal((16, 3)), jnp.float32)
    y = jnp.asarray(np.random.default_rng(6).standard_normal((16, 1)), jnp.float32)
    model = nnx.Sequential(
        nnx.Linear(3, 4, rngs=nnx.Rngs(0)), nnx.tanh, nnx.Linear(4, 1, rngs=nnx.Rngs(1))
    )
    graphdef, state = nnx.split(model)

    def loss(state: Any, batch: Any) -> jax.Array:
        xb, yb = batch
        return jnp.mean((nnx.merge(graphdef, state)(xb) - yb) ** 2)

    flat, unravel = ravel_pytree(state)  # d = 21
    H = np.asarray(jax.hessian(lambda f: loss(unravel(f), (x, y)))(flat))
    values, vectors = jax.jit(
        lambda s: jl.curvature.hessian_eigenvalues(
            loss, s, (x, y), k=2, key=jax.random.key(0), num_iterations=flat.size
        )
    )(state)
    np.testing.assert_allclose(values, np.linalg.eigvalsh(H)[::-1][:2], rtol=1e-4)
    assert jax.tree.structure(vectors) == jax.tree.structure(state)


def test_an_unhashable_loss_callable_compiles_once_per_object() -> None:
    class Loss:  # a dataclass-like callable with __eq__ and no __hash__ (as flax linen modules)
        __hash__ = None  # type: ignore[assignment]

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Loss)

        def __call__(self, w: jax.Array, c: jax.Array) -> jax.Array:
            return 0.5 * jnp.sum(c * w**2)

    loss, c = Loss(), jnp.array([2.0, 5.0, 1.0])
    first = jl.curvature.hessian_eigenvalues(loss, jnp.ones(3), c, k=1, key=jax.random.key(0))
    compiled = curvature._eigen._cache_size()
    again = jl.curvature.hessian_eigenvalues(loss, jnp.ones(3), c, k=1, key=jax.random.key(1))
    np.testing.assert_allclose(first[0], [5.0], rtol=1e-5)
    np.testing.assert_allclose(again[0], [5.0], rtol=1e-5)
    assert curvature._eigen._cache_size() == compiled  # the second call reused the program


# --- the per-layer gradient norms under the same roof -------------------------------------------


def test_per_layer_grad_norms_is_the_diagnostics_function() -> None:
    assert jl.curvature.per_layer_grad_norms is jl.diagnostics.per_layer_grad_norms
    assert set(curvature.__all__) >= {
        "hvp",
        "hessian_eigenvalues",
        "hessian_trace",
        "hessian_spectrum",
        "filter_normalized_direction",
        "loss_slice",
        "smoothness_along_gradient",
        "per_layer_grad_norms",
    }


# --- bad input ----------------------------------------------------------------------------------


def test_bad_input_gets_a_clear_error() -> None:
    params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    key = jax.random.key(0)

    def loss(p: Any, batch: Any) -> jax.Array:
        return jnp.sum(p["w"] ** 2) + jnp.sum(p["b"] ** 4)

    def vector_loss(p: Any, batch: Any) -> jax.Array:
        return p["w"] ** 2

    cases = {
        "scalar": (lambda: jl.curvature.hvp(vector_loss, params, params, None), ValueError),
        "scalar-eig": (
            lambda: jl.curvature.hessian_eigenvalues(vector_loss, params, None, k=1, key=key),
            ValueError,
        ),
        "k > d": (
            lambda: jl.curvature.hessian_eigenvalues(loss, params, None, k=10, key=key),
            ValueError,
        ),
        "2k > d": (
            lambda: jl.curvature.hessian_eigenvalues(
                loss, params, None, k=5, which="both", key=key
            ),
            ValueError,
        ),
        "k = 0": (
            lambda: jl.curvature.hessian_eigenvalues(loss, params, None, k=0, key=key),
            ValueError,
        ),
        "which": (
            lambda: jl.curvature.hessian_eigenvalues(loss, params, None, k=1, which="top", key=key),
            ValueError,
        ),
        "num_iterations": (
            lambda: jl.curvature.hessian_eigenvalues(
                loss, params, None, k=3, key=key, num_iterations=2
            ),
            ValueError,
        ),
        "tol": (
            lambda: jl.curvature.hessian_eigenvalues(loss, params, None, k=1, key=key, tol=-1e-3),
            ValueError,
        ),
        "max_restarts": (
            lambda: jl.curvature.hessian_eigenvalues(
                loss, params, None, k=1, key=key, max_restarts=-1
            ),
            ValueError,
        ),
        "key": (
            lambda: jl.curvature.hessian_trace(loss, params, None, num_samples=4, key=0),
            TypeError,
        ),
        "num_samples": (
            lambda: jl.curvature.hessian_trace(loss, params, None, num_samples=1, key=key),
            ValueError,
        ),
        "spectrum m > d": (
            lambda: jl.curvature.hessian_spectrum(
                loss, params, None, num_probes=2, num_iterations=10, key=key
            ),
            ValueError,
        ),
        "v structure": (
            lambda: jl.curvature.hvp(loss, params, {"w": jnp.ones((2, 3))}),
            ValueError,
        ),
        "v shape": (
            lambda: jl.curvature.hvp(loss, params, {"w": jnp.ones((3, 2)), "b": jnp.zeros(3)}),
            ValueError,
        ),
        "direction": (
            lambda: jl.curvature.loss_slice(
                loss, params, None, [{"w": jnp.ones((2, 3))}], jnp.ones(3)
            ),
            ValueError,
        ),
        "three directions": (
            lambda: jl.curvature.loss_slice(loss, params, None, [params] * 3, jnp.ones(3)),
            ValueError,
        ),
        "alphas": (
            lambda: jl.curvature.loss_slice(loss, params, None, [params], jnp.ones((2, 2))),
            ValueError,
        ),
        "batch and batches": (
            lambda: jl.curvature.hvp(loss, params, params, 1.0, batches=[1.0]),
            ValueError,
        ),
        "no batches": (lambda: jl.curvature.hvp(loss, params, params, batches=[]), ValueError),
        "int params": (
            lambda: jl.curvature.hessian_trace(
                loss, {"w": jnp.ones(3, jnp.int32)}, None, num_samples=2, key=key
            ),
            TypeError,
        ),
        "step_sizes": (
            lambda: jl.curvature.smoothness_along_gradient(loss, params, None, jnp.ones((2, 2))),
            ValueError,
        ),
    }
    messages = {}
    for name, (call, error) in cases.items():
        with pytest.raises(error) as info:
            call()
        messages[name] = str(info.value)
    assert "scalar" in messages["scalar"]
    assert "(2, 3)" in messages["scalar"]
    assert "k must be at most" in messages["k > d"]
    assert "d = 9" in messages["k > d"]
    assert "num_iterations" in messages["num_iterations"]
    assert "tol must be a float >= 0" in messages["tol"]
    assert "max_restarts must be an int >= 0" in messages["max_restarts"]
    assert "v['w']" in messages["v shape"]
    assert "directions[0]" in messages["direction"]


# --- sharded parameters and a data-parallel batch ------------------------------------------------

SHARDED_SCRIPT = textwrap.dedent(
    r"""
    import json

    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P

    import jaxopt_lectures as jl

    assert jax.device_count() == 8, jax.devices()
    from jax.sharding import AxisType

    # Auto axes (GSPMD): Lanczos flattens the parameters into one vector, a reshape that explicit
    # axes (sharding in types) would make the caller annotate.
    mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(AxisType.Auto, AxisType.Auto))
    rng = np.random.default_rng(0)
    params = {
        "w1": jnp.asarray(rng.standard_normal((6, 16)) / 3, jnp.float32),
        "b1": jnp.zeros(16, jnp.float32),
        "w2": jnp.asarray(rng.standard_normal((16, 2)) / 4, jnp.float32),
    }
    x = jnp.asarray(rng.standard_normal((64, 6)), jnp.float32)
    y = jnp.asarray(rng.standard_normal((64, 2)), jnp.float32)

    def loss(p, batch):
        xb, yb = batch
        return jnp.mean((jnp.tanh(xb @ p["w1"] + p["b1"]) @ p["w2"] - yb) ** 2)

    def measures(p, batch):
        key = jax.random.key(0)
        v = jax.tree.map(jnp.ones_like, p)
        d1 = jl.curvature.filter_normalized_direction(key, p)
        return {
            "hvp": jl.curvature.hvp(loss, p, v, batch),
            "eig": jl.curvature.hessian_eigenvalues(
                loss, p, batch, k=3, which="both", key=key, num_iterations=60
            )[0],
            "trace": jl.curvature.hessian_trace(loss, p, batch, num_samples=8, key=key),
            "moment2": jl.curvature.hessian_spectrum(
                loss, p, batch, num_probes=4, num_iterations=10, key=key
            ).moment(2),
            "slice": jl.curvature.loss_slice(loss, p, batch, [d1], jnp.linspace(-1, 1, 5)),
            "beta": jl.curvature.smoothness_along_gradient(
                loss, p, batch, jnp.array([0.1, 0.5])
            ).beta_smoothness,
        }

    run = jax.jit(measures)
    single = run(params, (x, y))
    put = lambda a, spec: jax.device_put(a, NamedSharding(mesh, spec))
    sharded_params = {
        "w1": put(params["w1"], P(None, "model")),
        "b1": put(params["b1"], P("model")),
        "w2": put(params["w2"], P("model", None)),
    }
    sharded_batch = (put(x, P("data")), put(y, P("data")))  # data parallel: the batch is split
    sharded = run(sharded_params, sharded_batch)
    # Explicit axes (sharding in types): replicated parameters, the batch split over 8 devices.
    explicit = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Explicit,))
    with jax.set_mesh(explicit):
        put8 = lambda a, spec: jax.device_put(a, NamedSharding(explicit, spec))
        replicated = jax.tree.map(lambda a: put8(a, P()), params)
        in_types = run(replicated, (put8(x, P("data")), put8(y, P("data"))))
    report = {}
    for name in single:
        a = np.concatenate([np.ravel(l) for l in jax.tree.leaves(single[name])])
        for kind, out in (("auto", sharded), ("explicit", in_types)):
            b = np.concatenate([np.ravel(l) for l in jax.tree.leaves(out[name])])
            report[f"{kind} {name}"] = float(np.max(np.abs(a - b) / (np.abs(a) + 1e-6)))
    print(json.dumps(report))
    """
)


@pytest.mark.integration  # a child process on 8 simulated devices
def test_sharded_parameters_and_batch_give_the_single_device_numbers() -> None:
    """Auto axes: parameters sharded over "model", the batch over "data". Explicit axes:
    replicated parameters, the batch over "data" (sharded parameters cannot be flattened into
    one vector there without an output sharding; docs/curvature.md says so)."""
    result = run_on_eight_devices("-c", SHARDED_SCRIPT)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    names = {"hvp", "eig", "trace", "moment2", "slice", "beta"}
    assert set(report) == {f"{kind} {name}" for kind in ("auto", "explicit") for name in names}
    bad = {name: err for name, err in report.items() if not err < 1e-4}
    assert not bad, bad


@pytest.mark.integration  # compiles the guide's examples (and imports flax)
def test_the_guide_examples_run() -> None:
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[1] / "docs" / "curvature.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)
    assert len(blocks) == 2
    first: dict[str, Any] = {}
    exec(compile(blocks[0], str(page), "exec"), first)
    assert first["values"].shape == (6,)
    assert np.all(np.diff(np.asarray(first["values"])) <= 0)
    assert 0 <= float(first["non_convexity"]) <= 1
    assert float(first["trace_se"]) > 0
    second: dict[str, Any] = {}
    exec(compile(blocks[1], str(page), "exec"), second)
    assert second["top"].shape == (1,)


@pytest.mark.integration  # trains two flax models in a child process: tens of seconds
def test_flax_example_runs_and_prints_both_models(tmp_path: Any) -> None:
    import os
    from pathlib import Path

    from conftest import run_python

    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
        "MPLBACKEND": "Agg",
    }
    figure = tmp_path / "curvature.png"
    result = run_python(
        str(root / "examples" / "flax_curvature.py"),
        "--steps",
        "40",
        "--plot",
        str(figure),
        env=env,
        timeout=600,
    )
    rows = [
        line.split()
        for line in result.stdout.splitlines()
        if line.startswith(("no batch", "batch norm"))
    ]
    assert len(rows) == 2, result.stdout
    for row in rows:
        lambda_max, lambda_min, ratio = (float(v) for v in row[-7:-4])
        assert lambda_max > 0
        assert lambda_min <= lambda_max
        assert 0 <= ratio == pytest.approx(abs(lambda_min / lambda_max), abs=2e-3)
    assert figure.stat().st_size > 0
