"""Dense linear algebra that stays safe when several XLA:CPU programs run at once.

Under ``jax.vmap``, ``jnp.linalg.eigh`` becomes one batched LAPACK call, which jaxlib spreads over
XLA:CPU's intra-op thread pool from inside a worker of that same pool and then waits for. Two
such programs running at once (two Python threads, as the experiments' ``--jobs`` runs them) can
each park a pool worker in that wait while the work they wait for sits queued behind them: on a
2-core machine the process hangs for good (reproduced with three threads running
``jit(vmap(vmap(jnp.linalg.eigh)))`` on 8 x 16 matrices of 30 x 30: hung in every try, while the
form below finished 600 calls in 3.5 s). :func:`eigh` maps a batch one matrix after another
(``lax.map``) instead: the same LAPACK routine on each matrix, so the same numbers, and no wait
inside the pool.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import custom_batching

__all__ = ["eigh"]


@custom_batching.custom_vmap
def eigh(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``jnp.linalg.eigh(a)`` of one symmetric matrix ``a``: ``(eigenvalues ascending,
    eigenvectors as columns)``; under ``jax.vmap`` the batch is mapped one matrix at a time (see
    the module docstring for why)."""
    w, v = jnp.linalg.eigh(a)
    return w, v


@eigh.def_vmap
def _eigh_batched(
    axis_size: int, in_batched: list[bool], a: jax.Array
) -> tuple[tuple[jax.Array, jax.Array], tuple[bool, bool]]:
    del axis_size
    if not in_batched[0]:
        return eigh(a), (False, False)
    return jax.lax.map(eigh, a), (True, True)
