"""A packed layout for models with many small leaves: the optimizer state in one buffer per dtype.

An elementwise optimizer does the same arithmetic on every entry, so it may as well run on all
entries at once. ``packed(tx)`` concatenates the gradients of every leaf into one vector per dtype,
runs ``tx`` on those vectors (so its state holds one buffer per dtype instead of one per leaf), and
cuts the resulting updates back into the shape of the gradients.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

__all__ = ["packed"]


def _pack(tree: Any) -> dict[str, jax.Array]:
    """The leaves of ``tree``, raveled and concatenated into one vector per dtype."""
    groups: dict[str, list[jax.Array]] = {}
    for leaf in jax.tree.leaves(tree):
        leaf = jnp.asarray(leaf)
        groups.setdefault(leaf.dtype.name, []).append(jnp.ravel(leaf))
    return {k: v[0] if len(v) == 1 else jnp.concatenate(v) for k, v in groups.items()}


def _unpack(flat: dict[str, jax.Array], like: Any) -> Any:
    """Cut the vectors of :func:`_pack` back into a tree shaped like ``like``."""
    leaves, treedef = jax.tree.flatten(like)
    offsets = dict.fromkeys(flat, 0)
    out = []
    for leaf in leaves:
        key = jnp.result_type(leaf).name
        start, size = offsets[key], int(jnp.size(leaf))
        buffer = flat[key]
        piece = buffer if size == buffer.size else jax.lax.slice(buffer, (start,), (start + size,))
        out.append(piece.reshape(jnp.shape(leaf)))
        offsets[key] = start + size
    return jax.tree.unflatten(treedef, out)


def packed(inner: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    r"""Run an elementwise transformation on all leaves at once, with its state packed.

    ``init`` and ``update`` concatenate the leaves of the parameters and of the updates into one
    vector per dtype and hand those vectors to ``inner``; the updates ``inner`` returns are cut
    back into the shape of the incoming updates. So the state of ``inner`` (its moving averages,
    accumulators, velocities) is one array per dtype however many leaves the model has, and each
    of its steps is a handful of large operations instead of a few per leaf.

    This pays off for models with many small leaves: per-leaf overhead (dispatching and launching
    one small kernel per state array and leaf) then dominates a step, and packing removes most of
    it (see the README's performance section). For a few large leaves it costs a copy of the
    gradients per step and gains nothing: leave it out there.

    Args:
      inner: any gradient transformation that treats entries independently (every optimizer of
        this library) or through global reductions only (``optax.clip_by_global_norm``); wrap
        the whole chain, ``packed(optax.chain(clip, adam))``, so the clipping runs on the packed
        vector too.

    Returns:
      An ``optax.GradientTransformationExtraArgs``. Its state is ``inner``'s own state (the same
      types), with a ``{dtype name: vector}`` dictionary where ``inner`` would hold a tree:
      ``state[0].mu["float32"]`` instead of a tree of first moments. Leaves are packed in
      ``jax.tree.leaves`` order.

    The updates equal those of ``inner`` bit for bit for elementwise transformations. Global
    reductions (a global norm) sum in a different order, which changes the last bits. Do not
    wrap transformations that treat leaves differently (``optax.masked``, per-leaf trust ratios,
    ``newton``'s ``value_fn``, which would receive the packed vector). The gradients passed to
    ``update`` must have the structure, shapes and dtypes of the parameters passed to ``init``.

    Example:
      >>> import jax.numpy as jnp, optax, jaxopt_lectures as jl
      >>> params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
      >>> tx = jl.packed(jl.adam(learning_rate=0.1))
      >>> state = tx.init(params)
      >>> state[0].mu["float32"].shape  # both leaves' first moments in one vector
      (8,)
      >>> grads = {"w": jnp.full((3, 2), 0.5), "b": jnp.ones(2)}
      >>> updates, state = tx.update(grads, state, params)
      >>> updates["w"].shape
      (3, 2)
    """
    inner = optax.with_extra_args_support(inner)

    def init_fn(params: optax.Params) -> Any:
        return inner.init(_pack(params))

    def update_fn(
        updates: optax.Updates,
        state: Any,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, Any]:
        flat_params = None if params is None else _pack(params)
        flat_updates, state = inner.update(_pack(updates), state, flat_params, **extra_args)
        return _unpack(flat_updates, updates), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
