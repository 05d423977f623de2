"""A packed layout for models with many small leaves: the optimizer state in one buffer per dtype.

An elementwise optimizer does the same arithmetic on every entry, so it may as well run on all
entries at once. ``packed(tx)`` concatenates the gradients of the small leaves into one vector per
dtype, runs ``tx`` on those vectors (so its state holds one buffer per dtype instead of one per
leaf), and cuts the resulting updates back into the shape of the gradients.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["Packed", "packed"]


class Packed(NamedTuple):
    """A tree in the packed layout (what the wrapped transformation sees, and its state holds)."""

    small: dict[str, jax.Array]  # every small leaf, raveled and concatenated: one vector per dtype
    large: tuple[jax.Array, ...]  # the leaves with more than max_leaf_size entries, as they are


def _is_small(leaf: Any, max_leaf_size: int) -> bool:
    return int(jnp.size(leaf)) <= max_leaf_size


def _pack(tree: Any, max_leaf_size: int) -> Packed:
    """The leaves of ``tree`` in the packed layout (in ``jax.tree.leaves`` order)."""
    groups: dict[str, list[jax.Array]] = {}
    large = []
    for leaf in jax.tree.leaves(tree):
        leaf = jnp.asarray(leaf)
        if _is_small(leaf, max_leaf_size):
            groups.setdefault(leaf.dtype.name, []).append(jnp.ravel(leaf))
        else:
            large.append(leaf)
    small = {k: v[0] if len(v) == 1 else jnp.concatenate(v) for k, v in groups.items()}
    return Packed(small=small, large=tuple(large))


def _unpack(packed_tree: Packed, like: Any, max_leaf_size: int) -> Any:
    """Cut a :class:`Packed` back into a tree shaped like ``like``."""
    leaves, treedef = jax.tree.flatten(like)
    offsets = dict.fromkeys(packed_tree.small, 0)
    large = iter(packed_tree.large)
    out = []
    for leaf in leaves:
        if not _is_small(leaf, max_leaf_size):
            out.append(next(large))
            continue
        key = jnp.result_type(leaf).name
        vector, start, size = packed_tree.small[key], offsets[key], int(jnp.size(leaf))
        piece = vector if size == vector.size else jax.lax.slice(vector, (start,), (start + size,))
        out.append(piece.reshape(jnp.shape(leaf)))
        offsets[key] = start + size
    return jax.tree.unflatten(treedef, out)


def packed(
    inner: optax.GradientTransformation, max_leaf_size: int = 32_768
) -> optax.GradientTransformationExtraArgs:
    r"""Run an elementwise transformation on all small leaves at once, with its state packed.

    ``init`` and ``update`` concatenate the leaves with at most ``max_leaf_size`` entries into one
    vector per dtype and hand those vectors (and the larger leaves, untouched) to ``inner``; the
    updates ``inner`` returns are cut back into the shape of the incoming updates. So the state of
    ``inner`` (its moving averages, accumulators, velocities) holds one array per dtype for all
    the small leaves, however many there are, and each step runs a handful of large operations on
    them instead of a few small ones per leaf.

    Why: with many small leaves an optimizer step is dominated by per-leaf overhead (every state
    array of every leaf is one more buffer to pass in and out of the compiled step and one more
    small loop to launch), not by arithmetic. Packed, Adam on 1,000 leaves passes 2 state buffers
    instead of 2,000 and launches about 1,000 loops instead of 3,000; see the README's performance
    section for the measured step and compile times. Large leaves gain nothing from it (their
    overhead is already negligible) and would pay a copy of their gradient per step, so they keep
    their own buffers.

    Args:
      inner: a gradient transformation that treats entries independently (every optimizer of
        this library) or through global reductions (``optax.clip_by_global_norm``). Wrap the
        whole chain, ``packed(optax.chain(clip, adam))``, so the clipping runs on the packed
        vectors too.
      max_leaf_size: leaves with more entries than this keep their own buffers. The default,
        32,768 entries (128 KB of float32), is about where copying a gradient once per step
        starts to cost more than the overhead it saves.

    Returns:
      An ``optax.GradientTransformationExtraArgs``. Its state is ``inner``'s own state (the same
      types) with a :class:`Packed` where ``inner`` would hold a tree: for ``packed(adam(...))``,
      ``state[0].mu.small["float32"]`` is the first moment of all small float32 leaves, in
      ``jax.tree.leaves`` order, and ``state[0].mu.large`` those of the large ones.

    Packing changes no arithmetic: the tests run the reference and optax comparisons through it
    with the default's tolerances, and the updates of this library's optimizers equal the
    unpacked ones bit for bit, except that XLA may round a fused multiply-add differently when it
    splits the step into other loops (Adam's updates can move by their last bit). A global
    reduction (a global norm) sums in a different order, which can also change the last bits.
    Do not wrap transformations that treat leaves differently from one another
    (``optax.masked``, per-leaf trust ratios, ``newton``'s ``value_fn``, which would receive the
    packed vectors), and do not use it on sharded parameters: concatenating gathers them on one
    device. The gradients passed to ``update`` must have the structure, shapes and dtypes of the
    parameters passed to ``init``.

    Example:
      >>> import jax.numpy as jnp, optax, jaxopt_lectures as jl
      >>> params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
      >>> tx = jl.packed(jl.adam(learning_rate=0.1))
      >>> state = tx.init(params)
      >>> state[0].mu.small["float32"].shape  # both leaves' first moments in one vector
      (8,)
      >>> grads = {"w": jnp.full((3, 2), 0.5), "b": jnp.ones(2)}
      >>> updates, state = tx.update(grads, state, params)
      >>> updates["w"].shape
      (3, 2)
    """
    if isinstance(max_leaf_size, bool) or not isinstance(max_leaf_size, int) or max_leaf_size < 1:
        raise ValueError(f"max_leaf_size must be an int >= 1, got {max_leaf_size!r}")
    inner = optax.with_extra_args_support(inner)

    def init_fn(params: optax.Params) -> Any:
        return inner.init(_pack(params, max_leaf_size))

    def update_fn(
        updates: optax.Updates,
        state: Any,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, Any]:
        flat_params = None if params is None else _pack(params, max_leaf_size)
        flat_updates, state = inner.update(
            _pack(updates, max_leaf_size), state, flat_params, **extra_args
        )
        return _unpack(flat_updates, updates, max_leaf_size), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
