"""What makes an optimizer step fast, checked on the compiled program (benchmarks/ has the timings).

A step is memory-bound: its cost is the memory it moves. These tests pin the properties that
keep the traffic down, on XLA's compiled step (update + ``optax.apply_updates``, with the
parameters and the state donated as the benchmark and the README recommend):

- no temporary as large as a leaf: every loop writes a result the step returns (a leaf-sized
  temporary is two more memory passes, plus fresh pages on every step for a large leaf; AdaDelta
  had one, and optax's has two);
- float32 arithmetic for float32 state: the upcast for bf16 emits nothing for float32;
- per-step scalars (Adam's bias corrections) computed once per step, not once per leaf;
- ``jl.packed``: one loop per leaf for the update and a few for the whole state, instead of one
  per state array and leaf; and the loops of leaves of one size are one program (XLA:CPU
  generates machine code once per distinct loop, so distinct per-leaf loops cost compile time).

They describe XLA:CPU's code generation, so they carry the ``xla_cpu`` marker and run only where
JAX's default backend is the CPU (a GPU backend fuses differently). They read the compiled text
only for patterns that survive XLA upgrades: counts of ``fusion(`` calls, of distinct fused
computations and of array-sized ``convert(`` instructions, and XLA's memory analysis.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import optax
import pytest
from conftest import ALIASES

import jaxopt_lectures as jl

pytestmark = [
    pytest.mark.xla_cpu,
    pytest.mark.skipif(jax.default_backend() != "cpu", reason="describes XLA:CPU's compiled code"),
]

LEAF = 1 << 20  # 4 MB of float32: far larger than any scalar bookkeeping


def compiled_step(tx: optax.GradientTransformation, params: Any) -> Any:
    def step(params: Any, state: Any, grads: Any) -> Any:
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    grads = jax.tree.map(jnp.ones_like, params)
    return jax.jit(step, donate_argnums=(0, 1)).lower(params, tx.init(params), grads).compile()


def test_no_leaf_sized_temporary(alias_name: str) -> None:
    memory = compiled_step(ALIASES[alias_name](), jnp.ones(LEAF)).memory_analysis()
    assert memory is not None
    assert memory.temp_size_in_bytes < 4 * LEAF // 100


def test_float32_arithmetic_emits_no_conversion(alias_name: str) -> None:
    hlo = compiled_step(ALIASES[alias_name](), jnp.ones(LEAF)).as_text()
    array_converts = re.findall(r"= \w+\[\d[\d,]*\]\S* convert\(", hlo)
    assert array_converts == []


def test_bias_corrections_once_per_step() -> None:
    """Two powers b1^t and b2^t in the traced program, whatever the number of leaves."""
    params = [jnp.ones(3) for _ in range(50)]
    tx = jl.adam(0.01)
    lowered = jax.jit(tx.update).lower(params, tx.init(params))
    assert lowered.as_text().count("stablehlo.power") == 2


def test_packed_launches_one_loop_per_leaf() -> None:
    params = [jnp.ones(100) for _ in range(100)]

    def loops(tx: optax.GradientTransformation) -> int:
        return compiled_step(tx, params).as_text().count(" fusion(")

    assert loops(jl.adam(0.01)) >= 300  # moment, second moment and parameters, per leaf
    assert loops(jl.packed(jl.adam(0.01))) <= 100 + 10  # parameters per leaf, the rest packed


def _distinct_fused_computations(text: str) -> int:
    """Fused computations of a compiled module that differ other than by names and metadata."""
    bodies = re.findall(r"^%\S+ \(.*?\n\}", text, re.S | re.M)
    normalized = {
        re.sub(r"%[\w.\-]+", "%", re.sub(r", metadata=\{[^}]*\}", "", body.split("\n", 1)[1]))
        for body in bodies
    }
    return len(normalized)


def test_packed_loops_of_one_leaf_size_are_one_program() -> None:
    """100 leaves of one size: the per-leaf loops of ``jl.packed`` are identical (each reads its
    offset at run time), so the module has a handful of distinct loops, not one per leaf."""
    params = [jnp.ones(100) for _ in range(100)]
    text = compiled_step(jl.packed(jl.adam(0.01)), params).as_text()
    assert text.count(" fusion(") >= 100  # one loop per leaf is there...
    assert _distinct_fused_computations(text) <= 10  # ...as one program
