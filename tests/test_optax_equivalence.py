"""Every optimizer against the optax configuration with identical numerics (the peers of the docs).

Each pair runs 30 jitted steps on the same random float32 gradients over the mixed-shape pytree of
``conftest.SHAPES`` and must emit the same updates, leaf by leaf, to a relative tolerance of 1e-6.

Where the two differ on purpose, the difference is a test of its own: momentum and NAG under a
schedule (the rate lives inside our velocity, outside optax's), and the sign of
``optax.adadelta()`` whose default ``learning_rate=None`` climbs the loss.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import Wrap, check_each, random_gradients, random_tree, to_f32

import jaxopt_lectures as jl

NUM_STEPS = 30
RTOL = 1e-6

Factory = Callable[[], optax.GradientTransformation]


def _flat(tree: Any) -> np.ndarray:
    """All leaves of ``tree`` as one float64 vector (leaf order is the tree's flattening order)."""
    return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])


def _gradients(seed: int = 0) -> list[Any]:
    return [to_f32(g) for g in random_gradients(seed, NUM_STEPS)]


def _params() -> Any:
    return to_f32(random_tree(np.random.default_rng(1234)))


def _updates_together(
    txs: Sequence[optax.GradientTransformation], grads: list[Any], params: Any
) -> list[list[Any]]:
    """Feed ``grads`` through every transform of ``txs``, one jitted step of all of them per
    gradient (one compiled program for all): for each transform, the update trees of every step.

    Also checks what every step must preserve: the gradients' tree structure and dtype.
    """

    @jax.jit
    def step(g: Any, states: list[Any]) -> tuple[list[Any], list[Any]]:
        out = [tx.update(g, state, params) for tx, state in zip(txs, states, strict=True)]
        return [u for u, _ in out], [state for _, state in out]

    states = [tx.init(params) for tx in txs]
    runs: list[list[Any]] = [[] for _ in txs]
    for g in grads:
        updates, states = step(g, states)
        for run, u in zip(runs, updates, strict=True):
            assert jax.tree.structure(u) == jax.tree.structure(g)
            assert [x.dtype for x in jax.tree.leaves(u)] == [x.dtype for x in jax.tree.leaves(g)]
            run.append(u)
    return runs


def _run_together(
    txs: Sequence[optax.GradientTransformation], grads: list[Any], params: Any
) -> list[np.ndarray]:
    """Every transform of ``txs`` on ``grads`` in one jitted step (see :func:`_updates_together`):
    for each, the updates as one flat float64 row per step."""
    return [np.stack([_flat(u) for u in run]) for run in _updates_together(txs, grads, params)]


def _assert_same_updates(
    ours: np.ndarray, peer: np.ndarray, rtol: float = RTOL, cancellation: bool = False
) -> None:
    """Compare two runs step by step.

    ``cancellation=True`` is for methods whose update entries are sums of terms of both signs (the
    momentum velocity, Adam's first moment). The two libraries order the arithmetic differently
    (optax multiplies the velocity by the rate after summing, we before; the Adam corrections are
    rounded differently), so an entry's rounding error is a few ulps of the *terms*, not of the
    (sometimes nearly cancelled) sum: a small entry can differ by 1e-4 relative while both are
    right to float32 precision. There the absolute tolerance is ``rtol`` times the largest entry
    of that step, the scale of the terms being summed (observed worst case over 8 seeds: 4e-7
    times that scale). Every other method multiplies g by positive factors entry by entry and gets
    no absolute tolerance at all.
    """
    assert ours.shape == peer.shape
    for t, (u, v) in enumerate(zip(ours, peer, strict=True)):
        atol = rtol * np.max(np.abs(v)) if cancellation else 0.0
        np.testing.assert_allclose(u, v, rtol=rtol, atol=atol, err_msg=f"step {t}")


