"""A packed layout for models with many small leaves: the optimizer state in one buffer per dtype.

An elementwise optimizer does the same arithmetic on every entry, so it may as well run on all
entries at once. ``packed(tx)`` concatenates the gradients of the small leaves into one vector per
dtype, runs ``tx`` on those vectors (so its state holds one buffer per dtype instead of one per
leaf), and cuts the resulting updates back into the shape of the gradients.
"""

from __future__ import annotations

from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxopt_lectures._tree import check_tree_match, replicate_explicit, reshard_like

__all__ = ["Packed", "packed"]


# The layout of the tree that was packed: its structure and each leaf's shape and dtype name.
Layout = tuple[Any, tuple[tuple[tuple[int, ...], str], ...]]


@jax.tree_util.register_pytree_with_keys_class
class Packed:
    """A tree in the packed layout (what the wrapped transformation sees, and its state holds).

    Attributes:
      small: every small leaf, raveled and concatenated: one vector per dtype name.
      large: the leaves with more than ``max_leaf_size`` entries, as they are.
      layout: the structure, shapes and dtypes of the tree that was packed (static: not a leaf).
        ``update`` compares the incoming gradients with it, so gradients of another structure
        raise the same ``ValueError`` as the unpacked transforms instead of being cut silently.
    """

    def __init__(
        self, small: dict[str, Any], large: tuple[Any, ...], layout: Layout | None = None
    ) -> None:
        self.small = small
        self.large = tuple(large)
        self.layout = layout

    def tree_flatten_with_keys(self) -> tuple[Any, Layout | None]:
        children = (
            (jax.tree_util.GetAttrKey("small"), self.small),
            (jax.tree_util.GetAttrKey("large"), self.large),
        )
        return children, self.layout

    @classmethod
    def tree_unflatten(cls, layout: Layout | None, children: Any) -> Packed:
        small, large = children
        return cls(small, large, layout)

    def __repr__(self) -> str:
        return f"Packed(small={self.small!r}, large={self.large!r})"

    def __eq__(self, other: object) -> bool:  # as a NamedTuple compares: field by field
        if not isinstance(other, Packed):
            return NotImplemented
        return bool(
            (self.small, self.large, self.layout) == (other.small, other.large, other.layout)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable fields, like a dict


def _layout(tree: Any) -> Layout:
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((tuple(jnp.shape(x)), jnp.result_type(x).name) for x in leaves)


def _is_small(leaf: Any, max_leaf_size: int) -> bool:
    return int(np.prod(jnp.shape(leaf))) <= max_leaf_size


def _pack(tree: Any, max_leaf_size: int) -> Packed:
    """The leaves of ``tree`` in the packed layout (in ``jax.tree.leaves`` order)."""
    groups: dict[str, list[jax.Array]] = {}
    large = []
    for leaf in jax.tree.leaves(tree):
        leaf = jnp.asarray(leaf)
        if _is_small(leaf, max_leaf_size):
            leaf = replicate_explicit(leaf)  # explicit-axis shardings cannot be concatenated
            groups.setdefault(leaf.dtype.name, []).append(jnp.ravel(leaf))
        else:
            large.append(leaf)
    small = {k: v[0] if len(v) == 1 else jnp.concatenate(v) for k, v in groups.items()}
    return Packed(small=small, large=tuple(large), layout=_layout(tree))


def _pack_abstract(tree: Any, max_leaf_size: int) -> Packed:
    """:func:`_pack` for a tree that may hold ``jax.ShapeDtypeStruct`` leaves (no values)."""
    if any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(tree)):
        return cast(Packed, jax.eval_shape(lambda t: _pack(t, max_leaf_size), tree))
    return _pack(tree, max_leaf_size)


def _state_layout(state: Any) -> Layout | None:
    """The layout recorded in the first :class:`Packed` of a state (``None`` if it has none)."""
    for node in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, Packed)):
        if isinstance(node, Packed):
            return node.layout
    return None


