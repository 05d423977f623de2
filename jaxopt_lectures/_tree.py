"""Small pytree helpers shared by the transforms: state creation, dtype policy, structure checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "abs_sq",
    "check_tree_match",
    "compute_dtype",
    "explicit_spec",
    "map_leaves",
    "real_dtype",
    "replicate_explicit",
    "reshard_like",
    "safe_increment",
    "state_dtype",
    "tree_norm",
    "update_dtype",
    "zeros_like",
]

safe_increment = optax.safe_increment  # int32 step counter that saturates instead of wrapping


# The global L2 norm of a tree: optax >= 0.2.5 names it tree_norm (tree_l2_norm is deprecated).
tree_norm: Callable[[Any], jax.Array] = (
    getattr(optax.tree_utils, "tree_norm", None) or optax.tree_utils.tree_l2_norm
)


def state_dtype(leaf: Any, dtype: Any = None, real: bool = False) -> Any:
    """The dtype of the optimizer state kept for one parameter ``leaf``.

    ``dtype`` if given, else the parameter's own dtype; an integer (or bool) parameter gets the
    default float dtype instead, as a state in integers would truncate every increment to 0.
    ``real=True`` is for accumulators of squared magnitudes :math:`|g|^2`, which are real even
    for complex parameters: a complex dtype is replaced by the real one of the same precision.
    Accepts arrays, Python and NumPy scalars and ``jax.ShapeDtypeStruct``.
    """
    result = jnp.dtype(dtype) if dtype is not None else update_dtype(jnp.result_type(leaf))
    return real_dtype(result) if real else result


def zeros_like(params: optax.Params, dtype: Any = None, real: bool = False) -> optax.Params:
    """A tree of zeros shaped like ``params``, in the dtype :func:`state_dtype` picks per leaf.

    ``jnp.zeros_like`` keeps each parameter's sharding, so the state of a sharded model is born
    sharded like it (on every device at once, never gathered on one first), eagerly or under jit.
    A tree with no leaves (what ``optax.masked`` passes for an all-False mask) gives back its own
    empty structure.
    """
    return jax.tree.map(lambda p: jnp.zeros_like(p, dtype=state_dtype(p, dtype, real)), params)


def real_dtype(dtype: Any) -> Any:
    """The real dtype of the same precision: complex64 -> float32, complex128 -> float64."""
    dtype = jnp.dtype(dtype)
    return jnp.finfo(dtype).dtype if jnp.issubdtype(dtype, jnp.complexfloating) else dtype


def update_dtype(dtype: Any) -> Any:
    """The dtype of the update for a gradient of ``dtype``: its own, or a float for integers.

    An integer gradient times a learning rate gives a float update, as in optax (``-0.1 * g`` is
    float32 for an int32 ``g``); casting it back to integers would truncate small steps to 0.
    """
    dtype = jnp.dtype(dtype)
    return dtype if jnp.issubdtype(dtype, jnp.inexact) else jnp.result_type(dtype, float)


def abs_sq(x: jax.Array) -> jax.Array:
    r""":math:`|x|^2 = x \bar x`, real for complex ``x`` (``x * x`` for real ``x``).

    Every second moment of the library (Adam's, RMSprop's, AdaGrad's, AdaDelta's) squares a
    gradient through this function: for complex parameters ``x * x`` is a complex number of the
    wrong phase, not the squared magnitude, and comparing it with 0 is meaningless.
    """
    if jnp.iscomplexobj(x):
        return jnp.real(x) ** 2 + jnp.imag(x) ** 2
    return x * x


def compute_dtype(*dtypes: Any) -> Any:
    """The dtype the arithmetic of one leaf runs in: at least float32.

    bf16 and float16 state and gradients are upcast for the update's arithmetic and the results cast
    back to their storage dtype, so a bf16 model pays no precision for the moving averages' tiny
    increments (``(1 - b2) * g**2`` underflows bf16's 8-bit mantissa); float64 stays float64,
    complex stays complex, and integers compute in float32.
    """
    return jnp.result_type(jnp.float32, *dtypes)


def _shape(x: Any) -> tuple[int, ...]:
    """The shape of an array, a scalar or a ``jax.ShapeDtypeStruct``."""
    return tuple(x.shape) if hasattr(x, "shape") else tuple(jnp.shape(x))


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
        if _shape(u) != _shape(s):
            raise ValueError(
                f"{transform}: the update at {jax.tree_util.keystr(path)} has shape "
                f"{_shape(u)} but the optimizer state there has shape {_shape(s)}. "
                "Call init() on parameters shaped like the gradients you pass to update()."
            )


def map_leaves(
    fn: Callable[..., tuple[jax.Array, ...]], num_outputs: int, tree: Any, *rest: Any
) -> tuple[Any, ...]:
    """Map ``fn`` over leaves of ``tree`` (and the matching leaves of ``rest``).

    ``fn`` returns a tuple of ``num_outputs`` arrays per leaf, computed in one fused expression (so
    XLA reads each input once); the result is a tuple of ``num_outputs`` trees shaped like ``tree``.
    Leaves may be Python or NumPy scalars (``{"a": 1, "b": 2}``): ``fn`` receives them as arrays.
    A tree with no leaves (``optax.masked`` with an all-False mask, a group of ``optax.partition``
    that owns no parameter) maps to ``num_outputs`` copies of its empty structure.
    """
    outer = jax.tree.structure(tree)
    if not jax.tree.leaves(tree):
        return (jax.tree.map(lambda x: x, tree),) * num_outputs
    inner = jax.tree.structure((0,) * num_outputs)
    mapped = jax.tree.map(lambda *xs: fn(*map(jnp.asarray, xs)), tree, *rest)
    return tuple(jax.tree.transpose(outer, inner, mapped))


def explicit_spec(x: Any) -> Any:
    """The ``PartitionSpec`` of ``x`` if it is sharded over a mesh axis of type ``Explicit``.

    Returns ``None`` for everything else (a replicated array, automatic or manual axes, jax
    versions without explicit sharding), where concatenating leaves needs no help.
    """
    typeof = getattr(jax, "typeof", None)
    if typeof is None or not hasattr(jax.sharding, "reshard"):
        return None
    sharding = getattr(typeof(x), "sharding", None)
    spec = getattr(sharding, "spec", None)
    mesh = getattr(sharding, "mesh", None)
    explicit = getattr(getattr(jax.sharding, "AxisType", None), "Explicit", None)
    if spec is None or mesh is None or explicit is None:
        return None
    if not any(axis is not None for axis in spec):
        return None
    if explicit not in tuple(getattr(mesh, "axis_types", ())):
        return None
    return spec


def replicate_explicit(tree: Any) -> Any:
    """Reshard leaves sharded over explicit mesh axes to replicated ones.

    On a mesh with explicit axes (``jax.sharding.AxisType.Explicit``) the sharding is part of an
    array's type, and raveling or concatenating leaves of different shardings is a
    ``ShardingTypeError``. The Newton transforms and ``packed`` work on flat vectors, so such
    leaves are gathered first (:func:`reshard_like` puts results back).
    """

    def leaf(x: Any) -> Any:
        if explicit_spec(x) is None:
            return x
        mesh = jax.typeof(x).sharding.mesh
        return jax.sharding.reshard(
            x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        )

    return jax.tree.map(leaf, tree)


def reshard_like(x: jax.Array, like: Any) -> jax.Array:
    """``x`` resharded like ``like`` if ``like`` is sharded over explicit mesh axes, else ``x``."""
    if explicit_spec(like) is None:
        return x
    return jax.sharding.reshard(x, jax.typeof(like).sharding)
