"""Optimizer state laid out like the parameters it belongs to, on any device mesh.

Every elementwise transform of this library keeps one state array per parameter, so the natural
layout of that state is the parameter's own sharding: each device then updates its own shard with
no communication. ``tx.init(params)`` called eagerly already gives that layout (the zeros are made
with ``jnp.zeros_like``), and so does ``jax.jit(tx.init)`` on a mesh with explicit axes
(``jax.set_mesh``). Under ``jit`` on a mesh with automatic axes, zeros do not depend on the
parameters' values and the compiler would put them on one device: :func:`init_sharded` passes the
right ``out_shardings``, computed by :func:`state_shardings`, so the state is created in place on
every device and never materialized on one device first.
"""

from __future__ import annotations

from typing import Any, cast

import jax
import optax
from jax.sharding import NamedSharding, PartitionSpec, Sharding

__all__ = ["init_sharded", "state_shardings"]


def state_shardings(tx: optax.GradientTransformation, params: optax.Params) -> Any:
    """The sharding each leaf of ``tx.init(params)`` should have, without running ``init``.

    Every subtree of the state with the structure of ``params`` (momentum's velocity, Adam's two
    moments, ...) gets the parameters' shardings leaf by leaf; every other leaf (step counters,
    fallback counters, scalars of ``optax.inject_hyperparams``) is replicated over the mesh of the
    parameters.

    Args:
      tx: any gradient transformation, ours or optax's.
      params: the parameter pytree, as committed ``jax.Array`` s (``jax.device_put`` with a
        ``NamedSharding``).

    Returns:
      A pytree of ``jax.sharding.Sharding`` shaped like the state, for ``jax.jit(out_shardings=)``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_lectures as jl
      >>> params = {"w": jnp.ones((4, 2))}
      >>> tx = jl.momentum(0.1, momentum=0.9)
      >>> shardings = jl.state_shardings(tx, params)
      >>> state = jax.jit(tx.init, out_shardings=shardings)(params)
      >>> state[1].trace["w"].sharding == params["w"].sharding  # the velocity sits like w
      True
    """
    param_leaves = jax.tree.leaves(params)
    if not param_leaves or not all(isinstance(p, jax.Array) for p in param_leaves):
        raise ValueError("state_shardings: params must be a non-empty pytree of jax.Array")
    param_shardings = jax.tree.map(lambda p: p.sharding, params)
    first = param_leaves[0].sharding
    if isinstance(first, NamedSharding):
        replicated: Sharding = NamedSharding(first.mesh, PartitionSpec())
    else:
        replicated = first
    params_def = jax.tree.structure(params)
    shapes = [p.shape for p in param_leaves]
    abstract_state = jax.eval_shape(tx.init, params)

    def is_param_like(x: Any) -> bool:
        leaves, treedef = jax.tree.flatten(x)
        return cast(Any, treedef) == params_def and [leaf.shape for leaf in leaves] == shapes

    def assign(subtree: Any) -> Any:
        if is_param_like(subtree):
            return param_shardings
        return jax.tree.map(lambda _: replicated, subtree)

    return jax.tree.map(assign, abstract_state, is_leaf=is_param_like)


def init_sharded(tx: optax.GradientTransformation, params: optax.Params) -> Any:
    """``tx.init(params)`` compiled with the state created directly in its final layout.

    Equivalent to ``jax.jit(tx.init, out_shardings=state_shardings(tx, params))(params)``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_lectures as jl
      >>> params = {"w": jnp.ones((4, 2))}
      >>> state = jl.init_sharded(jl.adam(1e-3), params)
      >>> state[0].mu["w"].sharding == params["w"].sharding
      True
    """
    return jax.jit(tx.init, out_shardings=state_shardings(tx, params))(params)