# (ours, optax peer, rtol, cancellation), one row per pairing.
PAIRS: dict[str, tuple[Factory, Factory, float, bool]] = {
    # Aliases at a constant learning rate.
    "sgd": (lambda: jl.sgd(0.1), lambda: optax.sgd(0.1), RTOL, False),
    "momentum": (
        lambda: jl.momentum(0.05, momentum=0.9),
        lambda: optax.sgd(0.05, momentum=0.9),
        RTOL,
        True,
    ),
    "nag": (
        lambda: jl.nag(0.05, momentum=0.9),
        lambda: optax.sgd(0.05, momentum=0.9, nesterov=True),
        RTOL,
        True,
    ),
    # eps = 0 on both sides: the same formula, g / sqrt(s) against g * rsqrt(s).
    "adagrad_eps0": (
        lambda: jl.adagrad(0.1, eps=0.0),
        lambda: optax.adagrad(0.1, initial_accumulator_value=0.0, eps=0.0),
        RTOL,
        False,
    ),
    "rmsprop": (
        lambda: jl.rmsprop(0.01, decay=0.9, eps=1e-8),
        lambda: optax.rmsprop(0.01, decay=0.9, eps=1e-8, eps_in_sqrt=False),
        RTOL,
        False,
    ),
    "rmsprop_centered": (
        lambda: jl.rmsprop(0.01, decay=0.9, eps=1e-8, centered=True),
        lambda: optax.rmsprop(0.01, decay=0.9, eps=1e-8, eps_in_sqrt=False, centered=True),
        RTOL,
        False,
    ),
    # AdaDelta: we take the root of the ratio (E[D^2] + eps) / (E[g^2] + eps), optax the ratio of
    # the roots; a few ulps per step that feed back through E[Delta^2] (observed up to 6e-7 over
    # 8 seeds), hence 2e-6.
    "adadelta_lr1": (lambda: jl.adadelta(1.0), lambda: optax.adadelta(1.0), 2e-6, False),
    "adadelta_lr0.5": (lambda: jl.adadelta(0.5), lambda: optax.adadelta(0.5), 2e-6, False),
    "adam": (
        lambda: jl.adam(0.01, b1=0.9, b2=0.999, eps=1e-8),
        lambda: optax.adam(0.01, b1=0.9, b2=0.999, eps=1e-8),
        RTOL,
        True,
    ),
    # Methods without memory of past rates agree with optax under a schedule too: both evaluate
    # it at the count before the increment.
    "sgd_inverse_time_decay": (
        lambda: jl.sgd(jl.inverse_time_decay(0.1, decay_rate=1.0, decay_steps=3)),
        lambda: optax.sgd(jl.inverse_time_decay(0.1, decay_rate=1.0, decay_steps=3)),
        RTOL,
        False,
    ),
    "adam_piecewise_schedule": (
        lambda: jl.adam(optax.piecewise_constant_schedule(0.01, {5: 0.1, 20: 0.5})),
        lambda: optax.adam(optax.piecewise_constant_schedule(0.01, {5: 0.1, 20: 0.5})),
        RTOL,
        True,
    ),
    # Building blocks.
    "trace": (lambda: jl.trace(0.9), lambda: optax.trace(0.9), RTOL, True),
    "trace_nesterov": (
        lambda: jl.trace(0.9, nesterov=True),
        lambda: optax.trace(0.9, nesterov=True),
        RTOL,
        True,
    ),
    "scale_by_adam": (
        lambda: jl.scale_by_adam(b1=0.8, b2=0.99, eps=1e-6),
        lambda: optax.scale_by_adam(b1=0.8, b2=0.99, eps=1e-6),
        RTOL,
        True,
    ),
    "scale_by_rms": (
        lambda: jl.scale_by_rms(decay=0.9, eps=1e-8, eps_in_sqrt=False),
        lambda: optax.scale_by_rms(decay=0.9, eps=1e-8, eps_in_sqrt=False),
        RTOL,
        False,
    ),
    "scale_by_stddev": (
        lambda: jl.scale_by_stddev(decay=0.9, eps=1e-8),
        lambda: optax.scale_by_stddev(decay=0.9, eps=1e-8),
        RTOL,
        False,
    ),
    "scale_by_adadelta": (
        lambda: jl.scale_by_adadelta(rho=0.9, eps=1e-6),
        lambda: optax.scale_by_adadelta(rho=0.9, eps=1e-6),
        2e-6,
        False,
    ),
    "scale_by_learning_rate": (
        lambda: jl.scale_by_learning_rate(0.1),
        lambda: optax.scale_by_learning_rate(0.1),
        RTOL,
        False,
    ),
    "scale_by_learning_rate_schedule": (
        lambda: jl.scale_by_learning_rate(optax.exponential_decay(0.1, 1, 0.9)),
        lambda: optax.scale_by_learning_rate(optax.exponential_decay(0.1, 1, 0.9)),
        RTOL,
        False,
    ),
}


def test_same_updates_as_optax_peer(layout: Wrap) -> None:
    """Each of ours in ``PAIRS`` (in every layout) against its optax peer, which runs as it is.
    All of them run side by side in one compiled step."""
    txs = [
        tx
        for make_ours, make_peer, *_ in PAIRS.values()
        for tx in (layout(make_ours()), make_peer())
    ]
    runs = _run_together(txs, _gradients(), _params())
    updates = {name: (runs[2 * i], runs[2 * i + 1]) for i, name in enumerate(PAIRS)}

    def check(name: str) -> None:
        ours, peer = updates[name]
        _, _, rtol, cancellation = PAIRS[name]
        assert np.all(np.isfinite(ours))
        assert np.any(ours != 0)
        _assert_same_updates(ours, peer, rtol=rtol, cancellation=cancellation)

    check_each(sorted(PAIRS), check)


