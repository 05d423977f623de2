"""Newton-Raphson, dense and matrix-free: the lecture's claims, real data, saddles, the contract.

What is checked: (1) one step on the lecture's quadratic against hundreds of gradient steps,
(2) logistic regression on real data against a float64 reference, (3) saddle points and singular
Hessians, (4) jit, optax chains, line searches, bf16 and validation.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxopt_lectures.optimizers.newton import (
    ScaleByNewtonCGState,
    ScaleByNewtonState,
    newton,
    newton_cg,
    scale_by_newton,
    scale_by_newton_cg,
)
from jaxopt_lectures.optimizers.sgd import sgd

Loss = Callable[[Any], jax.Array]


def run_together(
    txs: list[optax.GradientTransformation], loss: Loss, params: Any, steps: int
) -> list[tuple[list, Any]]:
    """For each transform of ``txs``: the trajectory [params_0, ..., params_steps] (NumPy trees)
    and the final optimizer state, from ``steps`` optimizer steps (gradient, update with
    ``value_fn=loss``, apply). All of them run side by side in one jitted ``lax.scan``: one
    compiled program per call, whatever the number of steps and transforms."""

    def step(carry: list[tuple[Any, Any]], _: None) -> tuple[list[tuple[Any, Any]], list[Any]]:
        new_carry = []
        for tx, (params, state) in zip(txs, carry, strict=True):
            updates, state = tx.update(jax.grad(loss)(params), state, params, value_fn=loss)
            new_carry.append((optax.apply_updates(params, updates), state))
        return new_carry, [params for params, _ in new_carry]

    @jax.jit
    def paths_and_states(params: Any) -> tuple[list[Any], list[Any]]:
        start = [(params, tx.init(params)) for tx in txs]
        carry, paths = jax.lax.scan(step, start, length=steps)
        return paths, [state for _, state in carry]

    paths, states = paths_and_states(params)
    start = jax.device_get(params)
    out = []
    for path, state in zip(jax.device_get(paths), states, strict=True):
        trajectory = [start]
        trajectory += [jax.tree.map(lambda x, k=k: np.asarray(x[k]), path) for k in range(steps)]
        out.append((trajectory, state))
    return out


def run(tx: optax.GradientTransformation, loss: Loss, params: Any, steps: int) -> tuple[list, Any]:
    """The trajectory [params_0, ..., params_steps] (NumPy trees) and the final optimizer state of
    ``tx`` (see :func:`run_together`)."""
    return run_together([tx], loss, params, steps)[0]


def newton_state(state: Any) -> Any:
    """The first member's state of a newton() / newton_cg() chain."""
    return state[0]


# --- 1. The lecture's quadratic: one Newton step against hundreds of gradient steps -------------


def lecture_quadratic() -> np.ndarray:
    """A = diag(a1, a2) with a1 << a2, as on the slide."""
    return np.diag([1.0, 100.0])


def random_spd_quadratic() -> np.ndarray:
    """A dense 20x20 SPD matrix with eigenvalues spread geometrically over [1, 100]."""
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((20, 20)))
    return (Q * np.geomspace(1.0, 100.0, 20)) @ Q.T


def steps_to_reach(
    tx: optax.GradientTransformation, loss: Loss, theta0: np.ndarray, tol: float, max_steps: int
) -> int:
    """Steps until |theta| <= tol |theta0| (the minimizer is 0), counted in one compiled loop."""
    target = tol * np.linalg.norm(theta0)  # theta0 is a NumPy array

    def cond(carry: tuple[jax.Array, Any, jax.Array]) -> jax.Array:
        theta, _, k = carry
        return (jnp.linalg.norm(theta) > target) & (k < max_steps)

    def body(carry: tuple[jax.Array, Any, jax.Array]) -> tuple[jax.Array, Any, jax.Array]:
        theta, state, k = carry
        updates, state = tx.update(jax.grad(loss)(theta), state, theta, value_fn=loss)
        return optax.apply_updates(theta, updates), state, k + 1

    _, _, k = jax.jit(lambda t: jax.lax.while_loop(cond, body, (t, tx.init(t), 0)))(theta0)
    return int(k)


@pytest.mark.parametrize("make_A", [lecture_quadratic, random_spd_quadratic])
def test_one_newton_step_where_gradient_descent_needs_hundreds(
    make_A: Callable[[], np.ndarray],
) -> None:
    A64 = make_A()
    d = A64.shape[0]
    A = A64.astype(np.float32)

    def loss(theta: jax.Array) -> jax.Array:
        return theta @ A @ theta  # the lecture's L = theta . A theta, minimizer 0

    # theta0 with equal weight on every eigenvector of A, so the slowest modes are present.
    eigenvalues, Q = np.linalg.eigh(2.0 * A64)  # the Hessian is 2A
    theta0 = (Q @ np.ones(d)).astype(np.float32)
    tol = 1e-4

    # Newton: one step to the minimizer, to float32 precision.
    (_, theta1), state = run(newton(), loss, theta0, 1)
    kappa = eigenvalues[-1] / eigenvalues[0]
    assert np.linalg.norm(theta1) <= 10 * kappa * np.finfo(np.float32).eps * np.linalg.norm(theta0)
    assert int(newton_state(state).num_negative_curvature) == 0
    newton_steps = steps_to_reach(newton(), loss, theta0, tol, max_steps=100)

    # Gradient descent at its best constant rate 2 / (lambda_min + lambda_max) contracts the two
    # extreme eigen-components by rho = (kappa - 1) / (kappa + 1) per step and the others faster.
    eta = 2.0 / (eigenvalues[0] + eigenvalues[-1])
    rho = (kappa - 1) / (kappa + 1)
    upper = math.ceil(math.log(tol) / math.log(rho))  # all the mass in the slowest modes
    lower = math.floor(math.log(tol / math.sqrt(2 / d)) / math.log(rho))  # only 2 of d modes slow
    gd_steps = steps_to_reach(sgd(eta), loss, theta0, tol, max_steps=10 * upper)

    assert newton_steps == 1
    assert lower <= gd_steps <= upper
    assert gd_steps > 400  # kappa = 100: rho = 99/101, log(1e-4)/log(rho) = 461 at most


