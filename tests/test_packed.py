"""The packed layout (``jl.packed``) gives the numbers of the default layout.

The numerical tests of the default layout run through the packed one too, with the same
tolerances: conftest's ``layout`` fixture parametrizes the float64 lecture references
(tests/test_reference.py), the optax pairings (tests/test_optax_equivalence.py), and the
one-compilation and ``apply_if_finite`` tests (tests/test_transform_contract.py) over the default
layout, everything in one vector per dtype, and a mix where the larger leaves keep their own
buffers (``max_leaf_size=4`` on the test tree). Here: the packed updates equal the unpacked ones
(bit for bit, but for the last bit of Adam's), the state's layout, the rest of the optax contract
(``inject_hyperparams``, clipping, checkpoints, extra arguments, dtypes) and the failure modes.
"""

from __future__ import annotations

import functools
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import ALIASES, LAYOUTS, Wrap, random_gradients, random_tree, to_f32, tree_of

import jaxopt_lectures as jl

PARAMS = tree_of(lambda shape: jnp.ones(shape, jnp.float32))
PACKED = [name for name in LAYOUTS if name.startswith("packed")]


@pytest.fixture(params=PACKED)
def layout(request: pytest.FixtureRequest) -> Wrap:
    """The packed layouts only (conftest's fixture also runs the default)."""
    return LAYOUTS[request.param]


# --- packed = unpacked ------------------------------------------------------------------------

# Packing changes no arithmetic, only which entries share a loop. XLA may then round a fused
# multiply-add differently (it contracts a * b + c depending on how it splits a step into loops),
# so an entry can move by its last bit: Adam's updates do, by 1 ulp (observed 9e-8 relative); the
# other methods come out bit for bit. 4 ulps of float32 relative, no absolute allowance.
PACKED_RTOL = 4 * 2.0**-23


def _trajectory(tx: optax.GradientTransformation, grads: list[Any], params: Any) -> list[Any]:
    @jax.jit
    def step(params: Any, state: Any, g: Any) -> tuple[Any, Any, Any]:
        updates, state = tx.update(g, state, params)
        return optax.apply_updates(params, updates), state, updates

    state = tx.init(params)
    out = []
    for g in grads:
        params, state, updates = step(params, state, g)
        out.append((updates, params))
    return out


@functools.cache
def _alias_case(alias_name: str) -> tuple[list[Any], Any, list[Any]]:
    """Gradients, parameters and the default layout's trajectory of an alias, computed once for
    both packed layouts."""
    grads = [to_f32(g) for g in random_gradients(3, 20)]
    params = to_f32(random_tree(np.random.default_rng(5)))
    return grads, params, _trajectory(ALIASES[alias_name](), grads, params)


def test_packed_equals_unpacked(layout: Wrap, alias_name: str) -> None:
    grads, params, plain = _alias_case(alias_name)
    packed = _trajectory(layout(ALIASES[alias_name]()), grads, params)
    chex.assert_trees_all_close(packed, plain, rtol=PACKED_RTOL, atol=0.0)
    if alias_name != "adam":
        chex.assert_trees_all_equal(packed, plain)


def test_mixed_dtypes_one_vector_each() -> None:
    """bf16 and float32 leaves: one vector per dtype, updates in each leaf's dtype."""
    params = {
        "a": jnp.ones((4, 3), jnp.bfloat16),
        "b": jnp.ones(5, jnp.float32),
        "c": jnp.ones(2, jnp.bfloat16),
    }
    rng = np.random.default_rng(0)
    grads = [
        jax.tree.map(lambda p: rng.standard_normal(p.shape).astype(p.dtype), params)
        for _ in range(10)
    ]
    tx = jl.packed(jl.adam(0.01, accumulator_dtype=jnp.float32))
    state = tx.init(params)
    shapes = {k: v.shape for k, v in state[0].mu.small.items()}
    assert shapes == {"bfloat16": (14,), "float32": (5,)}
    assert all(v.dtype == jnp.float32 for v in state[0].mu.small.values())
    assert state[0].mu.large == ()
    plain = _trajectory(jl.adam(0.01, accumulator_dtype=jnp.float32), grads, params)
    packed = _trajectory(tx, grads, params)
    # bf16 results are rounded from float32 arithmetic, so they agree to bf16 precision at least.
    chex.assert_trees_all_close(packed, plain, rtol=2.0**-7, atol=0.0)
    chex.assert_trees_all_equal_dtypes(packed[-1][1], params)


def test_state_layout() -> None:
    tx = jl.packed(jl.momentum(0.1), max_leaf_size=4)
    state = tx.init(PARAMS)
    trace = state[1].trace
    assert isinstance(trace, jl.Packed)
    assert {k: v.shape for k, v in trace.small.items()} == {"float32": (4,)}  # 3 + 1 entries
    assert [x.shape for x in trace.large] == [(2, 3, 4), (5, 3)]  # in jax.tree.leaves order
    one_vector = jl.packed(jl.adam(0.1)).init(PARAMS)
    assert len(jax.tree.leaves(one_vector)) == 3  # the count, mu and nu: one vector each


# --- the optax contract -----------------------------------------------------------------------


INJECTED = {"learning_rate": 0.01, "b1": 0.8, "b2": 0.99, "eps": 1e-4}


@functools.cache
def _inject_case() -> tuple[list[Any], list[Any]]:
    """Gradients and the default layout's trajectory, computed once for both packed layouts."""
    grads = [to_f32(g) for g in random_gradients(4, 8)]
    return grads, _trajectory(jl.adam(**INJECTED), grads, PARAMS)


