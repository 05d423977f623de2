"""Data-parallel training of the lecture's MLP over a device mesh, with JAX's own sharding.

The global mini-batch is split over the mesh's ``data`` axis; every device computes the loss of
its shard, the loss is averaged across devices (``lax.pmean``) before it is differentiated, batch
norm uses the statistics of the *global* batch (``axis_name``), and the optimizer updates replicated
parameters and state identically everywhere. The result is, up to float rounding, the training of
one device on the same global batches: the tests check it on 8 simulated CPU devices.

The same code runs on several GPUs, TPU cores or hosts (after ``jax.distributed.initialize()``):
only the mesh changes. See ``docs/multi-device.md``.
"""

from __future__ import annotations

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

__all__ = ["data_mesh", "make_train_step", "replicate", "shard_batch", "train_epochs"]

TrainStep = Callable[[Any, Any, Any, jax.Array, jax.Array], tuple[Any, Any, Any, jax.Array]]


def data_mesh(num_devices: int | None = None, axis: str = "data") -> Mesh:
    """A one-axis mesh over the first ``num_devices`` devices (all of them by default)."""
    devices = jax.devices()
    n = len(devices) if num_devices is None else num_devices
    if not 1 <= n <= len(devices):
        raise ValueError(f"num_devices must be in [1, {len(devices)}], got {num_devices}")
    return Mesh(np.array(devices[:n]), (axis,))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Put every leaf of ``tree`` on every device of ``mesh`` (a replicated ``NamedSharding``)."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_batch(tree: Any, mesh: Mesh, axis: str = "data") -> Any:
    """Split the leading (batch) axis of every leaf of ``tree`` over the mesh axis ``axis``."""
    size = mesh.shape[axis]
    for leaf in jax.tree.leaves(tree):
        if leaf.shape[0] % size:
            raise ValueError(
                f"shard_batch: a batch of {leaf.shape[0]} does not split evenly over {size} "
                f"devices along {axis!r}; use a global batch size that is a multiple of {size}."
            )
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
    mesh: Mesh | None = None,
    axis: str = "data",
) -> tuple[Any, Any, Any, np.ndarray]:
    """Run ``epochs`` passes over shuffled global mini-batches; return the state and the losses.

    With ``mesh``, pass ``params`` and ``bn_state`` through :func:`replicate` and create the
    optimizer state with ``jl.init_sharded(tx, params)``, so that nothing is first materialized on
    one device; anything not yet on the mesh is replicated here.
    """
    rng = np.random.default_rng(seed)
    losses = []
    if mesh is not None:
        params, bn_state, opt_state = replicate((params, bn_state, opt_state), mesh)
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x) - batch_size + 1, batch_size):
            idx = order[start : start + batch_size]
            xb, yb = jnp.asarray(x[idx]), jnp.asarray(y[idx])
            if mesh is not None:
                xb, yb = shard_batch((xb, yb), mesh, axis)
            params, bn_state, opt_state, loss = step(params, bn_state, opt_state, xb, yb)
            losses.append(loss)
    return params, bn_state, opt_state, np.asarray(jax.device_get(losses))