def test_newton_cg_solves_a_quadratic_with_a_tight_tolerance() -> None:
    A = random_spd_quadratic().astype(np.float32)
    theta0 = np.ones(20, np.float32)
    (_, theta1), state = run(newton_cg(tol=1e-6, max_iters=100), lambda t: t @ A @ t, theta0, 1)
    assert np.linalg.norm(theta1) < 1e-4
    # Exact after d = 20 iterations in exact arithmetic; float32 rounding costs a few more.
    assert 10 < int(newton_state(state).cg_iterations) <= 40


def test_newton_cg_spends_at_most_max_iters_products() -> None:
    A = random_spd_quadratic().astype(np.float32)
    _, state = run(newton_cg(tol=0.0, max_iters=3), lambda t: t @ A @ t, np.ones(20, np.float32), 1)
    assert int(newton_state(state).cg_iterations) == 3


# --- 2. L2-regularized logistic regression on real data, against a float64 reference ----------

LAMBDA = 1e-2  # L2 strength on the weights (not the bias)


@pytest.fixture(scope="module")
def breast_cancer() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardized features, labels, and the float64 minimizer by scipy's Newton-CG."""
    from sklearn.datasets import load_breast_cancer  # imported here: seconds at collection

    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    Xb = np.hstack([X, np.ones((len(y), 1))])
    reg = np.r_[np.full(X.shape[1], LAMBDA), 0.0]

    def value(t: np.ndarray) -> float:
        z = Xb @ t
        return float(np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * np.sum(reg * t * t))

    def grad(t: np.ndarray) -> np.ndarray:
        return Xb.T @ (1.0 / (1.0 + np.exp(-Xb @ t)) - y) / len(y) + reg * t

    def hess(t: np.ndarray) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-Xb @ t))
        return (Xb.T * (p * (1.0 - p))) @ Xb / len(y) + np.diag(reg)

    import scipy.optimize

    result = scipy.optimize.minimize(
        value, np.zeros(Xb.shape[1]), jac=grad, hess=hess, method="Newton-CG",
        options={"xtol": 1e-12},
    )  # fmt: skip
    assert result.success
    assert np.max(np.abs(grad(result.x))) < 1e-6
    return X, y, result.x


