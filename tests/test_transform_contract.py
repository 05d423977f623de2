"""The optax contract every transform keeps: jit without recompiling, extra keyword arguments,
``inject_hyperparams``, dtypes, validation, clear tree errors, and bit-exact checkpoints."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

import chex
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import ALIASES, Wrap, enable_x64, random_gradients, to_f32, tree_of
from hypothesis import given, settings

import jaxopt_lectures as jl

PARAMS = tree_of(lambda shape: jnp.ones(shape, jnp.float32))

# Each alias with its hyperparameters spelled out, for inject_hyperparams and the validation tests.
ALIAS_KWARGS: dict[str, tuple[Callable[..., optax.GradientTransformation], dict[str, Any]]] = {
    "sgd": (jl.sgd, {"learning_rate": 0.1}),
    "momentum": (jl.momentum, {"learning_rate": 0.05, "momentum": 0.8}),
    "nag": (jl.nag, {"learning_rate": 0.05, "momentum": 0.8}),
    "adagrad": (jl.adagrad, {"learning_rate": 0.1, "eps": 1e-3, "initial_accumulator_value": 0.1}),
    "rmsprop": (jl.rmsprop, {"learning_rate": 0.01, "decay": 0.8, "eps": 1e-4}),
    "adadelta": (jl.adadelta, {"learning_rate": 0.5, "rho": 0.8, "eps": 1e-4}),
    "adam": (jl.adam, {"learning_rate": 0.01, "b1": 0.8, "b2": 0.99, "eps": 1e-4}),
}

BUILDING_BLOCKS: dict[str, Callable[[], optax.GradientTransformation]] = {
    "scale_by_learning_rate": lambda: jl.scale_by_learning_rate(0.1),
    "trace": lambda: jl.trace(0.9),
    "trace_nesterov": lambda: jl.trace(0.9, nesterov=True),
    "scale_by_adagrad": jl.scale_by_adagrad,
    "scale_by_rms": jl.scale_by_rms,
    "scale_by_stddev": jl.scale_by_stddev,
    "scale_by_adadelta": jl.scale_by_adadelta,
    "scale_by_adam": jl.scale_by_adam,
}


def run_steps_together(txs: list[optax.GradientTransformation], grads: list[Any]) -> list[Any]:
    """Apply every transform of ``txs`` to a list of gradient trees, one jitted step of all of
    them per gradient (one compiled program for all); for each, its updates and final state."""

    @jax.jit
    def step(g: Any, states: list[Any]) -> tuple[list[Any], list[Any]]:
        out = [tx.update(g, state) for tx, state in zip(txs, states, strict=True)]
        return [u for u, _ in out], [state for _, state in out]

    states = [tx.init(PARAMS) for tx in txs]
    all_updates: list[list[Any]] = [[] for _ in txs]
    for g in grads:
        updates, states = step(to_f32(g), states)
        for run, u in zip(all_updates, updates, strict=True):
            run.append(u)
    return list(zip(all_updates, states, strict=True))


# --- jit: one compilation, extra arguments ------------------------------------------------------


def test_second_update_does_not_recompile(layout: Wrap, alias_name: str) -> None:
    tx = layout(ALIASES[alias_name]())
    traces = 0

    def step(params: Any, state: Any, grads: Any) -> Any:
        nonlocal traces
        traces += 1
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    jitted = jax.jit(step)
    params, state = PARAMS, tx.init(PARAMS)
    for g in random_gradients(0, 4):
        params, state = jitted(params, state, to_f32(g))
    assert traces == 1


def test_schedule_does_not_recompile() -> None:
    tx = jl.momentum(jl.inverse_time_decay(0.1, 0.5, 10))
    traces = 0

    def step(state: Any, grads: Any) -> Any:
        nonlocal traces
        traces += 1
        return tx.update(grads, state)

    jitted = jax.jit(step)
    state = tx.init(PARAMS)
    for g in random_gradients(1, 3):
        _, state = jitted(state, to_f32(g))
    assert traces == 1
    assert int(state[0].count) == 3


def test_building_blocks_accept_unknown_extra_args() -> None:
    """Every building block gives the same update with unknown extra keyword arguments as
    without; all of them in one compiled function."""
    txs = {name: make() for name, make in BUILDING_BLOCKS.items()}
    g = to_f32(random_gradients(2, 1)[0])

    @jax.jit
    def plain_and_extra(g: Any) -> dict[str, tuple[Any, Any]]:
        """For each block, the update without and with extra keyword arguments."""
        out = {}
        for name, tx in txs.items():
            plain, _ = tx.update(g, tx.init(PARAMS), PARAMS)
            extra, _ = tx.update(g, tx.init(PARAMS), PARAMS, value_fn=jnp.sum, step_id=3)
            out[name] = (plain, extra)
        return out

    for name, (plain, extra) in plain_and_extra(g).items():
        chex.assert_trees_all_close(plain, extra, custom_message=name)


def test_aliases_accept_unknown_extra_args() -> None:
    """Every alias accepts unknown extra keyword arguments, alone and inside an optax chain that
    forwards its extra arguments to every member; all of them in one compiled function."""
    txs = {name: make() for name, make in ALIASES.items()}
    chained = {name: optax.chain(optax.clip_by_global_norm(1.0), tx) for name, tx in txs.items()}
    g = to_f32(random_gradients(3, 1)[0])

    @jax.jit
    def alone_and_chained(g: Any) -> dict[str, tuple[Any, Any]]:
        """For each alias, the update with extra keyword arguments, alone and in the chain."""
        out = {}
        for name, tx in txs.items():
            alone, _ = tx.update(g, tx.init(PARAMS), PARAMS, value_fn=jnp.sum, anything="goes")
            chain = chained[name]
            in_chain, _ = chain.update(g, chain.init(PARAMS), PARAMS, value_fn=jnp.sum)
            out[name] = (alone, in_chain)
        return out

    for name, (alone, in_chain) in alone_and_chained(g).items():
        chex.assert_tree_all_finite(alone, custom_message=name)
        chex.assert_tree_all_finite(in_chain, custom_message=name)


# --- optax.inject_hyperparams ------------------------------------------------------------------


def test_inject_hyperparams_identical() -> None:
    """Each alias wrapped in ``optax.inject_hyperparams`` gives the alias's updates and exposes
    its hyperparameters; all the aliases and their wrapped copies run in one compiled step."""
    names = sorted(ALIAS_KWARGS)
    txs = []
    for name in names:
        factory, kwargs = ALIAS_KWARGS[name]
        txs += [factory(**kwargs), optax.inject_hyperparams(factory)(**kwargs)]
    runs = run_steps_together(txs, random_gradients(4, 12))
    for i, name in enumerate(names):
        (expected, _), (got, state) = runs[2 * i], runs[2 * i + 1]
        chex.assert_trees_all_close(got, expected, rtol=1e-6, atol=1e-7, custom_message=name)
        assert set(ALIAS_KWARGS[name][1]) <= set(state.hyperparams), name


def test_inject_hyperparams_with_schedule() -> None:
    """inject_hyperparams evaluates the schedule itself and rebuilds the alias with that constant
    rate every step; momentum's velocity still carries each past rate, so the results agree.
    All the aliases and their wrapped copies run in one compiled step."""
    names = sorted(ALIAS_KWARGS)
    txs = []
    for name in names:
        factory, kwargs = ALIAS_KWARGS[name]
        schedule = jl.inverse_time_decay(kwargs["learning_rate"], 0.5, 2)
        kwargs = {**kwargs, "learning_rate": schedule}
        txs += [factory(**kwargs), optax.inject_hyperparams(factory)(**kwargs)]
    runs = run_steps_together(txs, random_gradients(5, 8))
    for i, name in enumerate(names):
        (expected, _), (got, _) = runs[2 * i], runs[2 * i + 1]
        chex.assert_trees_all_close(got, expected, rtol=1e-6, atol=1e-7, custom_message=name)


def test_inject_hyperparams_rate_can_be_changed_between_steps() -> None:
    tx = optax.inject_hyperparams(jl.adam)(learning_rate=0.1)
    state = tx.init(PARAMS)
    state.hyperparams["learning_rate"] = jnp.asarray(0.0)
    g = to_f32(random_gradients(6, 1)[0])
    updates, _ = jax.jit(tx.update)(g, state)
    chex.assert_trees_all_equal(updates, jax.tree.map(jnp.zeros_like, updates))


# --- dtypes ------------------------------------------------------------------------------------


def test_bf16_params_stay_bf16() -> None:
    """Every alias on bf16 parameters and gradients keeps bf16 parameters and state and follows
    its float32 trajectory; all the aliases, in both dtypes, run in one compiled step."""
    txs = {name: make() for name, make in ALIASES.items()}
    ref_txs = {name: make() for name, make in ALIASES.items()}
    params16 = jax.tree.map(lambda p: p.astype(jnp.bfloat16), PARAMS)

    @jax.jit
    def step(carry: dict[str, Any], g32: Any) -> dict[str, Any]:
        """One step of each alias on the bf16 parameters (bf16 gradients) and on the float32
        ones."""
        g16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), g32)
        out = {}
        for name, tx in txs.items():
            params, state, ref_params, ref_state = carry[name]
            updates, state = tx.update(g16, state)
            ref_updates, ref_state = ref_txs[name].update(g32, ref_state)
            out[name] = (
                optax.apply_updates(params, updates),
                state,
                optax.apply_updates(ref_params, ref_updates),
                ref_state,
            )
        return out

    carry = {
        name: (params16, tx.init(params16), PARAMS, ref_txs[name].init(PARAMS))
        for name, tx in txs.items()
    }
    for g in random_gradients(7, 5):
        carry = step(carry, to_f32(g))
    for name, (params, state, ref_params, _) in carry.items():
        chex.assert_trees_all_equal_dtypes(params, params16, custom_message=name)
        for leaf in jax.tree.leaves(state):
            if jnp.issubdtype(leaf.dtype, jnp.floating):
                assert leaf.dtype == jnp.bfloat16, name
        params = jax.device_get(params)
        chex.assert_tree_all_finite(params, custom_message=name)
        # bf16 has 8 bits of mantissa: the trajectory follows the float32 one to about 1%.
        chex.assert_trees_all_close(
            jax.tree.map(lambda p: p.astype(np.float32), params),
            ref_params,
            rtol=2e-2,
            atol=2e-2,
            custom_message=name,
        )


def test_accumulator_dtype_sets_state_dtype() -> None:
    """``accumulator_dtype=float32`` on bf16 parameters: float32 state, bf16 updates, for every
    alias that has state (all of them in one compiled function)."""
    factories = [jl.momentum, jl.nag, jl.adagrad, jl.rmsprop, jl.adadelta, jl.adam]
    txs = {f.__name__: f(0.1, accumulator_dtype=jnp.float32) for f in factories}
    params = jax.tree.map(lambda p: np.ones(p.shape, jnp.bfloat16), PARAMS)
    g = jax.tree.map(lambda p: np.full(p.shape, 0.5, jnp.bfloat16), params)
    out = jax.jit(lambda g: {n: tx.update(g, tx.init(params)) for n, tx in txs.items()})(g)
    for name, (updates, state) in out.items():
        chex.assert_trees_all_equal_dtypes(updates, g, custom_message=name)
        float_leaves = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)]
        assert float_leaves, name
        assert all(x.dtype == jnp.float32 for x in float_leaves), name


def test_float32_accumulators_keep_bf16_moving_averages_exact() -> None:
    """bf16 state cannot hold a slow EMA: 0.999 * nu rounds back to nu (bf16 keeps 8 bits), so
    the average stops decaying. ``accumulator_dtype=jnp.float32`` fixes that for bf16 models."""
    g = np.full(4, 0.01, jnp.bfloat16)
    grads = np.stack([g] * 20 + [np.zeros_like(g)] * 200)  # 220 steps, scanned

    def final_nu(params: jax.Array, accumulator_dtype: Any) -> jax.Array:
        tx = jl.scale_by_rms(decay=0.999, accumulator_dtype=accumulator_dtype)

        def step(state: Any, x: jax.Array) -> tuple[Any, None]:
            return tx.update(x.astype(params.dtype), state)[1], None

        state, _ = jax.lax.scan(step, tx.init(params), grads)
        return state.nu.astype(jnp.float32)

    @jax.jit
    def final_nus() -> tuple[jax.Array, jax.Array, jax.Array]:
        """The final average in float32, in float32 for bf16 parameters, and in bf16."""
        return (
            final_nu(jnp.ones(4, jnp.float32), None),
            final_nu(jnp.ones(4, jnp.bfloat16), jnp.float32),
            final_nu(jnp.ones(4, jnp.bfloat16), None),
        )

    exact, with_f32_state, with_bf16_state = jax.device_get(final_nus())
    np.testing.assert_allclose(with_f32_state, exact, rtol=1e-6)
    assert float(np.max(np.abs(with_bf16_state / exact - 1))) > 0.1


def test_float64_stays_float64() -> None:
    with enable_x64():
        params = jnp.ones(3, jnp.float64)
        tx = jl.adam(0.1)
        state = tx.init(params)
        updates, state = jax.jit(tx.update)(jnp.full(3, 0.3, jnp.float64), state)
        assert updates.dtype == jnp.float64
        assert state[0].mu.dtype == jnp.float64


# --- validation --------------------------------------------------------------------------------

BAD_VALUES: list[tuple[str, dict[str, Any], str]] = []
for _name, (_factory, _kwargs) in ALIAS_KWARGS.items():
    BAD_VALUES += [
        (_name, {**_kwargs, "learning_rate": -0.1}, "learning_rate"),
        (_name, {**_kwargs, "learning_rate": "0.1"}, "learning_rate"),
        (_name, {**_kwargs, "learning_rate": None}, "learning_rate"),
        (_name, {**_kwargs, "learning_rate": math.nan}, "learning_rate"),
        (_name, {**_kwargs, "learning_rate": True}, "learning_rate"),
        (_name, {**_kwargs, "learning_rate": np.ones(2)}, "learning_rate"),
    ]
    for _arg in ("momentum", "decay", "rho", "b1", "b2"):
        if _arg in _kwargs:
            BAD_VALUES += [
                (_name, {**_kwargs, _arg: 1.0}, _arg),
                (_name, {**_kwargs, _arg: -0.1}, _arg),
                (_name, {**_kwargs, _arg: "0.9"}, _arg),
                (_name, {**_kwargs, _arg: [0.9]}, _arg),
            ]
    if "eps" in _kwargs:
        BAD_VALUES += [
            (_name, {**_kwargs, "eps": -1e-8}, "eps"),
            (_name, {**_kwargs, "eps": math.inf}, "eps"),
            (_name, {**_kwargs, "eps": None}, "eps"),
        ]
    if _name != "sgd":
        BAD_VALUES += [(_name, {**_kwargs, "accumulator_dtype": jnp.int32}, "accumulator_dtype")]
BAD_VALUES += [
    ("adagrad", {"initial_accumulator_value": -1.0}, "initial_accumulator_value"),
    ("adadelta", {"eps": 0.0}, "eps"),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "argument"),
    BAD_VALUES,
    ids=[f"{n}-{a}-{k[a]!r}" for n, k, a in BAD_VALUES],
)
def test_bad_hyperparameters_raise(name: str, kwargs: dict[str, Any], argument: str) -> None:
    factory = ALIAS_KWARGS[name][0]
    with pytest.raises(ValueError, match=argument):
        factory(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"init_value": -1.0, "decay_rate": 1.0, "decay_steps": 10}, "init_value"),
        ({"init_value": 1.0, "decay_rate": -1.0, "decay_steps": 10}, "decay_rate"),
        ({"init_value": 1.0, "decay_rate": 1.0, "decay_steps": 0}, "decay_steps"),
        ({"init_value": 1.0, "decay_rate": 1.0, "decay_steps": 10, "staircase": 1}, "staircase"),
    ],
)
def test_bad_schedule_arguments_raise(kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        jl.inverse_time_decay(**kwargs)


def test_bad_trace_arguments_raise() -> None:
    with pytest.raises(ValueError, match="nesterov"):
        jl.trace(0.9, nesterov="yes")  # type: ignore[arg-type]


def test_error_message_names_the_range() -> None:
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\), got 1.5"):
        jl.momentum(0.1, momentum=1.5)
    with pytest.raises(ValueError, match=r"learning_rate must be >= 0, got -0.5"):
        jl.adam(-0.5)


@settings(max_examples=30, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_decay_validation_matches_its_range(value: float) -> None:
    if 0.0 <= value < 1.0:
        jl.rmsprop(0.1, decay=value)
    else:
        with pytest.raises(ValueError, match="decay"):
            jl.rmsprop(0.1, decay=value)


def test_valid_numpy_and_jax_hyperparameters_accepted() -> None:
    jl.adam(np.float32(0.1), b1=np.array(0.9))
    jl.momentum(jnp.asarray(0.1), momentum=jnp.asarray(0.9))
    jl.sgd(optax.cosine_decay_schedule(0.1, 100))
    jl.rmsprop(1)  # an int rate is a rate


@pytest.mark.parametrize("name", sorted(set(ALIASES) - {"sgd"}))
def test_mismatched_tree_structure_raises(name: str) -> None:
    tx = ALIASES[name]()
    state = tx.init({"a": jnp.ones(3), "b": jnp.ones(2)})
    with pytest.raises(ValueError, match="tree structure"):
        tx.update({"a": jnp.ones(3)}, state)
    with pytest.raises(ValueError, match=r"\['b'\] has shape \(3,\) but the optimizer state"):
        tx.update({"a": jnp.ones(3), "b": jnp.ones(3)}, state)


# --- composition with optax and failure modes --------------------------------------------------


def test_apply_if_finite_skips_nan_steps(layout: Wrap) -> None:
    """Every alias (in every layout) inside ``optax.apply_if_finite``: a step with a NaN gradient
    is skipped and counted, the inner state left as it was; all the aliases in one compiled
    function."""
    txs = {
        name: optax.apply_if_finite(layout(make()), max_consecutive_errors=3)
        for name, make in ALIASES.items()
    }
    g = to_f32(random_gradients(8, 1)[0])
    bad = jax.tree.map(lambda x: np.asarray(x).copy(), g)
    for x in jax.tree.leaves(bad):
        x[(0,) * x.ndim] = np.nan

    @jax.jit
    def good_then_bad(g: Any, bad: Any) -> dict[str, tuple[Any, Any, Any]]:
        """For each alias: a finite step, then a step with NaN gradients; the state between, the
        second step's updates and state."""
        out = {}
        for name, tx in txs.items():
            _, state = tx.update(g, tx.init(PARAMS))
            updates, new_state = tx.update(bad, state)
            out[name] = (state, updates, new_state)
        return out

    for name, (state, updates, new_state) in good_then_bad(g, bad).items():
        chex.assert_trees_all_equal(
            updates, jax.tree.map(np.zeros_like, updates), custom_message=name
        )
        chex.assert_trees_all_equal(new_state.inner_state, state.inner_state, custom_message=name)
        assert int(new_state.notfinite_count) == 1, name