def test_adagrad_default_eps_matches_optax_eps0_to_float32_precision() -> None:
    """Our default ``eps=1e-10`` (outside the root) against optax with no eps at all.

    The relative effect of eps on an entry is eps / (sqrt(s_t) + eps) < eps / sqrt(s_t). The test
    first checks, from the gradients themselves, that this bound is an order of magnitude below
    the tolerance, so the agreement asserted next is float32 rounding and nothing else.
    """
    eps = 1e-10
    grads, params = _gradients(), _params()
    sum_of_squares = np.cumsum(np.stack([_flat(g) for g in grads]) ** 2, axis=0)
    assert eps / np.sqrt(sum_of_squares[sum_of_squares > 0].min()) < RTOL / 10

    ours, peer, ours_eps0 = _run_together(
        [
            jl.adagrad(0.1, eps=eps),
            optax.adagrad(0.1, initial_accumulator_value=0.0, eps=0.0),
            jl.adagrad(0.1, eps=0.0),
        ],
        grads,
        params,
    )
    _assert_same_updates(ours, peer)
    # and eps does something: it is not silently ignored.
    assert not np.array_equal(ours, ours_eps0)


# --- Momentum and NAG under a schedule: where and why they differ from optax -----------------

GAMMA = 0.9
DROP_AT = 5
# eta_t = 0.1 for t < 5, then 0.01: one sudden 10x drop makes the mechanism obvious.
STEP_SCHEDULE = optax.piecewise_constant_schedule(0.1, {DROP_AT: 0.1})


