"""The experiments that measure the rest of the lecture's claims: their pure pieces against
independent NumPy references (unit tier), and the session's quick run of the main job, whose
results.json must carry every claim with its rule, number and verdict (integration tier). Claims
expected to hold in the quick run are asserted; those measured to fail are recorded
(``record_property``), not asserted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_lectures as jl
from jaxopt_lectures.experiments.engine import fitted_exponent, rank_correlation
from jaxopt_lectures.experiments.lecture.adaptive import adam_maybe_corrected, effective_step
from jaxopt_lectures.experiments.lecture.landscape import filter_normalized_direction, roughness
from jaxopt_lectures.experiments.lecture.momentum import (
    best_friction,
    heavy_ball_rate,
    polyak_optimum,
)

# ------------------------------------------------------------------------------------------------
# Unit tier: the pure pieces
# ------------------------------------------------------------------------------------------------


def _companion_radius(gamma: float, rate: float, h: float) -> float:
    """Spectral radius of heavy ball's 2x2 iteration matrix on (theta_t, theta_{t-1})."""
    m = np.array([[1.0 + gamma - rate * h, -gamma], [1.0, 0.0]])
    return float(np.max(np.abs(np.linalg.eigvals(m))))


@pytest.mark.parametrize("rate", [0.005, 0.01, 0.03, 0.0668])
def test_heavy_ball_rate_and_best_friction_match_a_numpy_grid_search(rate: float) -> None:
    curv = np.array([2.0, 40.0])  # the lecture's quadratic diag(1, 20): H = 2A
    gammas = np.linspace(0.0, 0.99, 991)
    radii = np.array([max(_companion_radius(g, rate, h) for h in curv) for g in gammas])
    ours = np.array([heavy_ball_rate(g, rate, curv) for g in gammas])
    np.testing.assert_allclose(ours, radii, rtol=1e-6, atol=1e-9)
    assert best_friction(rate, curv) == pytest.approx(gammas[np.argmin(radii)], abs=2e-3)


def test_polyak_optimum_is_the_kappa_formula_and_the_joint_grid_optimum() -> None:
    a1, a2 = 1.0, 20.0
    rate, gamma = polyak_optimum(2 * a1, 2 * a2)
    inv = np.sqrt(a1 / a2)
    assert gamma == pytest.approx(((1 - inv) / (1 + inv)) ** 2)
    assert best_friction(rate, [2 * a1, 2 * a2]) == pytest.approx(gamma)
    rates, gammas = np.linspace(0.01, 0.09, 81), np.linspace(0.0, 0.95, 96)
    grid = np.array([[heavy_ball_rate(g, r, [2 * a1, 2 * a2]) for g in gammas] for r in rates])
    i, j = np.unravel_index(np.argmin(grid), grid.shape)
    assert rates[i] == pytest.approx(rate, abs=0.002)
    assert gammas[j] == pytest.approx(gamma, abs=0.02)
    best_rho = (np.sqrt(20) - 1) / (np.sqrt(20) + 1)
    assert heavy_ball_rate(gamma, rate, [2 * a1, 2 * a2]) == pytest.approx(best_rho, rel=1e-4)
    assert best_rho <= np.min(grid) <= best_rho + 0.01  # the grid's best is a bit off the corner


def test_filter_normalized_direction_matches_each_units_weight_norm() -> None:
    params, _ = jax.jit(lambda key: jl.nn.mlp_init(key, [8, 6, 4, 3], activation="relu"))(
        jax.random.key(1)
    )
    d = jax.jit(filter_normalized_direction)(jax.random.key(2), params)
    for p_layer, d_layer in zip(params, d, strict=True):
        w, dw = np.asarray(p_layer["w"]), np.asarray(d_layer["w"])
        np.testing.assert_allclose(np.linalg.norm(dw, axis=0), np.linalg.norm(w, axis=0), rtol=1e-5)
        assert not np.allclose(dw, w)  # a random direction, not the weights
        np.testing.assert_array_equal(np.asarray(d_layer["b"]), 0.0)


def test_roughness_is_one_for_a_valley_and_counts_bumps() -> None:
    alphas = np.linspace(-1, 1, 41)
    valley = alphas**2 + 0.3 * alphas
    bumpy = valley + 0.2 * np.cos(12 * alphas)
    r, m = roughness(np.stack([valley, bumpy]))
    assert r[0] == pytest.approx(1.0)
    assert m[0] == 1
    assert r[1] > 1.2
    assert m[1] >= 2


def _numpy_preconditioner(method: str, grads: list[np.ndarray], rate: float) -> np.ndarray:
    if method == "adagrad":
        return rate / (np.sqrt(np.sum(np.square(grads), axis=0)) + 1e-10)
    v = np.zeros_like(grads[0])
    decay = 0.9 if method == "rmsprop" else 0.999
    for g in grads:
        v = decay * v + (1 - decay) * g * g
    if method == "adam":
        v = v / (1 - 0.999 ** len(grads))
    return rate / (np.sqrt(v) + 1e-8)