def test_logistic_regression_reaches_the_float64_minimizer(
    breast_cancer: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """newton() and newton_cg(), side by side in one compiled scan, reach scipy's minimizer."""
    X64, y64, reference = breast_cancer
    X, y = X64.astype(np.float32), y64.astype(np.float32)

    def loss(params: dict[str, jax.Array]) -> jax.Array:
        z = X @ params["w"] + params["b"]
        return jnp.mean(jax.nn.softplus(z) - y * z) + 0.5 * LAMBDA * params["w"] @ params["w"]

    params = {"w": np.zeros(30, np.float32), "b": np.zeros((), np.float32)}
    for name, (trajectory, state) in zip(
        ["newton", "newton_cg"],
        run_together([newton(), newton_cg()], loss, params, 14),
        strict=True,
    ):
        errors = [
            np.max(np.abs(np.r_[np.asarray(p["w"]), float(p["b"])] - reference)) for p in trajectory
        ]
        steps = next(k for k, e in enumerate(errors) if e < 1e-4)
        assert steps < 15, name
        # quadratic (newton) or superlinear (newton_cg) convergence: 7 steps each
        assert steps <= 8, name
        assert max(errors[steps:]) < 1e-4, name  # and it stays there
        chex.assert_trees_all_equal_shapes_and_dtypes(trajectory[-1], params, custom_message=name)
        assert int(newton_state(state).num_fallbacks) == 0, name
        assert int(newton_state(state).num_negative_curvature) == 0, name


# --- 3. Saddle points, singular and non-finite Hessians -----------------------------------------


def saddle(theta: jax.Array) -> jax.Array:
    """x^2 - y^2 + y^4/4: a saddle at (0, 0), minima at (0, +-sqrt(2)) where the loss is -1."""
    x, y = theta[0], theta[1]
    return x**2 - y**2 + y**4 / 4


NEAR_SADDLE = np.array([0.5, 0.01], np.float32)


def saddle_gradient(theta: np.ndarray) -> np.ndarray:
    """The gradient of :func:`saddle`, (2x, -2y + y^3), in NumPy."""
    x, y = theta[0], theta[1]
    return np.array([2 * x, -2 * y + y**3], theta.dtype)


def test_plain_newton_is_attracted_to_the_saddle() -> None:
    """Newton solves grad L = 0 and does not tell a saddle from a minimum (the lecture's caveat)."""
    trajectory, state = run(newton(), saddle, NEAR_SADDLE, 5)
    assert np.max(np.abs(trajectory[-1])) < 1e-6
    assert float(saddle(trajectory[-1])) == pytest.approx(0.0, abs=1e-10)
    # Every step saw the indefinite Hessian diag(2, -2 + 3 y^2) and took it at face value.
    assert int(newton_state(state).num_negative_curvature) == 5
    assert int(newton_state(state).num_fallbacks) == 0


SAFE_OPTIONS: dict[str, optax.GradientTransformation] = {
    "saddle_free": newton(saddle_free=True),
    "damping": newton(damping=3.0),  # > 2 = minus the smallest eigenvalue: H + 3I is SPD
    "newton_cg": newton_cg(),  # Steihaug: stops at negative curvature
}


def test_safe_options_escape_the_saddle_to_a_minimum() -> None:
    """Each of ``SAFE_OPTIONS`` goes from near the saddle to a minimum (all of them side by side
    in one compiled scan)."""
    runs = run_together(list(SAFE_OPTIONS.values()), saddle, NEAR_SADDLE, 40)
    for name, (trajectory, state) in zip(SAFE_OPTIONS, runs, strict=True):
        assert all(np.all(np.isfinite(p)) for p in trajectory), name
        final = trajectory[-1]
        np.testing.assert_allclose(final, [0.0, math.sqrt(2.0)], atol=1e-4, err_msg=name)
        assert float(saddle(final)) == pytest.approx(-1.0, abs=1e-6), name
        assert int(newton_state(state).num_fallbacks) == 0, name


def test_newton_cg_returns_the_gradient_at_negative_curvature() -> None:
    """On the saddle's y axis the first CG direction has negative curvature: steepest descent."""
    theta = np.array([0.0, 0.1], np.float32)
    g = saddle_gradient(theta)
    tx = scale_by_newton_cg()
    direction, state = jax.jit(lambda s: tx.update(g, s, theta, value_fn=saddle))(tx.init(theta))
    chex.assert_trees_all_close(direction, g)
    assert int(state.num_negative_curvature) == 1
    assert int(state.cg_iterations) == 1


def test_newton_cg_keeps_the_last_iterate_at_later_negative_curvature() -> None:
    """H = diag(2, -1), g = (1, 0.1): the first CG direction g has positive curvature, the second
    negative. CG stops there and returns its first iterate, the Cauchy step (g.g / g.Hg) g."""
    h = np.array([2.0, -1.0], np.float32)

    def loss(t: jax.Array) -> jax.Array:
        return 0.5 * jnp.sum(h * t * t)

    theta = np.array([0.5, -0.1], np.float32)
    g = h * theta  # the gradient of loss: (1, 0.1)
    tx = scale_by_newton_cg(tol=1e-6)  # the default tolerance would stop after one iteration
    direction, state = jax.jit(lambda s: tx.update(g, s, theta, value_fn=loss))(tx.init(theta))
    cauchy = (g @ g) / (g @ (h * g)) * g
    chex.assert_trees_all_close(direction, cauchy, rtol=1e-6)
    assert int(state.num_negative_curvature) == 1
    assert int(state.cg_iterations) == 2


def indefinite_quadratic(seed: int, d: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """A symmetric matrix with eigenvalues of both signs (|lambda| in [0.5, 4]) and a vector."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    eigenvalues = np.linspace(0.5, 4.0, d) * np.where(np.arange(d) % 2 == 0, 1.0, -1.0)
    return (Q * eigenvalues) @ Q.T, rng.standard_normal(d)


def absolute(M: np.ndarray) -> np.ndarray:
    """|M|: the matrix with the eigenvectors of symmetric M and the absolute values of its
    eigenvalues."""
    eigenvalues, Q = np.linalg.eigh(M)
    return (Q * np.abs(eigenvalues)) @ Q.T


# The transforms whose single direction is checked below, by the damping they are built with.
DIRECTION_TRANSFORMS: dict[str, Callable[[Any], optax.GradientTransformation]] = {
    "dense": lambda damping: scale_by_newton(damping=damping),
    "dense-saddle-free": lambda damping: scale_by_newton(damping=damping, saddle_free=True),
    "cg": lambda damping: scale_by_newton_cg(damping=damping, tol=1e-6),
}


@functools.partial(jax.jit, static_argnums=0)
def _direction_on_quadratic(
    name: str, damping: jax.Array, M: jax.Array, c: jax.Array, theta: jax.Array
) -> tuple[jax.Array, Any]:
    """One update of ``DIRECTION_TRANSFORMS[name](damping)`` at ``theta`` on the quadratic
    1/2 t.M.t + c.t: the direction and the new state. Everything but ``name`` is traced (the
    damping reaches the constructor as a JAX scalar, as under ``optax.inject_hyperparams``), so
    one compiled program serves every matrix and damping of a transform."""
    tx = DIRECTION_TRANSFORMS[name](damping)

    def loss(t: jax.Array) -> jax.Array:
        return 0.5 * t @ M @ t + c @ t

    return tx.update(jax.grad(loss)(theta), tx.init(theta), theta, value_fn=loss)


def direction_on_quadratic(
    name: str, damping: float, M: np.ndarray, c: np.ndarray, theta: np.ndarray
) -> tuple[jax.Array, Any]:
    """One jitted update of ``DIRECTION_TRANSFORMS[name](damping)`` at ``theta`` on the float32
    quadratic 1/2 t.M.t + c.t: the direction and the new state."""
    f32 = [np.asarray(x, np.float32) for x in (damping, M, c, theta)]
    return _direction_on_quadratic(name, *f32)


@pytest.mark.parametrize(
    ("spd", "damping", "saddle_free"),
    [
        (True, 0.3, False),
        (False, 0.0, False),
        (False, 0.3, False),
        (False, 5.0, False),
        (False, 0.0, True),
        (False, 0.3, True),
    ],
)
def test_dense_direction_matches_float64_linear_algebra(
    spd: bool, damping: float, saddle_free: bool
) -> None:
    """(H + lambda I)^-1 g, or (|H| + lambda I)^-1 g, against NumPy float64.

    On the indefinite H, damping 0.3 leaves H + lambda I indefinite (the eigendecomposition path)
    and 5.0 makes it SPD (the Cholesky path), as does any damping of the SPD one.
    """
    M, c = indefinite_quadratic(1)
    if spd:
        M = absolute(M)
    theta = np.random.default_rng(2).standard_normal(6)
    g = M @ theta + c
    eigenvalues, Q = np.linalg.eigh(M)
    mu = (np.abs(eigenvalues) if saddle_free else eigenvalues) + damping
    expected = Q @ ((Q.T @ g) / mu)

    name = "dense-saddle-free" if saddle_free else "dense"
    direction, state = direction_on_quadratic(name, damping, M, c, theta)
    np.testing.assert_allclose(np.asarray(direction), expected, rtol=1e-4, atol=1e-5)
    indefinite = np.min(eigenvalues + damping) <= 0
    assert int(state.num_negative_curvature) == int(indefinite)


@pytest.mark.parametrize("damping", [0.0, 5.0])
def test_cg_direction_matches_float64_linear_algebra(damping: float) -> None:
    """With a tight tolerance truncated CG is the exact solve of (H + lambda I) x = g when that
    matrix is SPD (|H| here, and H + 5 I of the indefinite matrix)."""
    M, c = indefinite_quadratic(3)
    if damping == 0.0:
        M = absolute(M)
    theta = np.random.default_rng(4).standard_normal(6)
    g = M @ theta + c
    expected = np.linalg.solve(M + damping * np.eye(6), g)
    direction, state = direction_on_quadratic("cg", damping, M, c, theta)
    np.testing.assert_allclose(np.asarray(direction), expected, rtol=1e-4, atol=1e-5)
    assert int(state.num_negative_curvature) == 0


@pytest.mark.parametrize("name", ["dense", "cg"])
@pytest.mark.parametrize("scale", [1e-25, 1e20, 1e30])
def test_direction_of_a_huge_or_tiny_gradient_matches_float64(name: str, scale: float) -> None:
    """H^-1 g is linear in g: a gradient of 1e20 (whose squared norm overflows float32) or of
    1e-25 (whose squared norm underflows) gets the float64 solve, not a silent zero step."""
    M, _ = indefinite_quadratic(5)
    M = absolute(M)
    theta = np.random.default_rng(6).standard_normal(6) * scale
    expected = theta  # (M theta) solved by M; np.linalg.solve agrees in float64
    np.testing.assert_allclose(np.linalg.solve(M, M @ theta), expected, rtol=1e-12)
    direction, state = direction_on_quadratic(name, 0.0, M, np.zeros(6), theta)
    np.testing.assert_allclose(np.asarray(direction), expected, rtol=1e-4)
    assert int(state.num_fallbacks) == 0


@pytest.mark.parametrize("name", ["dense", "cg"])
def test_direction_beyond_the_float32_range_falls_back_and_is_counted(name: str) -> None:
    """H^-1 g of about 1e41 has no float32 value: the step is g, and the fallback is counted."""
    M, _ = indefinite_quadratic(7)
    M = absolute(M) * 1e-3
    c = np.random.default_rng(8).standard_normal(6) * 1e38
    g = np.asarray(c, np.float32)  # the gradient at theta = 0
    direction, state = direction_on_quadratic(name, 0.0, M, c, np.zeros(6))
    np.testing.assert_array_equal(np.asarray(direction), g)
    assert int(state.num_fallbacks) == 1


@pytest.mark.parametrize("make_tx", [newton, newton_cg], ids=["newton", "newton_cg"])
@pytest.mark.parametrize("params", [{}, {"w": np.zeros((0, 3), np.float32)}], ids=["{}", "0x3"])
def test_empty_parameters_get_empty_updates(
    make_tx: Callable[[], optax.GradientTransformation], params: dict[str, np.ndarray]
) -> None:
    """As optax's transforms on a tree without entries: empty updates, counters untouched."""
    tx = make_tx()

    def loss(p: dict[str, jax.Array]) -> jax.Array:
        return jnp.sum(jnp.stack([jnp.sum(x) for x in jax.tree.leaves(p)] + [jnp.zeros(())]))

    state = tx.init(params)
    updates, new_state = jax.jit(lambda g, s: tx.update(g, s, params, value_fn=loss))(params, state)
    chex.assert_trees_all_equal_structs(updates, params)
    chex.assert_trees_all_equal_shapes(updates, params)
    assert int(newton_state(new_state).num_fallbacks) == 0
    assert int(newton_state(new_state).num_negative_curvature) == 0


def test_singular_hessian_gives_finite_parameters() -> None:
    """L = (x + y)^2 has H = [[2, 2], [2, 2]]: singular. Newton takes the minimum-norm step."""

    def loss(t: jax.Array) -> jax.Array:
        return (t[0] + t[1]) ** 2

    start = np.array([1.0, 2.0], np.float32)
    txs = [newton(), newton(damping=1e-3), newton(saddle_free=True), newton_cg()]
    runs = run_together(txs, loss, start, 3)
    for trajectory, state in runs:
        assert all(np.all(np.isfinite(p)) for p in trajectory)
        assert float(loss(trajectory[-1])) < 1e-8
        assert int(newton_state(state).num_fallbacks) == 0
    # The undamped step moves only within the range of H, along (1, 1): to (-0.5, 0.5).
    undamped, _ = runs[0]
    np.testing.assert_allclose(undamped[1], [-0.5, 0.5], atol=1e-6)


def test_rank_deficient_least_squares_gets_the_minimum_norm_solution() -> None:
    """|X theta - y|^2 with a column equal to the sum of two others: in float32 the Hessian 2 X^T X
    has a rounding-noise eigenvalue instead of 0. Newton must not divide by it: one step gives
    the minimum-norm least-squares solution, as numpy's lstsq does in float64."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 3))
    X[:, 2] = X[:, 0] + X[:, 1]
    y = rng.standard_normal(20)
    X32, y32 = X.astype(np.float32), y.astype(np.float32)

    def loss(t: jax.Array) -> jax.Array:
        return jnp.sum((X32 @ t - y32) ** 2)

    (_, theta1), state = run(newton(), loss, np.zeros(3, np.float32), 1)
    expected = np.linalg.lstsq(X, y, rcond=None)[0]
    np.testing.assert_allclose(np.asarray(theta1), expected, atol=1e-5)
    assert int(newton_state(state).num_negative_curvature) == 1  # singular: not the Cholesky path


def test_flat_direction_is_left_alone() -> None:
    """A parameter the loss ignores has zero curvature and zero gradient: it must not move."""

    def loss(p: dict[str, jax.Array]) -> jax.Array:
        return jnp.sum((p["used"] - 3.0) ** 2)

    params = {"used": np.array([1.0, -1.0], np.float32), "unused": np.array(7.0, np.float32)}
    for trajectory, _ in run_together(
        [newton(), newton(saddle_free=True), newton_cg()], loss, params, 2
    ):
        chex.assert_trees_all_close(
            trajectory[1], {"used": np.array([3.0, 3.0]), "unused": np.array(7.0)}, atol=1e-6
        )


@pytest.mark.parametrize("make_tx", [newton, newton_cg], ids=["newton", "newton_cg"])
def test_non_finite_solve_falls_back_to_the_gradient(
    make_tx: Callable[[], optax.GradientTransformation],
) -> None:
    """sqrt|theta| has an infinite second derivative at 0: the step is -eta g, counted."""

    def loss(t: jax.Array) -> jax.Array:
        return jnp.sum(jnp.sqrt(jnp.abs(t)))

    tx = make_tx()
    theta = np.zeros(3, np.float32)
    g = np.array([0.5, -1.0, 2.0], np.float32)  # a finite (say, clipped or subgradient) direction
    update = jax.jit(lambda g, s: tx.update(g, s, theta, value_fn=loss))
    updates, state = update(g, tx.init(theta))
    chex.assert_trees_all_close(updates, -g)
    assert int(newton_state(state).num_fallbacks) == 1
    assert int(newton_state(state).num_negative_curvature) == 0
    # The counter saturates instead of wrapping around.
    top = np.asarray(np.iinfo(np.int32).max, np.int32)
    full = (newton_state(state)._replace(num_fallbacks=top), *state[1:])
    _, state = update(g, full)
    assert int(newton_state(state).num_fallbacks) == np.iinfo(np.int32).max


# --- 4. jit, optax chains and line searches, extra arguments, bf16, validation -------------------


def quadratic_pytree() -> tuple[Loss, dict[str, jax.Array]]:
    """A coupled convex quadratic on a pytree (a matrix, a vector and a scalar leaf)."""
    A = random_spd_quadratic()[:10, :10].astype(np.float32)

    def loss(p: dict[str, jax.Array]) -> jax.Array:
        flat = jnp.concatenate([p["m"].ravel(), p["v"], p["s"][None]])
        return flat @ A @ flat + jnp.sum(flat)

    params = {"m": np.ones((2, 3), np.float32), "v": np.ones(3, np.float32)}
    params["s"] = np.ones((), np.float32)
    return loss, params


@pytest.mark.parametrize("make_tx", [newton, newton_cg], ids=["newton", "newton_cg"])
def test_second_update_does_not_recompile(
    make_tx: Callable[[], optax.GradientTransformation],
) -> None:
    loss, params = quadratic_pytree()
    tx = make_tx()
    traces = 0

    def step(params: Any, state: Any) -> Any:
        nonlocal traces
        traces += 1
        updates, state = tx.update(jax.grad(loss)(params), state, params, value_fn=loss)
        return optax.apply_updates(params, updates), state

    jitted = jax.jit(step)
    state = tx.init(params)
    for _ in range(3):
        params, state = jitted(params, state)
    assert traces == 1
    chex.assert_tree_all_finite(params)


def test_state_type_does_not_depend_on_flags_or_steps() -> None:
    """One NamedTuple of int32 scalars per transform, the same before and after an update (so it
    can be the carry of lax.scan), whatever the flags."""
    loss, params = quadratic_pytree()
    cases = [
        (ScaleByNewtonState, scale_by_newton()),
        (ScaleByNewtonState, scale_by_newton(damping=0.1, saddle_free=True)),
        (ScaleByNewtonCGState, scale_by_newton_cg()),
        (ScaleByNewtonCGState, scale_by_newton_cg(damping=0.1, max_iters=3, tol=0.1)),
    ]
    states = [tx.init(params) for _, tx in cases]
    new_states = jax.jit(
        lambda states: [
            tx.update(jax.grad(loss)(params), state, params, value_fn=loss)[1]
            for (_, tx), state in zip(cases, states, strict=True)
        ]
    )(states)
    for (state_type, _), state, new_state in zip(cases, states, new_states, strict=True):
        for st in (state, new_state):
            assert type(st) is state_type
            assert all(leaf.dtype == jnp.int32 and leaf.shape == () for leaf in st)
        assert jax.tree.structure(new_state) == jax.tree.structure(state)


@pytest.mark.parametrize(
    "make_tx", [newton, lambda: newton_cg(tol=1e-6)], ids=["newton", "newton_cg"]
)
def test_composes_after_clip_by_global_norm(
    make_tx: Callable[[], optax.GradientTransformation],
) -> None:
    """The incoming updates are g: clipping scales the Newton direction of a quadratic."""
    A = np.diag(np.array([1.0, 100.0], np.float32))

    def loss(t: jax.Array) -> jax.Array:
        return t @ A @ t

    theta = np.array([1.0, 1.0], np.float32)
    tx = optax.chain(optax.clip_by_global_norm(1.0), make_tx())
    g = 2 * A @ theta  # the gradient of loss
    updates, _ = jax.jit(lambda s: tx.update(g, s, theta, value_fn=loss))(tx.init(theta))
    clipped = g / np.linalg.norm(g)
    chex.assert_trees_all_close(updates, -clipped / np.diag(2 * A), rtol=1e-5)


def rosenbrock(t: jax.Array) -> jax.Array:
    return 100.0 * (t[1] - t[0] ** 2) ** 2 + (1.0 - t[0]) ** 2


def losses_along(
    tx: optax.GradientTransformation, loss: Loss, start: np.ndarray, steps: int
) -> tuple[list[float], np.ndarray]:
    """Run ``tx`` from ``start`` for ``steps`` steps in one jitted ``lax.scan``, passing the extra
    arguments optax's line searches need (value, grad, value_fn): the loss before each step, and
    the last iterate."""

    def step(carry: tuple[jax.Array, Any], _: None) -> tuple[tuple[jax.Array, Any], jax.Array]:
        t, s = carry
        value, g = jax.value_and_grad(loss)(t)
        updates, s = tx.update(g, s, t, value=value, grad=g, value_fn=loss)
        return (optax.apply_updates(t, updates), s), value

    @jax.jit
    def values_and_last(t: jax.Array) -> tuple[jax.Array, jax.Array]:
        (t, _), values = jax.lax.scan(step, (t, tx.init(t)), length=steps)
        return values, t

    values, last = jax.device_get(values_and_last(start))
    return [float(v) for v in values], last


def test_backtracking_line_search_makes_newton_monotone_on_rosenbrock() -> None:
    """optax's line search takes the same value_fn; Newton alone overshoots out of the valley."""
    start = np.array([-1.2, 1.0], np.float32)
    plain, _ = losses_along(newton(), rosenbrock, start, 3)
    assert plain[2] > 10 * plain[0]  # the raw Newton step jumps far uphill at step 2

    searched, final = losses_along(
        optax.chain(newton(), optax.scale_by_backtracking_linesearch(max_backtracking_steps=30)),
        rosenbrock,
        start,
        30,
    )
    assert all(b <= a for a, b in itertools.pairwise(searched))
    np.testing.assert_allclose(np.asarray(final), [1.0, 1.0], atol=1e-4)


@pytest.mark.parametrize(
    "line_search",
    [
        lambda: optax.scale_by_zoom_linesearch(max_linesearch_steps=20),
        lambda: optax.scale_by_backtracking_linesearch(max_backtracking_steps=20),
    ],
    ids=["zoom", "backtracking"],
)
def test_newton_cg_with_a_line_search_descends_from_the_saddle(
    line_search: Callable[[], optax.GradientTransformation],
) -> None:
    values, t = losses_along(optax.chain(newton_cg(), line_search()), saddle, NEAR_SADDLE, 15)
    assert all(b <= a for a, b in itertools.pairwise(values))
    np.testing.assert_allclose(np.asarray(t), [0.0, math.sqrt(2.0)], atol=1e-3)


def test_extra_arguments_are_passed_to_value_fn() -> None:
    """loss(params, batch) gets batch= from update's keywords, as optax's line searches do."""

    def loss(w: jax.Array, batch: jax.Array) -> jax.Array:
        return jnp.sum((w - jnp.mean(batch)) ** 2) + jnp.sum(w**4)

    w, batch = np.zeros(2, np.float32), np.array([1.0, 2.0, 3.0], np.float32)
    for make_tx in (scale_by_newton, scale_by_newton_cg):
        tx = make_tx()

        @jax.jit
        def with_keyword_and_closed_over(b: jax.Array) -> tuple[jax.Array, jax.Array]:
            """The direction with ``batch=b`` passed through update, and with b closed over."""
            g = jax.grad(loss)(w, b)
            got, _ = tx.update(g, tx.init(w), w, value_fn=loss, batch=b, unrelated=1)  # noqa: B023
            expected, _ = tx.update(g, tx.init(w), w, value_fn=lambda p: loss(p, b))  # noqa: B023
            return got, expected

        got, expected = with_keyword_and_closed_over(batch)
        chex.assert_trees_all_close(got, expected)


@pytest.mark.parametrize("make_tx", [newton, newton_cg], ids=["newton", "newton_cg"])
def test_bf16_params_stay_bf16_and_the_step_is_computed_in_float32(
    make_tx: Callable[[], optax.GradientTransformation],
) -> None:
    loss32, params32 = quadratic_pytree()
    seen_dtypes: set[Any] = set()

    def loss(p: dict[str, jax.Array]) -> jax.Array:
        seen_dtypes.update(leaf.dtype for leaf in jax.tree.leaves(p))
        return loss32(p)

    params = jax.tree.map(lambda p: (0.3 * p).astype(jnp.bfloat16), params32)
    tx, ref_tx = make_tx(), make_tx()

    def up(tree: Any) -> Any:
        """A float32 copy of a tree of JAX or NumPy arrays."""
        return jax.tree.map(lambda x: x.astype(jnp.float32), tree)

    @jax.jit
    def updates_applied_and_float32_reference(params: Any) -> tuple[Any, Any, Any]:
        """The bf16 update, the parameters it leads to, and the float32 update on the upcast
        inputs."""
        grads = jax.grad(loss32)(params)
        updates, _ = tx.update(grads, tx.init(params), params, value_fn=loss)
        ref, _ = ref_tx.update(up(grads), ref_tx.init(up(params)), up(params), value_fn=loss32)
        return updates, optax.apply_updates(params, updates), ref

    updates, applied, ref = jax.device_get(updates_applied_and_float32_reference(params))
    chex.assert_trees_all_equal_dtypes(updates, params)
    chex.assert_trees_all_equal_dtypes(applied, params)
    assert seen_dtypes == {jnp.dtype(jnp.float32)}  # value_fn saw float32 parameters

    # The same numbers as the float32 computation on the upcast inputs, rounded once at the end.
    chex.assert_trees_all_close(
        up(updates), up(jax.tree.map(lambda x: x.astype(jnp.bfloat16), ref)), rtol=1e-2
    )


def test_inject_hyperparams() -> None:
    loss, params = quadratic_pytree()
    txs = []
    for make_tx, kwargs in [
        (newton, {"learning_rate": 0.5, "damping": 0.1}),
        (newton_cg, {"learning_rate": 0.5, "damping": 0.1, "max_iters": 20, "tol": 1e-4}),
    ]:
        txs += [optax.inject_hyperparams(make_tx)(**kwargs), make_tx(**kwargs)]
    runs = run_together(txs, loss, params, 1)  # injected, plain, injected, plain
    for ((_, got), _), ((_, expected), _) in zip(runs[::2], runs[1::2], strict=True):
        chex.assert_trees_all_close(got, expected, rtol=1e-5)


@pytest.mark.parametrize(
    ("factory", "kwargs", "name"),
    [
        (newton, {"learning_rate": -1.0}, "learning_rate"),
        (newton, {"damping": -0.1}, "damping"),
        (newton, {"damping": float("nan")}, "damping"),
        (newton, {"saddle_free": 1}, "saddle_free"),
        (newton, {"max_params": 0}, "max_params"),
        (newton, {"max_params": 100.0}, "max_params"),
        (scale_by_newton, {"max_params": True}, "max_params"),
        (newton_cg, {"learning_rate": -1.0}, "learning_rate"),
        (newton_cg, {"damping": -1.0}, "damping"),
        (newton_cg, {"max_iters": 0}, "max_iters"),
        (newton_cg, {"max_iters": 2.5}, "max_iters"),
        (newton_cg, {"tol": 1.0}, "tol"),
        (scale_by_newton_cg, {"tol": -1e-3}, "tol"),
    ],
)
def test_bad_hyperparameters_raise(
    factory: Callable[..., Any], kwargs: dict[str, Any], name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        factory(**kwargs)


@pytest.mark.parametrize("make_tx", [newton, newton_cg], ids=["newton", "newton_cg"])
def test_missing_value_fn_or_params_raises(
    make_tx: Callable[[], optax.GradientTransformation],
) -> None:
    tx = make_tx()
    w = np.ones(2, np.float32)
    with pytest.raises(ValueError, match=r"(?s)value_fn was not given.*value_fn=loss"):
        tx.update(w, tx.init(w), w)
    with pytest.raises(ValueError, match=r"params was not given"):
        tx.update(w, tx.init(w), value_fn=jnp.sum)
    with pytest.raises(ValueError, match=r"value_fn and params were not given"):
        tx.update(w, tx.init(w))
    with pytest.raises(ValueError, match="scalar"):
        tx.update(w, tx.init(w), w, value_fn=lambda p: p**2)
    with pytest.raises(ValueError, match="tree structure"):
        tx.update({"a": w}, tx.init(w), w, value_fn=jnp.sum)


def test_max_params_exceeded_raises_with_the_remedy() -> None:
    params = {"w": np.ones((4, 5), np.float32), "b": np.ones(5, np.float32)}  # d = 25

    def loss(p: dict[str, jax.Array]) -> jax.Array:
        return jnp.sum(p["w"] ** 2) + jnp.sum(p["b"] ** 2)

    tx = newton(max_params=24)
    with pytest.raises(ValueError, match=r"d = 25.*max_params = 24.*max_params=25.*newton_cg"):
        tx.init(params)
    with pytest.raises(ValueError, match="max_params"):  # also when only update sees the params
        jax.jit(lambda s: tx.update(params, s, params, value_fn=loss))(tx.init(np.ones(3)))
    (_, new), _ = run(newton(max_params=25), loss, params, 1)
    chex.assert_trees_all_close(new, jax.tree.map(np.zeros_like, params), atol=1e-6)


@pytest.mark.parametrize("make_tx", [newton, newton_cg], ids=["newton", "newton_cg"])
def test_non_finite_gradient_is_counted_and_shows_in_the_update(
    make_tx: Callable[[], optax.GradientTransformation],
) -> None:
    """A NaN gradient is neither solved into a silent zero step nor hidden: the update is NaN
    (``optax.apply_if_finite`` skips it) and ``num_fallbacks`` counts it."""
    loss = lambda t: jnp.sum(t**2)  # noqa: E731
    theta = np.ones(3, np.float32)
    g = np.array([np.nan, 1.0, 2.0], np.float32)
    tx = make_tx()
    guarded = optax.apply_if_finite(make_tx(), max_consecutive_errors=2)

    @jax.jit
    def plain_and_guarded(g: jax.Array) -> tuple[jax.Array, Any, jax.Array, Any]:
        """The update and state of ``tx`` and of ``tx`` inside ``optax.apply_if_finite``."""
        updates, state = tx.update(g, tx.init(theta), theta, value_fn=loss)
        guarded_updates, guarded_state = guarded.update(
            g, guarded.init(theta), theta, value_fn=loss
        )
        return updates, state, guarded_updates, guarded_state

    updates, state, guarded_updates, guarded_state = plain_and_guarded(g)
    assert not np.all(np.isfinite(updates))
    assert int(newton_state(state).num_fallbacks) == 1
    chex.assert_trees_all_equal(guarded_updates, np.zeros(3, np.float32))
    assert int(guarded_state.notfinite_count) == 1


@pytest.mark.parametrize("make_tx", [newton, newton_cg], ids=["newton", "newton_cg"])
def test_complex_parameters_raise_a_clear_type_error(
    make_tx: Callable[[], optax.GradientTransformation],
) -> None:
    z = np.array([1.0 + 1.0j, 2.0 - 1.0j], np.complex64)
    loss = lambda p: jnp.sum(jnp.abs(p) ** 2)  # noqa: E731
    tx = make_tx()
    with pytest.raises(TypeError, match=r"does not support complex parameters.*z\.real"):
        tx.update(2 * z, tx.init(z), z, value_fn=loss)  # 2 z: the gradient of |z|^2


@pytest.mark.parametrize("make_tx", [newton, newton_cg], ids=["newton", "newton_cg"])
def test_integer_parameters_get_float_updates(
    make_tx: Callable[[], optax.GradientTransformation],
) -> None:
    """As optax's transforms: the step of an integer parameter is a float, not truncated."""
    loss = lambda t: jnp.sum((t - 3.5) ** 2)  # noqa: E731
    theta = np.array([1, 2], np.int32)
    g = np.array([-5, -3], np.int32)  # the gradient at theta
    tx = make_tx()
    updates, _ = jax.jit(lambda g, s: tx.update(g, s, theta, value_fn=loss))(g, tx.init(theta))
    assert updates.dtype == jnp.float32
    chex.assert_trees_all_close(updates, np.array([2.5, 1.5]), rtol=1e-6)