def _closed_forms(
    G: np.ndarray, eta: np.ndarray, gamma: float, nesterov: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The updates of both conventions in float64, as explicit weighted sums over past gradients.

    ``G`` is (steps, entries), ``eta[t]`` the rate of step t. With W[t, s] = gamma^(t - s), s <= t:

    - ours (the lecture): velocity u_t = sum_s gamma^(t-s) eta_s g_s; momentum emits -u_t, NAG
      emits -(eta_t g_t + gamma u_t).
    - optax: velocity v_t = sum_s gamma^(t-s) g_s; momentum emits -eta_t v_t, NAG emits
      -eta_t (g_t + gamma v_t).
    """
    t = np.arange(len(eta))
    lag = t[:, None] - t[None, :]
    W = np.where(lag >= 0, gamma ** np.maximum(lag, 0), 0.0)
    u = W @ (eta[:, None] * G)  # sum_s gamma^(t-s) eta_s g_s
    v = W @ G  # sum_s gamma^(t-s) g_s
    if nesterov:
        return -(eta[:, None] * G + gamma * u), -eta[:, None] * (G + gamma * v)
    return -u, -eta[:, None] * v


@pytest.mark.parametrize("nesterov", [False, True], ids=["momentum", "nag"])
def test_under_a_schedule_our_velocity_keeps_each_steps_rate(nesterov: bool) -> None:
    """Where and why ``jl.momentum`` / ``jl.nag`` differ from ``optax.sgd(schedule, momentum)``.

    The lecture puts the rate inside the velocity, u_t = gamma u_{t-1} + eta_t g_t, so each
    gradient keeps the rate of the step it was taken at: u_t = sum_s gamma^(t-s) eta_s g_s. optax
    (and PyTorch) accumulate raw gradients, v_t = gamma v_{t-1} + g_t, and multiply the whole
    velocity by *today's* rate: eta_t v_t = eta_t sum_s gamma^(t-s) g_s. At a constant rate the
    two are the same sum. When the schedule drops 10x at step 5, optax rescales every past
    gradient by the new rate at once and slows down immediately, while ours keeps coasting on the
    velocity built at the old rate, which then decays by gamma per step.

    So: the first update is identical (both use schedule(0) on g_0 alone), updates agree up to
    step 4 (the rate has been constant so far), differ from step 5 on, and each implementation
    matches its own closed form computed in NumPy.
    """
    grads, params = _gradients(seed=5), _params()
    make = jl.nag if nesterov else jl.momentum
    ours, peer = _run_together(
        [
            make(STEP_SCHEDULE, momentum=GAMMA),
            optax.sgd(STEP_SCHEDULE, momentum=GAMMA, nesterov=nesterov),
        ],
        grads,
        params,
    )

    eta = np.array([float(STEP_SCHEDULE(t)) for t in range(NUM_STEPS)])
    assert eta[DROP_AT - 1] == pytest.approx(10 * eta[DROP_AT])
    ours_ref, peer_ref = _closed_forms(np.stack([_flat(g) for g in grads]), eta, GAMMA, nesterov)

    # Each implementation is its own closed form.
    _assert_same_updates(ours, ours_ref, cancellation=True)
    _assert_same_updates(peer, peer_ref, cancellation=True)

    # The first update is identical: both are eta_0 g_0 (NAG: (1 + gamma) eta_0 g_0), bit for bit
    # for momentum, and for NAG up to the order of the two roundings, with no cancellation at all.
    if nesterov:
        np.testing.assert_allclose(ours[0], peer[0], rtol=RTOL, atol=0)
    else:
        np.testing.assert_array_equal(ours[0], peer[0])
    # Before the drop the rate has been constant: the same updates.
    _assert_same_updates(ours[:DROP_AT], peer[:DROP_AT], cancellation=True)

    # From the drop on they differ by a measurable amount, far above rounding: observed 45% to 800%
    # of optax's update (asserted: more than 10%), against below 1e-7 before the drop.
    gap = np.linalg.norm(ours - peer, axis=1)
    relative_gap = gap / np.linalg.norm(peer, axis=1)
    assert np.all(relative_gap[:DROP_AT] < 1e-5)
    assert np.all(relative_gap[DROP_AT:] > 0.1)
    # Right at the drop ours is still coasting on the old rate: several times larger than optax's.
    assert np.linalg.norm(ours[DROP_AT]) > 3 * np.linalg.norm(peer[DROP_AT])
    # The gap is the memory of the old rate: for t >= 5 it is a fixed vector,
    # sum_{s<5} gamma^(t-s) (eta_s - eta_t) g_s (times gamma for NAG), so it fades by exactly
    # gamma per step.
    decay = GAMMA ** np.arange(NUM_STEPS - DROP_AT)
    np.testing.assert_allclose(gap[DROP_AT:], gap[DROP_AT] * decay, rtol=1e-5)


@pytest.mark.parametrize("nesterov", [False, True], ids=["momentum", "nag"])
def test_constant_schedule_agrees_with_optax(nesterov: bool) -> None:
    """A schedule that never changes: both conventions are the same sum again."""

    def constant(count: jax.Array) -> float:
        del count
        return 0.05

    grads, params = _gradients(), _params()
    make = jl.nag if nesterov else jl.momentum
    ours, peer, ours_number = _run_together(
        [
            make(constant, momentum=GAMMA),
            optax.sgd(constant, momentum=GAMMA, nesterov=nesterov),
            make(0.05, momentum=GAMMA),
        ],
        grads,
        params,
    )
    _assert_same_updates(ours, peer, cancellation=True)
    # and it is the same as passing the number itself.
    _assert_same_updates(ours, ours_number, cancellation=True)


# --- AdaDelta's sign --------------------------------------------------------------------------


def test_adadelta_default_descends_where_optax_default_climbs() -> None:
    """``jl.adadelta()`` descends a quadratic; ``optax.adadelta()`` climbs it.

    optax 0.2.8's ``adadelta(learning_rate=None)`` makes ``scale_by_learning_rate(None)`` the
    identity, so the descent sign is never applied and the parameters move *along* the gradient:
    the loss grows. Ours defaults to Zeiler's eta = 1 and always applies the sign. The first
    updates are negatives of each other (to the rounding noted in PAIRS): the same direction,
    only the sign differs.
    """

    def loss(p: Any) -> Any:
        """Half the squared norm of a tree of JAX or NumPy arrays."""
        return 0.5 * sum((x**2).sum() for x in jax.tree.leaves(p))

    params0 = to_f32(random_tree(np.random.default_rng(7)))
    loss0 = float(loss(jax.device_get(params0)))
    txs = [jl.adadelta(), optax.adadelta()]

    @jax.jit
    def step(params: list[Any], states: list[Any]) -> tuple[list[Any], list[Any], list[Any]]:
        """One step of each of ``txs``, on its own parameters."""
        out = [
            tx.update(jax.grad(loss)(p), state, p)
            for tx, p, state in zip(txs, params, states, strict=True)
        ]
        updates = [u for u, _ in out]
        new_params = [optax.apply_updates(p, u) for p, u in zip(params, updates, strict=True)]
        return new_params, [state for _, state in out], updates

    params, states = [params0, params0], [tx.init(params0) for tx in txs]
    first = None
    for _ in range(50):
        params, states, updates = step(params, states)
        first = updates if first is None else first
    ours_first, optax_first = first
    ours_loss, optax_loss = (float(loss(p)) for p in jax.device_get(params))

    np.testing.assert_allclose(_flat(ours_first), -_flat(optax_first), rtol=2e-6, atol=0)
    # (observed: 17.0 at the start, 12.6 for ours, 31.7 for optax's)
    assert ours_loss < 0.9 * loss0
    assert optax_loss > 1.1 * loss0


# --- optax's arguments give optax's numbers ---------------------------------------------------

# Every argument a building block shares with its optax namesake, away from its default, and the
# aliases' optax arguments (default layout only: packing is covered by PAIRS above).
ARGUMENT_PAIRS: dict[str, tuple[Factory, Factory, bool]] = {
    "trace_decay_1": (lambda: jl.trace(1.0), lambda: optax.trace(1.0), True),
    "trace_accumulator_dtype": (
        lambda: jl.trace(0.5, nesterov=True, accumulator_dtype=jnp.float32),
        lambda: optax.trace(0.5, nesterov=True, accumulator_dtype=jnp.float32),
        True,
    ),
    "scale_by_rms_default": (jl.scale_by_rms, optax.scale_by_rms, False),
    "scale_by_rms_all_arguments": (
        lambda: jl.scale_by_rms(0.95, 1e-6, initial_scale=0.1, bias_correction=True),
        lambda: optax.scale_by_rms(0.95, 1e-6, initial_scale=0.1, bias_correction=True),
        False,
    ),
    "scale_by_rms_eps_outside_bias_corrected": (
        lambda: jl.scale_by_rms(0.9, 1e-4, eps_in_sqrt=False, bias_correction=True),
        lambda: optax.scale_by_rms(0.9, 1e-4, eps_in_sqrt=False, bias_correction=True),
        False,
    ),
    # scale_by_stddev without bias correction (with it: CENTERED_BIAS_CORRECTED below); eps =
    # 1e-4 against gradients of size 1 moves the updates by about 1e-4.
    "scale_by_stddev_default": (jl.scale_by_stddev, optax.scale_by_stddev, False),
    "scale_by_stddev_initial_scale": (
        lambda: jl.scale_by_stddev(0.95, 1e-4, initial_scale=0.1),
        lambda: optax.scale_by_stddev(0.95, 1e-4, initial_scale=0.1),
        False,
    ),
    "scale_by_stddev_eps_outside": (
        lambda: jl.scale_by_stddev(0.8, 1e-4, initial_scale=0.5, eps_in_sqrt=False),
        lambda: optax.scale_by_stddev(0.8, 1e-4, initial_scale=0.5, eps_in_sqrt=False),
        False,
    ),
    "scale_by_adam_eps_root_nesterov": (
        lambda: jl.scale_by_adam(0.8, 0.99, 1e-6, eps_root=1e-8, nesterov=True),
        lambda: optax.scale_by_adam(0.8, 0.99, 1e-6, eps_root=1e-8, nesterov=True),
        True,
    ),
    "scale_by_learning_rate_no_flip": (
        lambda: jl.scale_by_learning_rate(0.1, flip_sign=False),
        lambda: optax.scale_by_learning_rate(0.1, flip_sign=False),
        False,
    ),
    "scale_by_learning_rate_none": (
        jl.scale_by_learning_rate,
        optax.scale_by_learning_rate,
        False,
    ),
    "sgd_momentum_schedule": (
        lambda: jl.sgd(STEP_SCHEDULE, momentum=GAMMA, nesterov=True),
        lambda: optax.sgd(STEP_SCHEDULE, momentum=GAMMA, nesterov=True),
        True,
    ),
    "rmsprop_optax_arguments": (
        lambda: jl.rmsprop(
            0.01, 0.95, 1e-6, initial_scale=0.1, momentum=0.9, nesterov=True, bias_correction=True
        ),
        lambda: optax.rmsprop(
            0.01,
            0.95,
            1e-6,
            initial_scale=0.1,
            eps_in_sqrt=False,
            momentum=0.9,
            nesterov=True,
            bias_correction=True,
        ),
        True,
    ),
    "rmsprop_eps_in_sqrt": (
        lambda: jl.rmsprop(0.01, eps_in_sqrt=True),
        lambda: optax.rmsprop(0.01),
        False,
    ),
    "rmsprop_centered_optax_arguments": (
        lambda: jl.rmsprop(
            0.01, 0.95, 1e-6, initial_scale=0.1, centered=True, momentum=0.9, nesterov=True
        ),
        lambda: optax.rmsprop(
            0.01,
            0.95,
            1e-6,
            initial_scale=0.1,
            eps_in_sqrt=False,
            centered=True,
            momentum=0.9,
            nesterov=True,
        ),
        True,
    ),
    "rmsprop_centered_eps_in_sqrt": (
        lambda: jl.rmsprop(0.01, eps=1e-4, eps_in_sqrt=True, centered=True),
        lambda: optax.rmsprop(0.01, eps=1e-4, centered=True),
        False,
    ),
    "adam_optax_arguments": (
        lambda: jl.adam(0.01, 0.8, 0.99, 1e-6, eps_root=1e-8, nesterov=True),
        lambda: optax.adam(0.01, 0.8, 0.99, 1e-6, eps_root=1e-8, nesterov=True),
        True,
    ),
    "adagrad_optax_defaults": (
        lambda: jl.adagrad(0.1, initial_accumulator_value=0.1, eps=0.0),
        lambda: optax.adagrad(0.1, initial_accumulator_value=0.1, eps=0.0),
        False,
    ),
}


def test_optax_arguments_give_optax_numbers() -> None:
    """Each of ours in ``ARGUMENT_PAIRS`` against its optax namesake at the same arguments, all of
    them side by side in one compiled step."""
    txs = [
        tx
        for make_ours, make_peer, _ in ARGUMENT_PAIRS.values()
        for tx in (make_ours(), make_peer())
    ]
    runs = _run_together(txs, _gradients(), _params())
    updates = {name: (runs[2 * i], runs[2 * i + 1]) for i, name in enumerate(ARGUMENT_PAIRS)}

    def check(name: str) -> None:
        ours, peer = updates[name]
        assert np.all(np.isfinite(ours))
        _assert_same_updates(ours, peer, rtol=RTOL, cancellation=ARGUMENT_PAIRS[name][2])

    check_each(sorted(ARGUMENT_PAIRS), check)


# The building blocks that share a name with optax: every optax argument exists here, with the
# same kind (positional or keyword-only), position and default.
SHARED_NAMES = ["scale_by_adam", "scale_by_rms", "scale_by_stddev", "scale_by_adadelta", "trace"]
SHARED_NAMES += ["scale_by_learning_rate", "sgd"]


@pytest.mark.parametrize("name", SHARED_NAMES)
def test_optax_names_take_optax_arguments_and_defaults(name: str) -> None:
    ours = inspect.signature(getattr(jl, name)).parameters
    theirs = inspect.signature(getattr(optax, name)).parameters
    for position, (arg, spec) in enumerate(theirs.items()):
        assert arg in ours, f"{name}: optax's argument {arg!r} is missing"
        assert ours[arg].kind == spec.kind, (name, arg)
        assert ours[arg].default == spec.default, (name, arg, ours[arg].default, spec.default)
        if spec.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD:
            assert list(ours).index(arg) == position, (name, arg)


@pytest.mark.parametrize("name", ["adam", "rmsprop", "adagrad", "adadelta"])
def test_aliases_take_optax_argument_names(name: str) -> None:
    """The aliases keep their lecture/PyTorch defaults, under optax's argument names."""
    ours = inspect.signature(getattr(jl, name)).parameters
    theirs = inspect.signature(getattr(optax, name)).parameters
    # optax-only features not offered here (documented in docs/optax-compatibility.md).
    not_offered = {"weight_decay", "weight_decay_mask"}
    for position, arg in enumerate(theirs):
        if arg in not_offered:
            continue
        assert arg in ours, f"{name}: optax's argument {arg!r} is missing"
        if theirs[arg].kind == inspect.Parameter.POSITIONAL_OR_KEYWORD:
            assert list(ours).index(arg) == position, (name, arg)
            assert ours[arg].kind == inspect.Parameter.POSITIONAL_OR_KEYWORD, (name, arg)


# --- complex and integer parameters ---------------------------------------------------------

COMPLEX_PAIRS: dict[str, tuple[Factory, Factory]] = {
    "trace": (lambda: jl.trace(0.9, nesterov=True), lambda: optax.trace(0.9, nesterov=True)),
    "sgd_momentum": (lambda: jl.sgd(0.1, momentum=0.9), lambda: optax.sgd(0.1, momentum=0.9)),
    "momentum": (lambda: jl.momentum(0.1, momentum=0.9), lambda: optax.sgd(0.1, momentum=0.9)),
    "nag": (
        lambda: jl.nag(0.1, momentum=0.9),
        lambda: optax.sgd(0.1, momentum=0.9, nesterov=True),
    ),
    "scale_by_adam": (
        lambda: jl.scale_by_adam(nesterov=True),
        lambda: optax.scale_by_adam(nesterov=True),
    ),
    "adam": (lambda: jl.adam(0.1), lambda: optax.adam(0.1)),
    "scale_by_rms": (jl.scale_by_rms, optax.scale_by_rms),
    "rmsprop": (
        lambda: jl.rmsprop(0.01, momentum=0.9),
        lambda: optax.rmsprop(0.01, eps_in_sqrt=False, momentum=0.9),
    ),
    "scale_by_stddev": (
        lambda: jl.scale_by_stddev(bias_correction=True),
        lambda: optax.scale_by_stddev(bias_correction=True),
    ),
    "rmsprop_centered": (
        lambda: jl.rmsprop(0.01, centered=True, momentum=0.9),
        lambda: optax.rmsprop(0.01, eps_in_sqrt=False, centered=True, momentum=0.9),
    ),
    "adagrad": (
        lambda: jl.adagrad(0.1, initial_accumulator_value=0.1, eps=0.0),
        lambda: optax.adagrad(0.1, initial_accumulator_value=0.1, eps=0.0),
    ),
    "scale_by_learning_rate": (
        lambda: jl.scale_by_learning_rate(0.1),
        lambda: optax.scale_by_learning_rate(0.1),
    ),
}


def test_complex_gradients_give_optax_numbers() -> None:
    """|g|^2 = g conj(g), not g * g: optax's numbers on complex64 gradients (issue seen: Adam
    ended at 1 - 2.67j instead of 1 + 1j on optax's complex parabola). Every pair of
    ``COMPLEX_PAIRS`` runs side by side in one compiled step."""
    rng = np.random.default_rng(5)
    params = (rng.standard_normal(6) + 1j * rng.standard_normal(6)).astype(np.complex64)
    grads = [
        (rng.standard_normal(6) + 1j * rng.standard_normal(6)).astype(np.complex64)
        for _ in range(10)
    ]
    txs = [
        tx for make_ours, make_peer in COMPLEX_PAIRS.values() for tx in (make_ours(), make_peer())
    ]
    # _updates_together checks that every update is complex64, the gradients' dtype.
    runs = [np.stack(run) for run in _updates_together(txs, grads, params)]
    updates = {name: (runs[2 * i], runs[2 * i + 1]) for i, name in enumerate(COMPLEX_PAIRS)}

    def check(name: str) -> None:
        ours, peer = updates[name]
        np.testing.assert_allclose(ours, peer, rtol=2e-6, atol=2e-6 * np.abs(peer).max())

    check_each(sorted(COMPLEX_PAIRS), check)


@pytest.mark.parametrize(
    ("ours", "peer"),
    [
        (lambda: jl.sgd(0.1), lambda: optax.sgd(0.1)),
        (lambda: jl.sgd(0.1, momentum=0.9), lambda: optax.sgd(0.1, momentum=0.9)),
        (lambda: jl.momentum(0.1, momentum=0.9), lambda: optax.sgd(0.1, momentum=0.9)),
        (lambda: jl.adam(0.1), lambda: optax.adam(0.1)),
        (lambda: jl.rmsprop(0.1), lambda: optax.rmsprop(0.1, eps_in_sqrt=False)),
        (lambda: jl.scale_by_rms(), lambda: optax.scale_by_rms()),
        (lambda: jl.scale_by_stddev(), lambda: optax.scale_by_stddev()),
        (
            lambda: jl.rmsprop(0.1, centered=True),
            lambda: optax.rmsprop(0.1, eps_in_sqrt=False, centered=True),
        ),
    ],
    ids=[
        "sgd",
        "sgd_momentum",
        "momentum",
        "adam",
        "rmsprop",
        "scale_by_rms",
        "scale_by_stddev",
        "rmsprop_centered",
    ],
)
def test_integer_parameters_get_optax_float_updates(ours: Factory, peer: Factory) -> None:
    """optax's behaviour for integer parameters: ``-lr * g`` is a float update (then
    ``optax.apply_updates`` casts the sum back to the parameters' integers). Compared on the first
    step: after it optax's own integer state truncates its moving averages (ours keeps them in
    float32, the compute dtype)."""
    params = np.array([3, -2, 5], np.int32)
    grads = np.array([2, -1, 4], np.int32)
    tx, peer_tx = ours(), peer()

    @jax.jit
    def first_updates() -> tuple[jax.Array, Any, jax.Array]:
        """Ours (with its new state) and optax's first update."""
        got, state = tx.update(grads, tx.init(params), params)
        return got, state, peer_tx.update(grads, peer_tx.init(params), params)[0]

    got, state, expected = first_updates()
    assert got.dtype == expected.dtype == jnp.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert all(jnp.issubdtype(x.dtype, jnp.inexact) for x in jax.tree.leaves(state) if x.ndim)


# --- centered RMSprop with bias correction: optax's numbers to the problem's conditioning -------

# (ours, optax's, scale, decay, eps, eps_in_sqrt), with ``scale`` the factor on the direction
# (1 for a block, -learning_rate for an alias): both blocks and both aliases, eps on either side.
CENTERED_BIAS_CORRECTED: dict[str, tuple[Factory, Factory, float, float, float, bool]] = {
    "scale_by_stddev": (
        lambda: jl.scale_by_stddev(0.9, 1e-4, bias_correction=True),
        lambda: optax.scale_by_stddev(0.9, 1e-4, bias_correction=True),
        1.0,
        0.9,
        1e-4,
        True,
    ),
    "scale_by_stddev_eps_outside": (
        lambda: jl.scale_by_stddev(0.8, 1e-4, eps_in_sqrt=False, bias_correction=True),
        lambda: optax.scale_by_stddev(0.8, 1e-4, eps_in_sqrt=False, bias_correction=True),
        1.0,
        0.8,
        1e-4,
        False,
    ),
    "rmsprop_centered": (
        lambda: jl.rmsprop(0.01, 0.9, 1e-8, centered=True, bias_correction=True),
        lambda: optax.rmsprop(
            0.01, 0.9, 1e-8, eps_in_sqrt=False, centered=True, bias_correction=True
        ),
        -0.01,
        0.9,
        1e-8,
        False,
    ),
    "rmsprop_centered_eps_in_sqrt": (
        lambda: jl.rmsprop(0.01, 0.95, 1e-8, eps_in_sqrt=True, centered=True, bias_correction=True),
        lambda: optax.rmsprop(0.01, 0.95, 1e-8, centered=True, bias_correction=True),
        -0.01,
        0.95,
        1e-8,
        True,
    ),
}


@pytest.mark.parametrize("name", sorted(CENTERED_BIAS_CORRECTED))
def test_centered_bias_corrected_gives_optax_numbers(name: str) -> None:
    """Bias-corrected centered RMSprop against optax, entry by entry, to the rounding that the
    variance estimate itself allows.

    With bias correction the estimate nu_hat - mu_hat^2 is the weighted variance of the gradients
    seen so far: exactly 0 after the first step and, after a few steps, the difference of two
    numbers of size nu_hat that can nearly cancel. A rounding error of a few float32 ulps of
    nu_hat (delta) then moves the update by about delta / (2 (var + eps)) relative (eps inside
    the root) or delta / (2 sqrt(var) (sqrt(var) + eps)) (outside), which is far above 1e-6 where
    the last gradients happened to be close. The tolerance of each entry is RTOL plus that bound,
    computed in float64 from the same gradients (a wrong decay, correction or eps still misses by
    orders of magnitude more: checked below). Where the bound is infinite (eps outside the root
    and a variance of exactly 0, i.e. the first step) both results are rounding noise and only
    finiteness and the zero-variance bound |g| / eps are asserted.
    """
    make_ours, make_peer, scale, decay, eps, eps_in_sqrt = CENTERED_BIAS_CORRECTED[name]
    grads, params = _gradients(), _params()
    off_tx = optax.scale_by_stddev(  # optax at a 1% different decay, checked at the end
        decay * 0.99, eps, eps_in_sqrt=eps_in_sqrt, bias_correction=True
    )
    ours, peer, off = _run_together([make_ours(), make_peer(), off_tx], grads, params)
    assert np.all(np.isfinite(ours))

    G = np.stack([_flat(g) for g in grads])  # (steps, entries), float64
    t = np.arange(1, NUM_STEPS + 1)[:, None]
    weights = (1 - decay) * decay ** (t - 1 - np.arange(NUM_STEPS)[None, :])  # w[t, s]
    weights = np.tril(weights)
    correction = 1 - decay**t  # (steps, 1)
    mu_hat = weights @ G / correction
    nu_hat = weights @ G**2 / correction
    var = np.maximum(nu_hat - mu_hat**2, 0.0)
    delta = 8 * np.finfo(np.float32).eps * nu_hat  # a few ulps of the terms that cancel
    with np.errstate(divide="ignore"):
        if eps_in_sqrt:
            sensitivity = delta / (2 * (var + eps))
            expected = scale * G / np.sqrt(var + eps)
        else:
            sensitivity = delta / (2 * np.sqrt(var) * (np.sqrt(var) + eps))
            expected = scale * G / (np.sqrt(var) + eps)
    tolerance = RTOL + sensitivity
    finite = np.isfinite(tolerance)
    assert finite[1:].all()  # only the first step has a variance of exactly 0
    np.testing.assert_array_less(
        np.abs(ours - peer)[finite], (tolerance * np.abs(peer))[finite] + 1e-30
    )
    # The float64 formula itself, to the same tolerance: the bound is about the arithmetic only.
    np.testing.assert_array_less(
        np.abs(ours - expected)[finite], (2 * tolerance * np.abs(expected))[finite] + 1e-30
    )
    bound = abs(scale) * np.abs(G) / (np.sqrt(eps) if eps_in_sqrt else eps)
    assert np.all(np.abs(ours) <= bound * (1 + 1e-6))
    # The comparison can fail: optax at a 1% different decay is far outside the tolerance.
    assert np.mean(np.abs(scale * off - peer)[finite] > (tolerance * np.abs(peer))[finite]) > 0.5


# --- centered RMSprop: the variance estimate is clamped at 0 ------------------------------------


@pytest.mark.parametrize("eps_in_sqrt", [True, False])
def test_centered_variance_rounding_below_zero_gives_no_nan(eps_in_sqrt: bool) -> None:
    """A constant gradient with bias correction: mu_hat = g and nu_hat = g^2 exactly in exact
    arithmetic, so the variance estimate nu_hat - mu_hat^2 is 0 and rounds to either side of it.

    optax 0.2.8 takes the root of the negative roundings and returns NaN (observed from step 7 on,
    for this gradient); ours clamps the estimate at 0, so every update is finite and bounded by
    the zero-variance value |g| / sqrt(eps) (or |g| / eps with eps outside the root). The values
    themselves are rounding noise in both libraries (the variance is 0), so they are not compared.
    """
    eps = 1e-8
    g = np.array([0.3, 1.7, 1e3, 0.1, -2.5, 7.0], np.float32)
    kwargs = {"eps_in_sqrt": eps_in_sqrt, "bias_correction": True}
    txs = [jl.scale_by_stddev(0.9, eps, **kwargs), optax.scale_by_stddev(0.9, eps, **kwargs)]
    ours, peer = _run_together(txs, [g] * NUM_STEPS, g)  # a constant gradient
    assert not np.all(np.isfinite(peer))  # optax's NaN: the case is real
    assert np.all(np.isfinite(ours))
    bound = np.abs(np.asarray(g, np.float64)) / (np.sqrt(eps) if eps_in_sqrt else eps)
    assert np.all(np.abs(ours) <= bound * (1 + 1e-6))
    assert np.all(np.sign(ours) == np.sign(np.asarray(g)))


def test_centered_differs_from_plain_rmsprop() -> None:
    """``centered=True`` is not silently ignored: dividing by the standard deviation rather than
    the root mean square makes every nonzero update larger in magnitude (var <= nu)."""
    grads, params = _gradients(), _params()
    plain, centered = _run_together(
        [jl.rmsprop(0.01), jl.rmsprop(0.01, centered=True)], grads, params
    )
    nonzero = plain != 0
    assert np.all(np.abs(centered[nonzero]) >= np.abs(plain[nonzero]) * (1 - RTOL))
    assert np.median(np.abs(centered[nonzero]) / np.abs(plain[nonzero])) > 1.01
