"""``jl.one_loop``: same init, state and numbers as the transform it wraps; one loop under XLA:CPU
multi-output fusion.

The loop counts read the compiled program, and multi-output fusion is an ``XLA_FLAGS`` option read
once when JAX starts, so those checks run in child processes (integration tier, ``xla_cpu``). The
unit tier checks the numbers and the composition with optax's wrappers in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_lectures as jl

MOF_FLAG = "--xla_backend_extra_options=xla_cpu_use_multi_output_fusion"
ROOT = Path(__file__).resolve().parents[1]

# The transforms of the performance page's one-loop table.
TABLE: dict[str, Callable[[], optax.GradientTransformation]] = {
    "jl.momentum": lambda: jl.momentum(0.01, momentum=0.9),
    "jl.nag": lambda: jl.nag(optax.linear_schedule(0.01, 0.001, 50), momentum=0.9),
    "jl.adam": lambda: jl.adam(1e-3),
    "jl.adagrad": lambda: jl.adagrad(0.1),
    "jl.rmsprop": lambda: jl.rmsprop(0.01),
    "jl.adadelta": lambda: jl.adadelta(1.0),
    "optax.adam": lambda: optax.adam(1e-3),
    "optax.sgd(momentum)": lambda: optax.sgd(0.01, momentum=0.9),
    "optax.adadelta": lambda: optax.adadelta(1.0),
}
STEPS = 100
# Parameters after 100 steps: within 4 float32 ulps of the leaf's largest entry. The state feeds
# back into itself, so its rounding differences (a square root and a division rounded in another
# loop) compound: optax's AdaDelta average of squared steps drifts the most, about 15 ulps.
ULPS = 4
STATE_ULPS = 16


def _gradient(key: jax.Array, n: int) -> jax.Array:
    # Every fifth coordinate exactly zero, as in a sparse layer.
    return jax.random.normal(key, (n,)) * (jnp.arange(n) % 5 != 0)


def run_both(tx: optax.GradientTransformation, n: int) -> tuple[Any, Any]:
    """``STEPS`` donated steps of ``tx`` and of ``one_loop(tx)`` from the same start: the final
    (params, state) of each."""
    params = jax.random.normal(jax.random.key(0), (n,))

    def run(t: optax.GradientTransformation) -> Any:
        @jax.jit
        def steps(p: jax.Array, s: Any) -> Any:
            def step(carry: Any, key: jax.Array) -> Any:
                p, s = carry
                u, s = t.update(_gradient(key, n), s, p)
                return (optax.apply_updates(p, u), s), None

            return jax.lax.scan(step, (p, s), jax.random.split(jax.random.key(1), STEPS))[0]

        return steps(params, t.init(params))

    return run(tx), run(jl.one_loop(tx, enabled=True))


def max_ulps(a: Any, b: Any) -> float:
    """The largest difference between two trees of floats, in float32 ulps of each leaf's largest
    entry (rounding that accumulates over steps is relative to the leaf's scale, not to an entry
    that happens to pass near zero)."""
    worst = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if not np.issubdtype(x.dtype, np.floating) or x.size == 0:
            continue
        assert np.array_equal(np.isfinite(x), np.isfinite(y))
        finite = np.isfinite(x)
        scale = np.max(np.abs(np.where(finite, x, 0.0)), initial=0.0)
        diff = np.max(np.abs(np.where(finite, x - y, 0.0)), initial=0.0)
        if diff > 0:
            worst = max(worst, diff / float(np.spacing(np.float32(scale))))
    return worst


def count_loops(tx: optax.GradientTransformation, n: int) -> int:
    """Loops over the leaf's entries in the compiled donated step (update + apply_updates): the
    fusions with an ``n``-entry array among their results."""

    def step(p: jax.Array, s: Any, g: jax.Array) -> Any:
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    p = jnp.zeros(n)
    text = jax.jit(step, donate_argnums=(0, 1)).lower(p, tx.init(p), p).compile().as_text()
    entry = text.split("ENTRY")[1].splitlines()
    return sum(1 for line in entry if " fusion(" in line and f"[{n}]" in line.split(" fusion(")[0])


def measure(n: int) -> dict[str, dict[str, float]]:
    """For every transform of ``TABLE``: loops unwrapped and wrapped, and the ulps between the two
    after ``STEPS`` steps (run in a child process, with or without multi-output fusion)."""
    out = {}
    for name, make in TABLE.items():
        plain, wrapped = run_both(make(), n)
        out[name] = {
            "loops": count_loops(make(), n),
            "loops_wrapped": count_loops(jl.one_loop(make()), n),
            "loops_forced": count_loops(jl.one_loop(make(), enabled=True), n),
            "ulps": max_ulps(plain[0], wrapped[0]),
            "state_ulps": max_ulps(plain[1], wrapped[1]),
        }
    return out


def test_same_init_state_and_numbers() -> None:
    """100 steps of every transform in the table, wrapped and not: the same init (the very
    function), state structure, dtypes and numbers within 4 float32 ulps."""
    for name, make in TABLE.items():
        tx, wrapped = make(), jl.one_loop(make(), enabled=True)
        params = jnp.zeros(3)
        chex.assert_trees_all_equal_structs(wrapped.init(params), tx.init(params))
        (p_plain, s_plain), (p_wrapped, s_wrapped) = run_both(tx, 1000)
        chex.assert_trees_all_equal_shapes_and_dtypes(s_wrapped, s_plain, custom_message=name)
        assert max_ulps(p_plain, p_wrapped) <= ULPS, name
        assert max_ulps(s_plain, s_wrapped) <= STATE_ULPS, name


def test_composes_with_optax_wrappers_vmap_and_packed() -> None:
    """Chains, ``jl.packed``, ``inject_hyperparams`` (inside and outside), ``MultiSteps``,
    ``apply_if_finite`` and ``jax.vmap``: the same updates and states as unwrapped, in one jit."""
    params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.ones(4), "s": jnp.array(2.0)}
    grads = jax.tree.map(lambda x: jnp.cos(3 * x) + 0.1, params)
    cases: dict[str, Callable[[Callable[[Any], Any]], optax.GradientTransformation]] = {
        "chain": lambda w: w(optax.chain(optax.clip_by_global_norm(1.0), jl.nag(0.1))),
        "packed": lambda w: w(jl.packed(jl.adam(0.1))),
        "inject_outside": lambda w: w(optax.inject_hyperparams(jl.rmsprop)(learning_rate=0.1)),
        "inject_inside": lambda w: optax.inject_hyperparams(
            lambda learning_rate: w(jl.adam(learning_rate))
        )(learning_rate=0.1),
        "multi_steps": lambda w: optax.MultiSteps(w(optax.adam(0.1)), every_k_schedule=2),
        "multi_steps_outside": lambda w: w(
            optax.MultiSteps(jl.adadelta(1.0), every_k_schedule=2).gradient_transformation()
        ),
        "apply_if_finite": lambda w: optax.apply_if_finite(w(jl.adagrad(0.1)), 2),
        "with_params": lambda w: w(optax.adamw(0.1, weight_decay=0.1)),
    }

    def force(tx: optax.GradientTransformation) -> optax.GradientTransformation:
        return jl.one_loop(tx, enabled=True)

    txs = {name: (make(lambda t: t), make(force)) for name, make in cases.items()}

    def three_steps(tx: optax.GradientTransformation, g: Any) -> Any:
        p, s, out = params, tx.init(params), []
        for scale in (1.0, 2.0, 3.0):
            u, s = tx.update(jax.tree.map(lambda x, c=scale: x * c, g), s, p)
            p = optax.apply_updates(p, u)
            out.append(u)
        return p, s, out

    @jax.jit
    def run(g: Any) -> Any:
        return {n: (three_steps(a, g), three_steps(b, g)) for n, (a, b) in txs.items()}

    for name, (plain, wrapped) in run(grads).items():
        chex.assert_trees_all_equal_structs(wrapped, plain)
        assert max_ulps(plain[0], wrapped[0]) <= ULPS, name  # parameters
        assert max_ulps(plain[2], wrapped[2]) <= ULPS, name  # updates
        assert max_ulps(plain[1], wrapped[1]) <= STATE_ULPS, name

    tx = jl.one_loop(jl.adam(0.1), enabled=True)
    batch = jnp.stack([jnp.arange(4.0), -jnp.arange(4.0)])
    updates, _ = jax.jit(jax.vmap(lambda g: tx.update(g, tx.init(g))))(batch)
    expected, _ = jax.vmap(lambda g: jl.adam(0.1).update(g, tx.init(g)))(batch)
    assert max_ulps(updates, expected) <= ULPS


def test_rejects_what_is_not_a_transformation() -> None:
    with pytest.raises(TypeError, match=r"optax\.GradientTransformation"):
        jl.one_loop(jl.adam)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="enabled"):
        jl.one_loop(jl.adam(), enabled=1)  # type: ignore[arg-type]


def test_no_op_without_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without XLA:CPU's multi-output fusion (or off the CPU) the wrapped update traces to the
    very program of the unwrapped one; with the option it holds the copies."""
    p = jnp.ones(4)

    def program(tx: optax.GradientTransformation) -> str:
        return str(jax.make_jaxpr(lambda g, s: tx.update(g, s, p))(p, tx.init(p)))

    monkeypatch.delenv("XLA_FLAGS", raising=False)
    for make in TABLE.values():
        assert program(jl.one_loop(make())) == program(make())
    monkeypatch.setenv("XLA_FLAGS", MOF_FLAG)
    wrapped = program(jl.one_loop(jl.adam()))
    if jax.default_backend() == "cpu":
        assert wrapped.count("optimization_barrier") == 2  # the copies of the two moments
    else:
        assert wrapped == program(jl.adam())


