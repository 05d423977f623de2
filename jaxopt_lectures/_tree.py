"""Small pytree helpers shared by the transforms: state creation, dtype policy, structure checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "check_tree_match",
    "compute_dtype",
    "map_leaves",
    "safe_increment",
    "tree_norm",
    "zeros_like",
]

safe_increment = optax.safe_increment  # int32 step counter that saturates instead of wrapping


# The global L2 norm of a tree: optax >= 0.2.5 names it tree_norm (tree_l2_norm is deprecated).
tree_norm: Callable[[Any], jax.Array] = (
    getattr(optax.tree_utils, "tree_norm", None) or optax.tree_utils.tree_l2_norm
)


def zeros_like(params: optax.Params, dtype: Any = None) -> optax.Params:
    """A tree of zeros shaped like ``params``, in ``dtype`` or else in each parameter's dtype.

    ``jnp.zeros_like`` keeps each parameter's sharding, so the state of a sharded model is born
    sharded like it (on every device at once, never gathered on one first), eagerly or under jit.
    """
    return jax.tree.map(lambda p: jnp.zeros_like(p, dtype=dtype or jnp.result_type(p)), params)


def compute_dtype(*dtypes: Any) -> Any:
    """The dtype the arithmetic of one leaf runs in: at least float32.

    bf16 and float16 state and gradients are upcast for the update's arithmetic and the results cast
    back to their storage dtype, so a bf16 model pays no precision for the moving averages' tiny
    increments (``(1 - b2) * g**2`` underflows bf16's 8-bit mantissa); float64 stays float64.
    """
    return jnp.result_type(jnp.float32, *dtypes)


def check_tree_match(updates: optax.Updates, state_tree: Any, transform: str) -> None:
    """Raise ``ValueError`` if ``updates`` and a state tree differ in structure or leaf shapes.

    Runs at trace time only (structure and shapes are static), so it costs nothing under ``jit``.
    Without it a mismatch shows up as an obscure tree error, or worse, as silent broadcasting.
    """
    u_leaves, u_def = jax.tree_util.tree_flatten_with_path(updates)
    s_leaves, s_def = jax.tree_util.tree_flatten_with_path(state_tree)
    if cast(Any, u_def) != s_def:
        raise ValueError(
            f"{transform}: the updates do not have the tree structure the optimizer state was "
            f"initialized with.\n  updates: {u_def}\n  state:   {s_def}\n"
            "Call init() on parameters with the same structure as the gradients passed to update()."
        )
    for (path, u), (_, s) in zip(u_leaves, s_leaves, strict=True):
        if jnp.shape(u) != jnp.shape(s):
            raise ValueError(
                f"{transform}: the update at {jax.tree_util.keystr(path)} has shape "
                f"{jnp.shape(u)} but the optimizer state there has shape {jnp.shape(s)}. "
                "Call init() on parameters shaped like the gradients you pass to update()."
            )


def map_leaves(
    fn: Callable[..., tuple[jax.Array, ...]], num_outputs: int, tree: Any, *rest: Any
) -> tuple[Any, ...]:
    """Map ``fn`` over leaves of ``tree`` (and the matching leaves of ``rest``).

    ``fn`` returns a tuple of ``num_outputs`` arrays per leaf, computed in one fused expression (so
    XLA reads each input once); the result is a tuple of ``num_outputs`` trees shaped like ``tree``.
    """
    outer = jax.tree.structure(tree)
    inner = jax.tree.structure((0,) * num_outputs)
    mapped = jax.tree.map(fn, tree, *rest)
    return tuple(jax.tree.transpose(outer, inner, mapped))