def test_step_counter_saturates() -> None:
    tx = jl.sgd(jl.inverse_time_decay(0.1, 1.0, 1))
    tx_adam = jl.scale_by_adam()
    top = np.asarray(np.iinfo(np.int32).max, np.int32)
    ones = np.ones(2, np.float32)

    @jax.jit
    def steps_at_the_top(top: jax.Array) -> tuple[Any, Any, Any]:
        """One step of each transform from a step count of ``top``."""
        updates, state = tx.update(ones, jl.ScaleByLearningRateState(count=top))
        _, adam_state = tx_adam.update(ones, tx_adam.init(ones)._replace(count=top))
        return updates, state, adam_state

    updates, state, adam_state = steps_at_the_top(top)
    assert int(state.count) == np.iinfo(np.int32).max
    chex.assert_tree_all_finite(updates)
    assert int(adam_state.count) == np.iinfo(np.int32).max


# --- checkpoints -------------------------------------------------------------------------------


def save_state(state: Any) -> bytes:
    buffer = io.BytesIO()
    leaves = jax.tree.leaves(state)
    np.savez(buffer, *[np.asarray(x) for x in leaves])
    return buffer.getvalue()


def load_state(blob: bytes, like: Any) -> Any:
    with np.load(io.BytesIO(blob)) as data:
        leaves = [jnp.asarray(data[f"arr_{i}"]) for i in range(len(data.files))]
    return jax.tree.unflatten(jax.tree.structure(like), leaves)


