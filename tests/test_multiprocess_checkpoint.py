"""``jaxopt_lectures.checkpoint`` in one process: exact round trips and refused misuse.

The multi-process round trips (state held half by each process, a restarted job continuing bit
for bit) are in ``test_multiprocess.py``.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import needs

import jaxopt_lectures as jl
from jaxopt_lectures import checkpoint

# orbax's first save starts its thread pools and tensorstore: several seconds on 2 cores.
pytestmark = [pytest.mark.integration, needs("orbax")]


def test_round_trip_is_exact_and_keeps_named_tuples_in_order(tmp_path: Path) -> None:
    params, bn_state = jl.nn.mlp_init(jax.random.key(1), [5, 4, 3], batch_norm=True)
    tx = jl.adam(1e-2)
    opt_state = tx.init(params)
    grads = jax.tree.map(
        lambda p: jnp.sin(jnp.arange(p.size, dtype=p.dtype).reshape(p.shape)), params
    )
    _, opt_state = tx.update(grads, opt_state, params)
    # Three int32 counters with distinct values: a reordering of the NamedTuple's fields shows.
    cg_state = jl.newton_cg().init(params)
    cg_state = (cg_state[0]._replace(num_fallbacks=jnp.int32(1), cg_iterations=jnp.int32(7)),
                cg_state[1])  # fmt: skip
    tree = (params, bn_state, opt_state, cg_state, jnp.int32(3))
    checkpoint.save(tmp_path / "step_3", tree)
    like = jax.tree.map(jnp.zeros_like, tree)
    restored = checkpoint.restore(tmp_path / "step_3", like)
    assert jax.tree.structure(restored) == jax.tree.structure(tree)
    assert type(restored[3][0]) is type(cg_state[0])
    for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(restored), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(restored[3][0].cg_iterations) == 7


def test_refuses_to_overwrite_and_to_restore_nothing(tmp_path: Path) -> None:
    tree = {"w": jnp.ones(2)}
    checkpoint.save(tmp_path / "a", tree)
    with pytest.raises(ValueError, match="exists already"):
        checkpoint.save(tmp_path / "a", tree)
    with pytest.raises(ValueError, match="no checkpoint at"):
        checkpoint.restore(tmp_path / "missing", tree)
