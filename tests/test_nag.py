"""``jl.nag`` is the lecture's look-ahead NAG, reparametrized: checked step by step, in float64.

The lecture, with u_0 = 0:

    u_t = gamma u_{t-1} + eta_t dL(theta_{t-1} - gamma u_{t-1}),    theta_t = theta_{t-1} - u_t.

An optimizer only sees the gradient at the parameters it holds, so ``jl.nag`` holds the look-ahead
point phi_t = theta_t - gamma u_t, starting at phi_0 = theta_0. Here the lecture's form runs by hand
in float64 NumPy, with gradients written out by hand, on non-quadratic losses (Rosenbrock's valley
in 2-D and an L2-regularized logistic regression on a dict of parameters), and ``jl.nag`` runs
jitted under ``jax.enable_x64`` on ``jax.grad`` of the same losses. At every step: the parameters
are phi_t, the state's trace is -u_t, and ``params - momentum * state[1].trace`` is theta_t.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import enable_x64

import jaxopt_lectures as jl

GAMMA = 0.9
NUM_STEPS = 100
# float64 on both sides; what is left is the order of operations (jax.grad against the hand-written
# gradient, the reparametrized update against the lecture's), compounded over 100 steps.
RTOL, ATOL = 1e-10, 1e-12

Tree = Any
Rates = Callable[[], optax.ScalarOrSchedule]


@pytest.fixture(autouse=True)
def _float64() -> Iterator[None]:
    with enable_x64():
        yield


# --- Problems: the loss in JAX for jl.nag, its gradient by hand in NumPy for the reference ----


def rosenbrock(p: jax.Array) -> jax.Array:
    return (1.0 - p[0]) ** 2 + 100.0 * (p[1] - p[0] ** 2) ** 2


def rosenbrock_grad(p: np.ndarray) -> np.ndarray:
    x, y = p
    return np.array([-2.0 * (1.0 - x) - 400.0 * x * (y - x**2), 200.0 * (y - x**2)])


_rng = np.random.default_rng(0)
X = _rng.standard_normal((40, 3))
Y = (X @ np.array([1.5, -2.0, 0.5]) + 0.3 + 0.5 * _rng.standard_normal(40) > 0).astype(np.float64)
L2 = 0.01


def logistic(p: dict[str, jax.Array]) -> jax.Array:
    z = jnp.asarray(X) @ p["w"] + p["b"]
    # mean binary cross-entropy, log(1 + e^z) - y z, plus an L2 penalty on the weights
    return jnp.mean(jnp.logaddexp(0.0, z) - jnp.asarray(Y) * z) + 0.5 * L2 * jnp.sum(p["w"] ** 2)


def logistic_grad(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    residual = 1.0 / (1.0 + np.exp(-(X @ p["w"] + p["b"]))) - Y  # sigmoid(z) - y
    return {"w": X.T @ residual / len(Y) + L2 * p["w"], "b": np.mean(residual)}


# name: (loss in JAX, gradient in NumPy, theta_0, constant rate, schedule)
PROBLEMS: dict[str, tuple[Callable[..., jax.Array], Callable[..., Any], Tree, Rates, Rates]] = {
    "rosenbrock": (
        rosenbrock,
        rosenbrock_grad,
        np.array([-1.2, 1.0]),
        lambda: 2e-4,
        lambda: jl.inverse_time_decay(5e-4, decay_rate=1.0, decay_steps=10),
    ),
    "logistic_regression": (
        logistic,
        logistic_grad,
        {"w": np.array([0.5, 0.5, -1.0]), "b": np.array(-0.5)},
        lambda: 0.5,
        lambda: jl.inverse_time_decay(1.0, decay_rate=1.0, decay_steps=10),
    ),
}


def _combine(a: float, x: Tree, b: float, y: Tree) -> Tree:
    """a x + b y, leaf by leaf."""
    return jax.tree.map(lambda xi, yi: a * xi + b * yi, x, y)


def lecture_nag(
    grad: Callable[[Tree], Tree], theta0: Tree, etas: np.ndarray, gamma: float
) -> list[tuple[Tree, Tree]]:
    """The lecture's look-ahead NAG in NumPy: [(theta_t, u_t) for t = 0 .. len(etas)]."""
    theta, u = theta0, jax.tree.map(np.zeros_like, theta0)  # theta_0, u_0 = 0
    out = [(theta, u)]
    for eta in etas:
        look_ahead = _combine(1.0, theta, -gamma, u)  # theta_{t-1} - gamma u_{t-1}
        g = grad(look_ahead)
        u = _combine(gamma, u, eta, g)  # u_t = gamma u_{t-1} + eta_t g
        theta = _combine(1.0, theta, -1.0, u)  # theta_t = theta_{t-1} - u_t
        out.append((theta, u))
    return out


