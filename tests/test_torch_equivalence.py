"""PyTorch's optimizers give the same numbers as ours, as the README's table claims.

Part of the default run (marker ``peers``; CI installs PyTorch's CPU build first, see .ci/run).
Without PyTorch the module is skipped as a whole, except under CI (``CI=true``), where the import
fails the run: a comparison that CI promises must not disappear silently.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_lectures as jl

# With the integration tier: importing PyTorch and running its optimizers takes seconds in every
# process, and a comparison with another framework is an end-to-end check of the numbers.
pytestmark = [pytest.mark.peers, pytest.mark.integration]

# PyTorch is imported when the first test of this module runs, not when the module is collected:
# the import takes seconds, and a run that selects none of these tests need not pay for it.
torch: Any = None


@pytest.fixture(autouse=True, scope="module")
def _import_torch() -> None:
    global torch
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        import torch as module  # CI installs it: fail, do not skip, if it is missing
    else:
        module = pytest.importorskip("torch")
    torch = module


SHAPES = [(4, 3), (3,), ()]
NUM_STEPS = 30


def gradients(seed: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s).astype(np.float32) for s in SHAPES] for _ in range(NUM_STEPS)]


def torch_trajectory(
    make: Callable[[list[Any]], Any], grads: list[list[np.ndarray]], lr_lambda: Any = None
) -> list[list[np.ndarray]]:
    params = [torch.ones(s, dtype=torch.float32) for s in SHAPES]
    for p in params:
        p.requires_grad_(True)
    opt = make(params)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda) if lr_lambda else None
    out = []
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = torch.from_numpy(g.copy())
        opt.step()
        if scheduler is not None:
            scheduler.step()
        out.append([p.detach().numpy().copy() for p in params])
    return out


def jax_trajectory(
    tx: optax.GradientTransformation, grads: list[list[np.ndarray]]
) -> list[list[np.ndarray]]:
    params = [jnp.ones(s, jnp.float32) for s in SHAPES]
    state = tx.init(params)

    @jax.jit
    def step(params: Any, state: Any, g: Any) -> Any:
        updates, state = tx.update(g, state, params)
        return optax.apply_updates(params, updates), state

    out = []
    for step_grads in grads:
        params, state = step(params, state, [jnp.asarray(g) for g in step_grads])
        out.append([np.asarray(p) for p in params])
    return out


PAIRS: dict[str, tuple[optax.GradientTransformation, Callable[[list[Any]], Any]]] = {
    "sgd": (jl.sgd(0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    "momentum": (
        jl.momentum(0.05, momentum=0.9),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    ),
    "nag": (
        jl.nag(0.05, momentum=0.9),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    ),
    "adagrad": (jl.adagrad(0.01), lambda p: torch.optim.Adagrad(p, lr=0.01)),
    "rmsprop": (
        jl.rmsprop(0.01, decay=0.9, eps=1e-8),
        lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-8),
    ),
    # PyTorch's centered variant divides by sqrt(v - m^2) + eps: eps outside the root, which is
    # jl.rmsprop's default (eps_in_sqrt=False). eps = 1e-3 makes the placement visible.
    "rmsprop_centered": (
        jl.rmsprop(0.01, decay=0.9, eps=1e-3, centered=True),
        lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-3, centered=True),
    ),
    "rmsprop_centered_momentum": (
        jl.rmsprop(0.01, decay=0.99, eps=1e-8, centered=True, momentum=0.9),
        lambda p: torch.optim.RMSprop(
            p, lr=0.01, alpha=0.99, eps=1e-8, momentum=0.9, centered=True
        ),
    ),
    "adadelta": (jl.adadelta(), lambda p: torch.optim.Adadelta(p)),
    "adam": (jl.adam(1e-3), lambda p: torch.optim.Adam(p, lr=1e-3)),
}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_same_trajectory_as_torch(name: str) -> None:
    tx, make = PAIRS[name]
    grads = gradients(0)
    ours = jax_trajectory(tx, grads)
    theirs = torch_trajectory(make, grads)
    for step, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=f"step {step}")


def test_torch_momentum_under_a_schedule_matches_optax_not_the_lecture() -> None:
    """PyTorch's LR scheduler rescales the whole velocity, like optax; the lecture does not."""
    factor = lambda t: 1.0 if t < 10 else 0.1  # noqa: E731
    grads = gradients(1)
    theirs = torch_trajectory(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), grads, factor)
    schedule = optax.piecewise_constant_schedule(0.1, {10: 0.1})
    optax_path = jax_trajectory(optax.sgd(schedule, momentum=0.9), grads)
    ours = jax_trajectory(jl.momentum(schedule, momentum=0.9), grads)
    for a, b in zip(optax_path, theirs, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours[9][0], theirs[9][0], rtol=1e-5)  # same before the drop
    assert np.max(np.abs(ours[-1][0] - theirs[-1][0])) > 1e-2  # different after it


def test_torch_centered_rmsprop_puts_eps_outside_the_root() -> None:
    """optax's default for the centered variant (eps inside the root, ``eps_in_sqrt=True``) is not
    PyTorch's: at eps = 1e-3 the trajectories part by far more than the tolerance above, while
    ``jl.rmsprop``'s default (eps outside, the ``rmsprop_centered`` pair) follows PyTorch."""
    grads = gradients(0)
    theirs = torch_trajectory(
        lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-3, centered=True), grads
    )
    inside = jax_trajectory(
        jl.rmsprop(0.01, decay=0.9, eps=1e-3, centered=True, eps_in_sqrt=True), grads
    )
    outside = jax_trajectory(jl.rmsprop(0.01, decay=0.9, eps=1e-3, centered=True), grads)
    gap_inside = max(np.max(np.abs(x - y)) for x, y in zip(inside[-1], theirs[-1], strict=True))
    gap_outside = max(np.max(np.abs(x - y)) for x, y in zip(outside[-1], theirs[-1], strict=True))
    assert gap_outside < 1e-5 < 1e-4 < gap_inside


def test_constant_gradient_centered_rmsprop_stays_finite_where_torch_gives_nan() -> None:
    """A constant gradient: v - m^2 = (1 - alpha^t) alpha^t g^2 tends to 0 and, once alpha^t is
    below float32's resolution, rounds to either side of it. PyTorch then takes the root of a
    negative number and its parameters become NaN (observed after 137 steps at alpha = 0.9);
    ``jl.rmsprop(centered=True)`` clamps the estimate at 0 and keeps stepping, by at most
    lr * |g| / eps per step."""
    g = np.array([0.3, 1.7, 1e3, 0.1, -2.5, 7.0], np.float32)
    num_steps = 300
    p = torch.zeros(6, requires_grad=True)
    opt = torch.optim.RMSprop([p], lr=0.01, alpha=0.9, eps=1e-8, centered=True)
    for _ in range(num_steps):
        p.grad = torch.from_numpy(g.copy())
        opt.step()
    assert not torch.isfinite(p).all()  # the case is real

    tx = jl.rmsprop(0.01, decay=0.9, eps=1e-8, centered=True)
    state, step = tx.init(jnp.zeros(6)), jax.jit(tx.update)
    for _ in range(num_steps):
        updates, state = step(jnp.asarray(g), state)
        assert np.all(np.isfinite(updates))
        assert np.all(np.abs(np.asarray(updates)) <= 0.01 * np.abs(g) / 1e-8 * (1 + 1e-6))
        assert np.all(np.sign(np.asarray(updates)) == -np.sign(g))