def _match_layout(updates: Any, layout: Layout | None) -> Any:
    """Check ``updates`` against the recorded layout; Python scalars take the recorded dtype."""
    if layout is None:
        return updates
    treedef, specs = layout
    like = jax.tree.unflatten(
        treedef, [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in specs]
    )
    check_tree_match(updates, like, "packed")
    paths_and_leaves, _ = jax.tree_util.tree_flatten_with_path(updates)
    out = []
    for (path, u), (_, dtype) in zip(paths_and_leaves, specs, strict=True):
        if isinstance(u, int | float | complex):  # a Python scalar: weakly typed
            u = jnp.asarray(u, dtype)
        elif jnp.result_type(u).name != dtype:
            raise ValueError(
                f"packed: the update at {jax.tree_util.keystr(path)} has dtype "
                f"{jnp.result_type(u).name} but the parameters it was initialized with had "
                f"{dtype} there. Pass gradients with the parameters' dtypes."
            )
        out.append(u)
    return jax.tree.unflatten(treedef, out)


def _cut(vector: jax.Array, start: int, size: int) -> jax.Array:
    """``vector[start:start + size]``, written so that every cut of one size compiles alike."""
    # A static slice bakes `start` into the loop XLA:CPU generates for it: each leaf's loop is
    # then a program of its own, compiled separately. Here `start` lives in a small constant
    # array, which XLA keeps out of the loop (it passes non-scalar constants as buffers), and is
    # read from it at run time, so the loops of all leaves of one size are identical and
    # compiled once. The read needs an index XLA cannot fold to a constant (a constant index
    # would fold the read back into a static slice): 1 where the vector's first entry is NaN,
    # else 0. Entries 0 and 1 both hold `start`; entry 2 differs only so that the array is not
    # uniform (XLA turns a uniform constant into a broadcast scalar and folds it).
    first = vector[0]
    index = (first != first).astype(np.int32)
    dtype = np.int32 if vector.size < 2**31 else np.int64
    starts = jnp.asarray(np.array([start, start, start + 1], dtype))
    offset = jax.lax.dynamic_slice(starts, (index,), (1,), allow_negative_indices=False)[0]
    return jax.lax.dynamic_slice(vector, (offset,), (size,), allow_negative_indices=False)


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
        piece = vector if size == vector.size else _cut(vector, start, size)
        out.append(reshard_like(piece.reshape(jnp.shape(leaf)), leaf))
        offsets[key] = start + size
    return jax.tree.unflatten(treedef, out)


# Long for its docstring (72 of 100 lines: layout, limits, equivalent, example).
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
    section for the measured step and compile times. Each leaf's update is cut out of the packed
    vector at an offset read at run time, so the loops of all leaves of one size are one program
    to XLA, compiled once (with a static offset per leaf, XLA:CPU would compile each leaf's loop
    separately). Large leaves gain nothing from it (their
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
    packed vectors), and do not use it on sharded parameters: concatenating gathers them (on a
    mesh with explicit axes the small leaves are resharded to replicated ones first, and their
    updates back to the leaves' shardings; the large leaves keep theirs).

    Contract details:

    - The gradients passed to ``update`` must have the structure, shapes and dtypes of the
      parameters passed to ``init`` (recorded, statically, in each :class:`Packed` of the state):
      anything else raises ``ValueError`` naming the first mismatch, even when each dtype's total
      size would match. Python scalar leaves take the recorded dtype.
    - A tree with no leaves (``optax.masked`` with an all-False mask, an ``optax.partition``
      group that owns no parameter) is passed to ``inner`` as it is.
    - ``init`` accepts ``jax.ShapeDtypeStruct`` leaves (it packs their shapes with
      ``jax.eval_shape``) and returns real zeros, as ``inner.init`` does.
    - ``optax.tree.map_params(packed_tx, f, state)`` applies ``f`` to the packed vectors (each
      :class:`Packed` stands where ``inner`` keeps a parameter tree); ``f`` therefore cannot take
      extra trees shaped like the parameters (``*rest``, such as partition specs): for sharding
      do not pack (see above).

    Dtypes: any dtype ``inner`` supports; each dtype gets its own vector.

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
        if not jax.tree.leaves(params):  # nothing to pack (optax.masked, an empty group)
            return inner.init(params)
        return inner.init(_pack_abstract(params, max_leaf_size))

    def update_fn(
        updates: optax.Updates,
        state: Any,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, Any]:
        if not jax.tree.leaves(updates) and _state_layout(state) is None:
            return inner.update(updates, state, params, **extra_args)
        updates = _match_layout(updates, _state_layout(state))
        flat_params = None if params is None else _pack(params, max_leaf_size)
        flat_updates, state = inner.update(
            _pack(updates, max_leaf_size), state, flat_params, **extra_args
        )
        return _unpack(flat_updates, updates, max_leaf_size), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