def run_nag(
    loss: Callable[..., jax.Array], tx: optax.GradientTransformation, phi0: Tree
) -> list[tuple[Tree, Tree, Tree]]:
    """``jl.nag`` on ``jax.grad(loss)``, jitted: [(params, trace, recovered theta)] per step."""

    @jax.jit
    def step(params: Tree, state: Any) -> tuple[Tree, Any]:
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, updates), state

    def record(params: Tree, state: Any) -> tuple[Tree, Tree, Tree]:
        """params, trace and theta in NumPy (no eager JAX operation to compile)."""
        params, trace = jax.device_get(params), jax.device_get(state[1].trace)
        # state[1] is the TraceState of chain(scale_by_learning_rate, trace): it holds -u.
        theta = jax.tree.map(lambda p, v: p - GAMMA * v, params, trace)
        return params, trace, theta

    params = jax.tree.map(jnp.asarray, phi0)
    state = tx.init(params)
    out = [record(params, state)]
    for _ in range(NUM_STEPS):
        params, state = step(params, state)
        out.append(record(params, state))
    return out


def flat(tree: Tree) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(tree)])


@pytest.mark.parametrize("rate", ["constant", "inverse_time_decay"])
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_nag_iterates_are_the_lecture_look_ahead_points(problem: str, rate: str) -> None:
    loss, grad, theta0, constant, schedule = PROBLEMS[problem]
    learning_rate = constant() if rate == "constant" else schedule()
    tx = jl.nag(learning_rate, momentum=GAMMA)

    # The lecture's eta_t of step t = 1, 2, ... is the schedule at count t - 1 (the first update
    # uses schedule(0)). Taken from the schedule itself, evaluated as in the optimizer (jitted, on
    # an int32 count): it computes in float32, where eager and compiled evaluation can differ in
    # the last bit, which would show here as a 1e-8 relative drift.
    if callable(learning_rate):
        at = jax.jit(learning_rate)
        etas = np.array([float(at(jnp.int32(t))) for t in range(NUM_STEPS)])
        assert etas[1] < 0.95 * etas[0]  # the rate really changes from step to step
    else:
        etas = np.full(NUM_STEPS, learning_rate)

    reference = lecture_nag(grad, theta0, etas, GAMMA)
    ours = run_nag(loss, tx, theta0)

    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(ours[-1]))
    assert jax.tree.structure(ours[-1][0]) == jax.tree.structure(jax.tree.map(jnp.asarray, theta0))
    for t, ((theta, u), (params, trace, recovered)) in enumerate(zip(reference, ours, strict=True)):
        theta, u = flat(theta), flat(u)
        phi = theta - GAMMA * u
        msg = f"step {t}"
        # The parameters jl.nag holds are the look-ahead points phi_t = theta_t - gamma u_t ...
        np.testing.assert_allclose(flat(params), phi, rtol=RTOL, atol=ATOL, err_msg=msg)
        # ... its state holds -u_t ...
        np.testing.assert_allclose(flat(trace), -u, rtol=RTOL, atol=ATOL, err_msg=msg)
        # ... and the lecture's theta_t is recovered as params - momentum * state[1].trace.
        np.testing.assert_allclose(flat(recovered), theta, rtol=RTOL, atol=ATOL, err_msg=msg)
        if t == 0:
            np.testing.assert_array_equal(phi, theta)  # u_0 = 0: phi_0 = theta_0
        else:
            # Not trivially true: theta_t and phi_t are far apart at the tolerance used above, so
            # running the lecture's theta through jl.nag's parameters would fail.
            assert not np.allclose(flat(recovered), flat(params), rtol=1e3 * RTOL, atol=1e3 * ATOL)

    # The runs go somewhere: the loss falls by a good fraction (on Rosenbrock, into the valley).
    jitted_loss = jax.jit(loss)
    final_loss = float(jitted_loss(ours[-1][2]))
    assert final_loss < 0.5 * float(jitted_loss(theta0))
