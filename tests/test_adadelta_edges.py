"""AdaDelta at the edges: low-precision averages, non-finite state and huge gradients, against
optax's ``scale_by_adadelta`` and a float64 NumPy reference of Zeiler's equations."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxopt_lectures as jl


def _reference_step(
    g: np.ndarray, e_g: np.ndarray, e_x: np.ndarray, rho: float, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zeiler's step in float64: Delta = sqrt(E[Delta^2]_{t-1} + eps) / sqrt(E[g^2]_t + eps) g."""
    g, e_g, e_x = (np.asarray(a, np.float64) for a in (g, e_g, e_x))
    e_g_new = rho * e_g + (1 - rho) * g**2
    delta = np.sqrt(e_x + eps) / np.sqrt(e_g_new + eps) * g
    return delta, e_g_new, rho * e_x + (1 - rho) * delta**2


def _run(tx: optax.GradientTransformation, grads: list[Any], params: Any) -> list[Any]:
    step = jax.jit(tx.update)
    state, out = tx.init(params), []
    for g in grads:
        u, state = step(jnp.asarray(g), state, params)
        out.append((np.asarray(u), state))
    return out


def test_bfloat16_averages_step_from_the_unrounded_average() -> None:
    """With bf16 averages and float32 gradients the step is computed in float32 from the averages
    of this step before they are rounded to bf16 (rounded once, when stored): within float32
    rounding of the float64 reference started from the same stored state. Reading the average
    back after its rounding moved the step by up to 2^-10 relative."""
    rng = np.random.default_rng(0)
    tx = jl.scale_by_adadelta(rho=0.9, eps=1e-6, accumulator_dtype=jnp.bfloat16)
    step = jax.jit(tx.update)
    state = tx.init(jnp.zeros(4096))
    for _ in range(5):
        g = rng.standard_normal(4096).astype(np.float32)
        e_g = np.asarray(state.e_g.astype(jnp.float32))
        e_x = np.asarray(state.e_x.astype(jnp.float32))
        expected, expected_e_g, expected_e_x = _reference_step(g, e_g, e_x, 0.9, 1e-6)
        updates, state = step(jnp.asarray(g), state)
        assert updates.dtype == jnp.float32
        assert state.e_x.dtype == jnp.bfloat16
        np.testing.assert_allclose(np.asarray(updates), expected, rtol=2e-6, atol=0)
        # the stored averages are the reference rounded once to bf16 (to within one bf16 ulp)
        for stored, exact in ((state.e_g, expected_e_g), (state.e_x, expected_e_x)):
            np.testing.assert_allclose(
                np.asarray(stored.astype(jnp.float32)), exact, rtol=2.0**-8, atol=0
            )


def test_non_finite_state_shows_in_every_later_step() -> None:
    """A NaN gradient makes the averages NaN: every later step is NaN, as in optax, never a
    silent zero step that freezes the coordinate."""
    grads = [np.array([np.nan, 1.0], np.float32), np.ones(2, np.float32), np.ones(2, np.float32)]
    params = jnp.zeros(2)
    ours = _run(jl.adadelta(), grads, params)
    theirs = _run(optax.adadelta(1.0), grads, params)
    for (u, _), (v, _) in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(np.isnan(u), np.isnan(v))
    assert all(np.isnan(u[0]) for u, _ in ours)
    assert np.all(np.isfinite(ours[-1][0][1:]))


def test_huge_gradients_give_optax_steps() -> None:
    """Gradients up to float32's largest values: optax's steps (the squared ratio of the averages
    underflowed to a zero step from |g| ~ 3e16 on, and |g|^2 overflowing to inf left the state
    NaN for good), and the state stays as finite as optax's."""
    magnitudes = np.array([1.0, 1e10, 3e16, 1e17, 1e18, 1.9e19, 1e20, 3e38], np.float32)
    grads = [magnitudes * sign for sign in (1.0, -1.0, 1.0, 0.5)]
    params = jnp.zeros(magnitudes.size)
    ours = _run(jl.scale_by_adadelta(), grads, params)
    theirs = _run(optax.scale_by_adadelta(), grads, params)
    for (u, state), (v, optax_state) in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=0)
        for ours_leaf, theirs_leaf in zip(state, optax_state, strict=True):
            np.testing.assert_array_equal(
                np.isfinite(np.asarray(ours_leaf)), np.isfinite(np.asarray(theirs_leaf))
            )
    assert np.all(np.abs(ours[0][0][:-3]) > 0)  # no zero step where optax's is not zero


def test_rho_zero_and_zero_gradient_is_a_zero_step() -> None:
    """rho = 0 and g = 0 is 0 / 0 in the step read back from the new average: a zero step, as in
    optax (whose textbook form gives sqrt(eps) / sqrt(eps) * 0)."""
    grads = [np.array([0.0, 1.0], np.float32), np.array([0.0, 0.0], np.float32)]
    ours = _run(jl.scale_by_adadelta(rho=0.0), grads, jnp.zeros(2))
    theirs = _run(optax.scale_by_adadelta(rho=0.0), grads, jnp.zeros(2))
    for (u, _), (v, _) in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(u, v)