def _child(code: str, flags: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if flags:
        env["XLA_FLAGS"] = flags
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**env, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])},
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


MEASURE = "import json, test_one_loop as t; print(json.dumps(t.measure(1 << 16)))"


@pytest.mark.integration
@pytest.mark.xla_cpu
@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an XLA:CPU option")
def test_one_loop_under_multi_output_fusion() -> None:
    """With the option every wrapped step (update and ``optax.apply_updates``, donated) is one
    loop over the leaf, where the unwrapped ones take two to six; without it the wrapper is a
    no-op (and its copies, forced, add no loop). Numbers stay within 4 float32 ulps of the
    unwrapped ones for 100 steps in both."""
    fused = json.loads(_child(MEASURE, MOF_FLAG))
    plain = json.loads(_child(MEASURE, None))
    assert set(fused) == set(TABLE)
    for name in TABLE:
        assert fused[name]["loops_wrapped"] == 1, (name, fused[name])
        assert fused[name]["loops"] >= 2, (name, fused[name])
        assert plain[name]["loops_wrapped"] == plain[name]["loops"], (name, plain[name])
        assert plain[name]["loops_forced"] <= plain[name]["loops"], (name, plain[name])
        for result in (fused[name], plain[name]):
            assert result["ulps"] <= ULPS, (name, result)
            assert result["state_ulps"] <= STATE_ULPS, (name, result)


# The optax idioms and the transform contract, run again with every transform wrapped in
# jl.one_loop and the option on (test_optax_idioms.py and test_transform_contract.py wrap their
# tables when JAXOPT_LECTURES_TEST_ONE_LOOP=1).
WRAPPED_FILES = ("tests/test_optax_idioms.py", "tests/test_transform_contract.py")


@pytest.mark.integration
@pytest.mark.xla_cpu
@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an XLA:CPU option")
def test_wrapped_transforms_pass_the_optax_idioms() -> None:
    flags = f"{os.environ.get('XLA_FLAGS', '')} {MOF_FLAG}".strip()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "not integration",
            *WRAPPED_FILES,
        ],
        cwd=ROOT,
        env=dict(os.environ, XLA_FLAGS=flags, JAXOPT_LECTURES_TEST_ONE_LOOP="1"),
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout
