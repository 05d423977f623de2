"""Data-parallel training of the lecture's MLP over a device mesh, with JAX's own sharding.

The global mini-batch is split over the mesh's ``data`` axis; every device computes the loss of
its shard, the loss is averaged across devices (``lax.pmean``) before it is differentiated, batch
norm uses the statistics of the *global* batch (``axis_name``), and the optimizer updates replicated
parameters and state identically everywhere. The result is, up to float rounding, the training of
one device on the same global batches: the tests check it on 8 simulated CPU devices, and on two
processes (one or two devices each) joined by JAX's distributed runtime.

The same code runs on several GPUs, TPU cores or hosts: start one process per host, call
:func:`jaxopt_lectures.distributed.initialize` (or ``jax.distributed.initialize``) first, and the
mesh spans the devices of every process. Every process runs the same program on the same global
batches; :func:`shard_batch` keeps only the rows that its own devices hold. See
``docs/multi-device.md`` and ``python -m jaxopt_lectures.launch``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxopt_lectures import nn

_shard_map: Any = getattr(jax, "shard_map", None)
if _shard_map is None:  # jax < 0.6
    from jax.experimental.shard_map import shard_map as _shard_map

__all__ = [
    "data_mesh",
    "local_rows",
    "make_train_step",
    "replicate",
    "shard_batch",
    "shard_local_batch",
    "train_epochs",
]

TrainStep = Callable[[Any, Any, Any, jax.Array, jax.Array], tuple[Any, Any, Any, jax.Array]]


def data_mesh(num_devices: int | None = None, axis: str = "data") -> Mesh:
    """A one-axis mesh over the first ``num_devices`` devices (all of them by default)."""
    devices = jax.devices()
    n = len(devices) if num_devices is None else num_devices
    if not 1 <= n <= len(devices):
        raise ValueError(f"num_devices must be in [1, {len(devices)}], got {num_devices}")
    return Mesh(np.array(devices[:n]), (axis,))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Put every leaf of ``tree`` on every device of ``mesh`` (a replicated ``NamedSharding``).

    On a mesh that spans several processes every process must pass the same values (the same
    seed, the same checkpoint); each one fills its own devices from its own copy, and nothing
    is sent between processes.
    """
    sharding = NamedSharding(mesh, PartitionSpec())
    if mesh.is_multi_process:

        def put(leaf: Any) -> jax.Array:
            if isinstance(leaf, jax.Array) and leaf.sharding == sharding:
                return leaf
            host = np.asarray(leaf)
            return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

        return jax.tree.map(put, tree)
    return jax.device_put(tree, sharding)


def _check_divisible(tree: Any, size: int, axis: str, what: str) -> None:
    for leaf in jax.tree.leaves(tree):
        if leaf.shape[0] % size:
            raise ValueError(
                f"{what}: a batch of {leaf.shape[0]} does not split evenly over {size} "
                f"devices along {axis!r}; use a global batch size that is a multiple of {size}."
            )


def local_rows(mesh: Mesh, global_batch_size: int, axis: str = "data") -> slice:
    """The rows of a global batch that this process's devices hold when it is split over ``axis``.

    With one process that is every row. With several, each process needs to load only these rows
    (its part of every global batch) and pass them to :func:`shard_local_batch`.

    Example:
      >>> from jaxopt_lectures import parallel
      >>> parallel.local_rows(parallel.data_mesh(1), 8)  # one process: all rows
      slice(0, 8, None)
    """
    _check_divisible([np.empty((global_batch_size,))], mesh.shape[axis], axis, "local_rows")
    indices = NamedSharding(mesh, PartitionSpec(axis)).addressable_devices_indices_map(
        (global_batch_size,)
    )
    ranges = sorted(
        {i[0].indices(global_batch_size)[:2] for i in indices.values() if i is not None}
    )
    for (_, stop), (start, _) in itertools.pairwise(ranges):
        if stop != start:
            raise ValueError(
                f"local_rows: this process's devices hold non-contiguous rows {ranges} of the "
                f"{axis!r} axis; order the mesh's devices by process (jax.devices() is)."
            )
    return slice(ranges[0][0], ranges[-1][1])


def shard_local_batch(tree: Any, mesh: Mesh, global_batch_size: int, axis: str = "data") -> Any:
    """Assemble a global batch split over ``axis`` from each process's own rows.

    Every process passes its part (``local_rows(mesh, global_batch_size)`` of the global batch);
    the result is one global ``jax.Array`` per leaf, built with
    ``jax.make_array_from_process_local_data``. With one process this is :func:`shard_batch`.
    """
    _check_divisible([np.empty((global_batch_size,))], mesh.shape[axis], axis, "shard_local_batch")
    sharding = NamedSharding(mesh, PartitionSpec(axis))
    rows = local_rows(mesh, global_batch_size, axis)

    def put(leaf: Any) -> jax.Array:
        leaf = np.asarray(leaf)
        if leaf.shape[0] != rows.stop - rows.start:
            raise ValueError(
                f"shard_local_batch: this process holds rows {rows.start}:{rows.stop} of the "
                f"global batch of {global_batch_size}, got a local batch of {leaf.shape[0]}"
            )
        return jax.make_array_from_process_local_data(
            sharding, leaf, (global_batch_size, *leaf.shape[1:])
        )

    return jax.tree.map(put, tree)


def shard_batch(tree: Any, mesh: Mesh, axis: str = "data") -> Any:
    """Split the leading (batch) axis of every leaf of ``tree`` over the mesh axis ``axis``.

    ``tree`` is the whole global batch. On a mesh that spans several processes, every process
    passes the same global batch and keeps only its own rows (:func:`local_rows`); to load only
    those rows in the first place, use :func:`shard_local_batch`.
    """
    _check_divisible(tree, mesh.shape[axis], axis, "shard_batch")
    if mesh.is_multi_process:
        leaves = jax.tree.leaves(tree)
        rows = local_rows(mesh, leaves[0].shape[0], axis)
        local = jax.tree.map(lambda leaf: np.asarray(leaf)[rows], tree)
        return shard_local_batch(local, mesh, leaves[0].shape[0], axis)
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec(axis)))


def make_train_step(
    tx: optax.GradientTransformation,
    *,
    activation: str,
    mesh: Mesh | None = None,
    axis: str = "data",
    bn_decay: float = 0.9,
) -> TrainStep:
    """A jitted training step of an ``nn.mlp`` classifier: one device, or data-parallel.

    ``step(params, bn_state, opt_state, x, y) -> (params, bn_state, opt_state, loss)`` with
    ``loss`` the mean cross-entropy of the global batch before the update. With ``mesh`` the batch
    ``x, y`` is expected split over ``axis`` (:func:`shard_batch`) and the rest replicated
    (:func:`replicate`); each device differentiates the global mean loss (a ``pmean`` of the
    shards' means), so the gradient, replicated on every device, is that of one device on the
    whole batch, and batch norm's statistics are those of the global batch. Without ``mesh`` it
    is the plain single-device step on the same batch.
    """
    axis_name = axis if mesh is not None else None

    def local_step(params: Any, bn_state: Any, opt_state: Any, x: jax.Array, y: jax.Array) -> Any:
        def loss_fn(p: Any) -> tuple[jax.Array, Any]:
            logits, new_bn = nn.mlp_apply(
                p,
                bn_state,
                x,
                activation=activation,
                training=True,
                bn_decay=bn_decay,
                axis_name=axis_name,
            )
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            if axis_name is not None:
                # The mean over the global batch (equal shards). Differentiating it, rather than
                # averaging per-device gradients afterwards, also counts how each example moves
                # the *global* batch-norm statistics that every device's loss depends on.
                loss = lax.pmean(loss, axis_name)
            return loss, new_bn

        (loss, new_bn), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_bn, opt_state, loss

    if mesh is None:
        return jax.jit(local_step)
    replicated, split = PartitionSpec(), PartitionSpec(axis)
    mapped = _shard_map(
        local_step,
        mesh=mesh,
        in_specs=(replicated, replicated, replicated, split, split),
        out_specs=(replicated, replicated, replicated, replicated),
    )
    return jax.jit(mapped, donate_argnums=(0, 1, 2))


def train_epochs(
    step: TrainStep,
    params: Any,
    bn_state: Any,
    opt_state: Any,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    first_epoch: int = 0,
    mesh: Mesh | None = None,
    axis: str = "data",
) -> tuple[Any, Any, Any, np.ndarray]:
    """Run ``epochs`` passes over shuffled global mini-batches; return the state and the losses.

    Epoch ``e`` visits the examples in the order ``np.random.default_rng((seed, e))`` draws, so
    a run that stops after epoch ``k`` (and saves its state) and continues with
    ``first_epoch=k`` sees the same batches as one that never stopped. Every process of a
    multi-process mesh draws the same order and feeds its own rows of each batch.

    With ``mesh``, pass ``params`` and ``bn_state`` through :func:`replicate` and create the
    optimizer state with ``jl.init_sharded(tx, params)``, so that nothing is first materialized on
    one device; anything not yet on the mesh is replicated here.
    """
    losses = []
    if mesh is not None:
        params, bn_state, opt_state = replicate((params, bn_state, opt_state), mesh)
    for epoch in range(first_epoch, first_epoch + epochs):
        order = np.random.default_rng((seed, epoch)).permutation(len(x))
        for start in range(0, len(x) - batch_size + 1, batch_size):
            idx = order[start : start + batch_size]
            if mesh is not None:
                xb, yb = shard_batch((x[idx], y[idx]), mesh, axis)
            else:
                xb, yb = jnp.asarray(x[idx]), jnp.asarray(y[idx])
            params, bn_state, opt_state, loss = step(params, bn_state, opt_state, xb, yb)
            losses.append(loss)
    return params, bn_state, opt_state, np.asarray(jax.device_get(losses))