@pytest.mark.parametrize("scheduled", [False, True], ids=["constant", "schedule"])
def test_checkpoint_resume_is_bit_identical(scheduled: bool) -> None:
    """Every alias, saved to bytes after 10 steps and loaded again, continues bit for bit as the
    uninterrupted run (the states of all aliases are one tree, stepped by one compiled step)."""
    lr = jl.inverse_time_decay(0.05, 0.3, 2) if scheduled else 0.05
    txs = {name: make(lr) for name, make in ALIASES.items()}
    grads = [to_f32(g) for g in random_gradients(9, 20)]

    @jax.jit
    def step(carry: dict[str, Any], g: Any) -> dict[str, Any]:
        out = {}
        for name, tx in txs.items():
            params, state = carry[name]
            updates, state = tx.update(g, state, params)
            out[name] = (optax.apply_updates(params, updates), state)
        return out

    def start() -> dict[str, Any]:
        return {name: (PARAMS, tx.init(PARAMS)) for name, tx in txs.items()}

    carry = start()
    for g in grads:
        carry = step(carry, g)
    uninterrupted = carry

    carry = start()
    for g in grads[:10]:
        carry = step(carry, g)
    blob = save_state(carry)
    del carry
    carry = load_state(blob, start())
    for g in grads[10:]:
        carry = step(carry, g)
    chex.assert_trees_all_equal(carry, uninterrupted)
    chex.assert_trees_all_equal_dtypes(carry, uninterrupted)


@pytest.mark.parametrize("factory", [jl.adagrad, jl.rmsprop, jl.adam], ids=lambda f: f.__name__)
def test_eps_zero_never_divides_zero_by_zero(factory: Callable[..., Any]) -> None:
    """A coordinate that has only seen zero gradients stays put, even with eps=0."""
    tx = factory(0.1, eps=0.0)
    params = jnp.ones(3)
    state = tx.init(params)
    step = jax.jit(tx.update)
    for g in ([0.0, 1.0, -2.0], [0.0, 0.5, 0.0]):
        updates, state = step(jnp.asarray(g), state)
        chex.assert_tree_all_finite((updates, state))
        assert float(updates[0]) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"decay": 1.0}, "decay"),
        ({"decay": -0.1}, "decay"),
        ({"eps": -1e-8}, "eps"),
        ({"eps": math.inf}, "eps"),
        ({"initial_scale": -1.0}, "initial_scale"),
        ({"eps_in_sqrt": "yes"}, "eps_in_sqrt"),
        ({"bias_correction": None}, "bias_correction"),
        ({"accumulator_dtype": jnp.int32}, "accumulator_dtype"),
    ],
    ids=lambda x: str(x),
)
def test_scale_by_stddev_bad_arguments_raise(kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        jl.scale_by_stddev(**kwargs)
    with pytest.raises(ValueError, match=argument):
        jl.rmsprop(0.1, centered=True, **kwargs)


def test_rmsprop_centered_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match="centered"):
        jl.rmsprop(0.1, centered="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("bias_correction", [False, True])
def test_centered_eps_zero_never_divides_zero_by_zero(bias_correction: bool) -> None:
    """``rmsprop(centered=True, eps=0)``: a coordinate that has only seen zero gradients stays put
    (its variance estimate is 0, the formula 0/0), and the state stays finite."""
    tx = jl.rmsprop(0.1, eps=0.0, centered=True, bias_correction=bias_correction)
    state = tx.init(jnp.ones(3))
    step = jax.jit(tx.update)
    for g in ([0.0, 1.0, -2.0], [0.0, 0.5, 0.0]):
        updates, state = step(jnp.asarray(g), state)
        chex.assert_tree_all_finite((updates, state))
        assert float(updates[0]) == 0.0


def test_scale_by_stddev_accumulator_dtype() -> None:
    """bf16 parameters with ``accumulator_dtype=float32``: both averages in float32, the updates
    in bf16; complex parameters keep a complex mean and a real average of |g|^2."""
    params = jax.tree.map(lambda p: np.ones(p.shape, jnp.bfloat16), PARAMS)
    tx = jl.scale_by_stddev(accumulator_dtype=jnp.float32)
    g = jax.tree.map(lambda p: np.full(p.shape, 0.5, jnp.bfloat16), params)
    updates, state = jax.jit(lambda g: tx.update(g, tx.init(params)))(g)
    chex.assert_trees_all_equal_dtypes(updates, g)
    assert {x.dtype for x in jax.tree.leaves(state)} == {jnp.dtype(jnp.float32)}
    state = jl.scale_by_stddev().init(jnp.zeros(2, jnp.complex64))
    assert state.mu.dtype == jnp.complex64
    assert state.nu.dtype == jnp.float32
