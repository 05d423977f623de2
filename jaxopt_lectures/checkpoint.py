"""Save and restore training state (parameters, optimizer state, batch-norm state) with orbax.

The state of a multi-process job is held by no single process: each holds the shards on its own
devices. :func:`save` and :func:`restore` are collective (every process calls them with the same
path, which every process can reach: a shared file system, or one machine) and use orbax, the
JAX ecosystem's checkpointing library: each process writes the shards it holds (a replicated
array is written once), the checkpoint appears under its final name only when every process has
finished writing (a half-written checkpoint is never mistaken for a complete one), and a restore
puts every shard straight back on the device that needs it, with the layout of ``like``.

Needs ``orbax-checkpoint`` (``pip install 'jaxopt_lectures[distributed]'``). Arrays are stored
exactly, so a run restored from a checkpoint continues bit for bit like the run that saved it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax

__all__ = ["restore", "save"]


def _orbax() -> Any:
    try:
        import orbax.checkpoint as ocp
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "jaxopt_lectures.checkpoint needs orbax-checkpoint: "
            "pip install 'jaxopt_lectures[distributed]'"
        ) from error
    return ocp


def _path(path: str | os.PathLike[str]) -> Path:
    return Path(path).expanduser().absolute()


def save(path: str | os.PathLike[str], tree: Any) -> None:
    """Write ``tree`` (a pytree of ``jax.Array`` s, any sharding) to the new directory ``path``.

    Collective: every process of the job calls it with the same ``path`` and its own part of the
    same global arrays, and it returns once the checkpoint is complete on disk. ``path`` must not
    exist yet (``ValueError`` otherwise): checkpoints are never overwritten in place.

    Example:
      >>> import tempfile, jax.numpy as jnp
      >>> from jaxopt_lectures import checkpoint
      >>> folder = tempfile.mkdtemp()
      >>> checkpoint.save(f"{folder}/step_10", {"w": jnp.arange(3.0), "step": jnp.int32(10)})
      >>> checkpoint.restore(f"{folder}/step_10", {"w": jnp.zeros(3), "step": jnp.int32(0)})
      {'step': Array(10, dtype=int32), 'w': Array([0., 1., 2.], dtype=float32)}
    """
    ocp = _orbax()
    target = _path(path)
    if target.exists():
        raise ValueError(f"checkpoint.save: {str(target)!r} exists already; use a new path")
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(target, tree)
        checkpointer.wait_until_finished()


def restore(path: str | os.PathLike[str], like: Any) -> Any:
    """Read the checkpoint at ``path`` into arrays shaped, typed and sharded like ``like``.

    ``like`` is a pytree with the structure of the saved one whose leaves are ``jax.Array`` s
    (for instance freshly initialized state placed on the mesh) or ``jax.ShapeDtypeStruct`` s
    with a ``sharding``; only their shapes, dtypes and shardings are used. The result has
    ``like``'s tree structure (NamedTuple states come back as NamedTuples). Collective, like
    :func:`save`.
    """
    ocp = _orbax()
    source = _path(path)
    if not source.is_dir():
        raise ValueError(f"checkpoint.restore: no checkpoint at {str(source)!r}")

    def abstract(leaf: Any) -> jax.ShapeDtypeStruct:
        if isinstance(leaf, jax.ShapeDtypeStruct):
            return leaf
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding)

    target = jax.tree.map(abstract, like)
    with ocp.StandardCheckpointer() as checkpointer:
        restored = checkpointer.restore(source, target)
    return jax.tree.unflatten(jax.tree.structure(like), jax.tree.leaves(restored))
