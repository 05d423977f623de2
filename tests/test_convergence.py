"""Every optimizer minimizes a parabola and Rosenbrock's valley, compiled end to end.

The settings are per optimizer, as a user would tune them; the findings they encode are real:
RMSprop and AdaDelta only settle on Rosenbrock with a decaying rate (their own per-coordinate
rates otherwise keep them bouncing across the valley floor), and AdaDelta at its default settings
needs about 5x more steps than the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_lectures as jl


def parabola(p: jax.Array) -> jax.Array:
    """The lecture's L = theta . A theta (shifted to a minimizer at (1, -2)), with a1 << a2."""
    a = jnp.array([1.0, 10.0])
    d = p - jnp.array([1.0, -2.0])
    return jnp.sum(a * d * d)


def rosenbrock(p: jax.Array) -> jax.Array:
    return (1.0 - p[0]) ** 2 + 100.0 * (p[1] - p[0] ** 2) ** 2


def minimize(
    loss: Callable[[jax.Array], jax.Array],
    tx: optax.GradientTransformation,
    x0: jax.Array,
    num_steps: int,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Run ``num_steps`` updates in one compiled ``lax.scan``; return the final point, the loss
    curve (the loss before each step) and the loss at the final point."""

    def step(carry: Any, _: None) -> tuple[Any, jax.Array]:
        p, state = carry
        value, grad = jax.value_and_grad(loss)(p)
        updates, state = tx.update(grad, state, p)
        return (optax.apply_updates(p, updates), state), value

    @jax.jit
    def run(p: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        (p, _), values = jax.lax.scan(step, (p, tx.init(p)), None, length=num_steps)
        return p, values, loss(p)

    p, values, final = jax.device_get(run(x0))
    return p, values, float(final)


PARABOLA: dict[str, tuple[optax.GradientTransformation, int]] = {
    "sgd": (jl.sgd(0.09), 500),  # stable below 2 / (2 a2) = 0.1
    "momentum": (jl.momentum(0.02, momentum=0.8), 500),
    "nag": (jl.nag(0.02, momentum=0.8), 500),
    "adagrad": (jl.adagrad(1.0), 500),
    "rmsprop": (jl.rmsprop(jl.inverse_time_decay(0.1, 1.0, 10)), 2000),
    "adadelta": (jl.adadelta(1.0, rho=0.95), 5000),
    "adam": (jl.adam(jl.inverse_time_decay(0.2, 1.0, 50)), 2000),
}

ROSENBROCK: dict[str, tuple[optax.GradientTransformation, int]] = {
    "sgd": (jl.sgd(1e-3), 20_000),
    "momentum": (jl.momentum(1e-3, momentum=0.9), 5_000),
    "nag": (jl.nag(1e-3, momentum=0.9), 5_000),
    "adagrad": (jl.adagrad(0.5), 20_000),
    "rmsprop": (jl.rmsprop(jl.inverse_time_decay(1e-2, 1.0, 100), decay=0.9), 20_000),
    "adadelta": (jl.adadelta(jl.inverse_time_decay(1.0, 0.01, 1), rho=0.99, eps=1e-5), 100_000),
    "adam": (jl.adam(0.02), 5_000),
}


def test_every_alias_is_covered() -> None:
    expected = {"sgd", "momentum", "nag", "adagrad", "rmsprop", "adadelta", "adam"}
    assert set(PARABOLA) == expected
    assert set(ROSENBROCK) == expected


@pytest.mark.parametrize("name", sorted(PARABOLA))
def test_converges_on_parabola(name: str) -> None:
    tx, num_steps = PARABOLA[name]
    p, values, final = minimize(parabola, tx, np.array([-2.0, 1.0], np.float32), num_steps)
    assert np.all(np.isfinite(values))
    np.testing.assert_allclose(p, [1.0, -2.0], atol=1e-3)
    assert final < 1e-5 * float(values[0])


@pytest.mark.parametrize("name", sorted(ROSENBROCK))
def test_converges_on_rosenbrock(name: str) -> None:
    tx, num_steps = ROSENBROCK[name]
    p, values, final = minimize(rosenbrock, tx, np.array([-1.2, 1.0], np.float32), num_steps)
    assert np.all(np.isfinite(values))
    np.testing.assert_allclose(p, [1.0, 1.0], atol=1e-3)
    assert final < 1e-6


def test_adadelta_default_descends_rosenbrock() -> None:
    """At its defaults AdaDelta is slow on Rosenbrock but always goes downhill, never up."""
    _, values, final = minimize(rosenbrock, jl.adadelta(), np.array([-1.2, 1.0], np.float32), 2_000)
    assert final < float(values[0])