@pytest.mark.parametrize("method", ["adagrad", "rmsprop", "adam"])
def test_effective_step_against_a_numpy_reimplementation(method: str) -> None:
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(7) * np.geomspace(0.1, 10, 7) for _ in range(25)]
    tx = jl.adagrad(0.05) if method == "adagrad" else jl.rmsprop(0.05)
    tx = jl.adam(0.05) if method == "adam" else tx
    state = tx.init(jnp.zeros(7))
    update = jax.jit(tx.update)
    for g in grads:
        _, state = update(jnp.asarray(g, jnp.float32), state)
    ours = jax.jit(lambda s: effective_step(method, s, 0.05))(state)
    np.testing.assert_allclose(ours, _numpy_preconditioner(method, grads, 0.05), rtol=2e-5)


def test_adam_without_correction_is_numpys_and_with_it_is_jl_scale_by_adam() -> None:
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(5).astype(np.float32) for _ in range(30)]
    on, off, ref = adam_maybe_corrected(1.0), adam_maybe_corrected(0.0), jl.scale_by_adam()
    s_on, s_off, s_ref = on.init(grads[0]), off.init(grads[0]), ref.init(grads[0])
    m = v = np.zeros(5)
    for g in grads:
        u_on, s_on = jax.jit(on.update)(g, s_on)
        u_off, s_off = jax.jit(off.update)(g, s_off)
        u_ref, s_ref = jax.jit(ref.update)(g, s_ref)
        gn = np.asarray(g, np.float64)
        m, v = 0.9 * m + 0.1 * gn, 0.999 * v + 0.001 * gn * gn
        np.testing.assert_allclose(u_on, u_ref, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(u_off, m / (np.sqrt(v) + 1e-8), rtol=1e-4)


def test_fitted_exponent_and_rank_correlation_against_numpy_and_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    x = np.array([16.0, 64.0, 256.0, 1024.0])
    assert fitted_exponent(x, 3e-9 * x**2.5) == pytest.approx(2.5)
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 5, 40).astype(float), rng.standard_normal(40)  # with ties
    assert rank_correlation(a, b) == pytest.approx(stats.spearmanr(a, b).statistic)
    with pytest.raises(ValueError, match="equal-length"):
        fitted_exponent([1.0], [2.0])


# ------------------------------------------------------------------------------------------------
# Integration tier: the session's quick run of the main job
# ------------------------------------------------------------------------------------------------

NEW = (
    "landscape",
    "sgd-decay",
    "momentum-friction",
    "newton-cost",
    "curvature",
    "dropout-map",
    "bn-landscape",
)

# (experiment, claim index) -> expected to hold in the quick run. Those marked False were measured
# not to hold (or to sit too close to their threshold to be a stable expectation); the test
# records their verdict instead of asserting it.
EXPECTED = {
    ("landscape", 0): True,  # starts reach the nearest minimum
    ("landscape", 1): False,  # deeper -> rougher: measured smooth valleys for both depths
    ("sgd-decay", 0): True,
    ("sgd-decay", 1): True,
    ("momentum-friction", 0): True,
    ("momentum-friction", 1): True,
    ("newton-cost", 0): False,  # a timing on a shared machine: recorded, never asserted
    ("curvature", 0): True,  # quadratic
    ("curvature", 1): False,  # network: rank correlation near the 0.5 threshold
    ("curvature", 2): True,  # bias correction
    ("dropout-map", 0): True,  # slower at first
    ("dropout-map", 1): False,  # better best val loss: not in every cell
    ("dropout-map", 2): False,  # smaller final gap: measured per cell, recorded
    ("bn-landscape", 0): True,  # Santurkar's three measures
    ("bn-landscape", 1): True,  # fewer stuck runs
}


def _entry(quick_run: tuple[Path, dict[str, Any]], name: str) -> dict[str, Any]:
    """The quick record of experiment ``name`` in the session's run."""
    return quick_run[1]["experiments"][name]["quick"]["result"]


@pytest.mark.integration
@pytest.mark.parametrize("name", NEW)
def test_each_claim_has_rule_number_verdict_and_a_figure(
    quick_run: tuple[Path, dict[str, Any]], name: str
) -> None:
    out = quick_run[0]
    result = _entry(quick_run, name)
    assert result["status"] == "ok", result.get("error")
    assert result["claims"], name
    for claim in result["claims"]:
        assert claim["claim"]
        assert claim["rule"]
        assert any(ch.isdigit() for ch in claim["measured"])  # a number, not only words
        assert isinstance(claim["held"], bool)
    assert result["figures"]
    assert all((out / f).stat().st_size > 10_000 for f in result["figures"])
    assert len(result["claims"]) == sum(1 for n, _ in EXPECTED if n == name)


@pytest.mark.integration
@pytest.mark.parametrize(("name", "index"), sorted(EXPECTED))
def test_quick_run_verdicts(
    quick_run: tuple[Path, dict[str, Any]],
    name: str,
    index: int,
    record_property: Any,
) -> None:
    claim = _entry(quick_run, name)["claims"][index]
    record_property(f"{name}[{index}] held", claim["held"])
    record_property(f"{name}[{index}] measured", claim["measured"])
    if EXPECTED[(name, index)]:
        assert claim["held"], f"{claim['claim']}: {claim['measured']} (rule: {claim['rule']})"