def test_inject_hyperparams_inside(layout: Wrap) -> None:
    grads, expected = _inject_case()
    kwargs = INJECTED
    injected = layout(optax.inject_hyperparams(jl.adam)(**kwargs))
    got = _trajectory(injected, grads, PARAMS)
    chex.assert_trees_all_close(got, expected, rtol=1e-6, atol=1e-7)


def _clipping_chain() -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(1.0), jl.adam(0.01))


@functools.cache
def _clipping_case() -> tuple[list[Any], list[Any]]:
    """Gradients and the default layout's trajectory, computed once for both packed layouts."""
    grads = [to_f32(g) for g in random_gradients(6, 20, scale=3.0)]
    return grads, _trajectory(_clipping_chain(), grads, PARAMS)


def test_clipping_chain_agrees_with_unpacked(layout: Wrap) -> None:
    """A global norm sums in another order when packed: equal to float32 rounding."""
    grads, expected = _clipping_case()
    chain = _clipping_chain
    chex.assert_trees_all_close(
        _trajectory(layout(chain()), grads, PARAMS), expected, rtol=1e-5, atol=1e-7
    )


def test_checkpoint_resume_is_bit_identical(layout: Wrap) -> None:
    tx = layout(jl.adam(0.05))
    grads = [to_f32(g) for g in random_gradients(9, 12)]
    state = tx.init(PARAMS)
    step = jax.jit(tx.update)
    for g in grads[:6]:
        _, state = step(g, state)
    leaves = [np.asarray(x) for x in jax.tree.leaves(state)]
    restored = jax.tree.unflatten(
        jax.tree.structure(tx.init(PARAMS)), [jnp.asarray(x) for x in leaves]
    )
    a, b = state, restored
    for g in grads[6:]:
        ua, a = step(g, a)
        ub, b = step(g, b)
        chex.assert_trees_all_equal(ua, ub)
    chex.assert_trees_all_equal(a, b)


def test_extra_args_are_forwarded() -> None:
    seen = {}

    def spy_update(updates: Any, state: Any, params: Any = None, **extra: Any) -> Any:
        seen.update(extra, params=params)
        return updates, state

    spy = optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), spy_update)
    tx = jl.packed(spy)
    g = to_f32(random_gradients(1, 1)[0])
    update = jax.jit(functools.partial(tx.update, value_fn=jnp.sum))
    updates, _ = update(g, tx.init(PARAMS), PARAMS)
    chex.assert_trees_all_equal(updates, g)
    assert seen["value_fn"] is jnp.sum
    assert isinstance(seen["params"], jl.Packed)


# --- failure modes ----------------------------------------------------------------------------


def test_gradients_of_another_size_raise() -> None:
    tx = jl.packed(jl.adam(0.1))
    state = tx.init({"a": jnp.ones(3), "b": jnp.ones(2)})
    with pytest.raises(ValueError, match="has shape"):
        tx.update({"a": jnp.ones(3), "b": jnp.ones(3)}, state)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "1000"])
def test_bad_max_leaf_size_raises(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_leaf_size"):
        jl.packed(jl.sgd(0.1), max_leaf_size=bad)


@pytest.mark.parametrize("max_leaf_size", [32_768, 2])
def test_gradients_of_another_structure_raise_like_the_unpacked_transforms(
    max_leaf_size: int,
) -> None:
    """Same total size per dtype, other structure: refused, with the unpacked transforms' words."""
    params = {"a": jnp.ones(3), "b": jnp.ones(2)}
    grads = {"x": jnp.ones(4), "y": jnp.ones(1)}
    unpacked = jl.adam(0.1)
    with pytest.raises(ValueError, match="tree structure") as expected:
        unpacked.update(grads, unpacked.init(params))
    tx = jl.packed(jl.adam(0.1), max_leaf_size=max_leaf_size)
    with pytest.raises(ValueError, match="tree structure") as got:
        tx.update(grads, tx.init(params))
    assert str(got.value).split(":", 1)[1] == str(expected.value).split(":", 1)[1]
    with pytest.raises(ValueError, match="has shape"):  # same structure, shapes swapped
        tx.update({"a": jnp.ones(2), "b": jnp.ones(3)}, tx.init(params))
    with pytest.raises(ValueError, match="dtype"):
        tx.update({"a": jnp.ones(3, jnp.bfloat16), "b": jnp.ones(2)}, tx.init(params))


def test_init_on_shape_dtype_structs_and_map_params() -> None:
    """``init`` takes abstract parameters (as ``optax`` transforms do) and returns real zeros;
    ``optax.tree.map_params`` reaches the packed vectors."""
    tx = jl.packed(jl.adam(0.1), max_leaf_size=4)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), PARAMS)
    chex.assert_trees_all_equal(tx.init(abstract), tx.init(PARAMS))
    state = tx.init(PARAMS)
    doubled = optax.tree.map_params(tx, lambda v: v + 1.0, state)
    mu = doubled[0].mu
    assert isinstance(mu, jl.Packed)
    chex.assert_trees_all_equal(mu.small["float32"], jnp.ones(4))
    chex.assert_trees_all_equal(doubled[0].count, state[0].count)  # not a parameter tree


def test_empty_trees_and_masked_groups() -> None:
    tx = jl.packed(jl.adam(0.1))
    updates, _ = tx.update({}, tx.init({}))
    assert updates == {}
    masked = optax.masked(jl.packed(jl.momentum(0.1)), {"a": False, "b": True})
    params = {"a": jnp.ones(3), "b": jnp.ones(2)}
    updates, _ = jax.jit(masked.update)(params, masked.init(params), params)
    chex.assert_trees_all_close(updates, {"a": np.ones(3), "b": np.full(2, -0.1)})
