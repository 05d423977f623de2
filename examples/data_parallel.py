"""Data-parallel training of the lecture's MLP (with synchronized batch norm) on every device.

    python examples/data_parallel.py                       # all local devices (GPUs, TPU cores)
    XLA_FLAGS=--xla_force_host_platform_device_count=8 \
        python examples/data_parallel.py                   # simulate 8 devices on a CPU
    python -m jaxopt_lectures.launch -n 2 --local-devices 2 -- \
        examples/data_parallel.py                          # 2 processes x 2 CPU devices, loopback

Under the launcher (or with the environment variables of ``jaxopt_lectures.distributed`` set by
your own scheduler, one process per host) the processes join JAX's distributed runtime, the mesh
spans the devices of all of them, and each process feeds its own rows of every global batch.
``--checkpoint-dir`` saves parameters, optimizer state and batch-norm state (orbax) every
``--checkpoint-every`` epochs; ``--resume`` continues from such a checkpoint, bit for bit.

Needs scikit-learn for the bundled digits data (pip install "jaxopt_lectures[experiments]"), and
orbax-checkpoint for the checkpoints (pip install "jaxopt_lectures[distributed]").
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxopt_lectures as jl
from jaxopt_lectures import distributed, parallel

OPTIMIZERS = {
    "nag": lambda lr: jl.nag(lr, momentum=0.9),
    "adam": lambda lr: jl.adam(lr),
    "sgd": lambda lr: jl.sgd(lr),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs to reach (in total)")
    parser.add_argument("--batch-size", type=int, default=128, help="global batch size")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="nag")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--devices", type=int, default=None, help="mesh size (default: all)")
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    parser.add_argument("--checkpoint-every", type=int, default=1, help="epochs")
    parser.add_argument("--resume", type=Path, default=None, help="a checkpoint to continue")
    parser.add_argument("--x64", action="store_true", help="train in float64")
    parser.add_argument("--save", type=Path, default=None,
                        help="save final state and losses to this .npz")  # fmt: skip
    args = parser.parse_args()
    distributed.initialize()  # joins the other processes, if the launcher started any
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    dtype = np.float64 if args.x64 else np.float32

    x, y = load_digits(dtype)
    x = np.asarray(jax.jit(lambda x: jl.nn.normalize(jl.nn.normalizer_fit(x), x, min_std=1.0))(x))
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    x_train, y_train, x_val, y_val = x[:1400], y[:1400], x[1400:], y[1400:]

    mesh = parallel.data_mesh(args.devices)
    mesh_or_none = mesh if mesh.size > 1 else None  # one device: the plain single-device step
    batch = args.batch_size - args.batch_size % mesh.size  # a multiple of the device count
    print(
        f"process {jax.process_index()} of {jax.process_count()} (pid {os.getpid()}): "
        f"{mesh.size} device(s) of "
        f"{jax.devices()[0].platform} ({jax.local_device_count()} here); global batch {batch}"
    )

    params, bn_state = jl.nn.mlp_init(
        jax.random.key(0), [64, 128, 128, 10], activation="relu", batch_norm=True, dtype=dtype
    )
    tx = OPTIMIZERS[args.optimizer](args.lr)
    step = parallel.make_train_step(tx, activation="relu", mesh=mesh_or_none)
    if mesh_or_none is None:
        opt_state = tx.init(params)
    else:
        params, bn_state = parallel.replicate((params, bn_state), mesh)
        opt_state = jl.init_sharded(tx, params)  # replicated like params, created in place
    epoch = 0
    if args.resume is not None:
        from jaxopt_lectures import checkpoint

        like = _state(params, bn_state, opt_state, epoch, mesh_or_none)
        params, bn_state, opt_state, saved_epoch = checkpoint.restore(args.resume, like)
        epoch = int(np.asarray(saved_epoch))
        print(f"resumed from {args.resume} at epoch {epoch}")

    @jax.jit
    def predict(params: Any, bn_state: Any, x: jax.Array) -> jax.Array:
        logits, _ = jl.nn.mlp_apply(params, bn_state, x, activation="relu", training=False)
        return jnp.argmax(logits, -1)

    losses = []
    while epoch < args.epochs:
        params, bn_state, opt_state, epoch_losses = parallel.train_epochs(
            step, params, bn_state, opt_state, x_train, y_train,
            epochs=1, batch_size=batch, seed=0, first_epoch=epoch, mesh=mesh_or_none,
        )  # fmt: skip
        epoch += 1
        losses.append(epoch_losses)
        # Replicated arrays can be read on every process; evaluate on this host.
        host_params, host_bn = jax.tree.map(np.asarray, (params, bn_state))
        accuracy = float(np.mean(np.asarray(predict(host_params, host_bn, x_val)) == y_val))
        print(f"epoch {epoch}: training loss {epoch_losses.mean():.4f}, validation accuracy "
              f"{accuracy:.3f}")  # fmt: skip
        if args.checkpoint_dir is not None and epoch % args.checkpoint_every == 0:
            from jaxopt_lectures import checkpoint

            start = time.perf_counter()
            path = args.checkpoint_dir / f"epoch_{epoch}"
            checkpoint.save(path, _state(params, bn_state, opt_state, epoch, mesh_or_none))
            print(f"saved {path} in {time.perf_counter() - start:.2f} s")

    if args.save is not None and jax.process_index() == 0:
        leaves = jax.tree.leaves((params, bn_state, opt_state))
        arrays = {f"leaf_{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
        np.savez(args.save, losses=np.concatenate(losses) if losses else np.zeros(0), **arrays)


def load_digits(dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits (1,797 8x8 images) as ``(x, y)``.

    Read straight from the file scikit-learn ships, when it is where it has always been: that
    skips importing scikit-learn, seconds per process when every process of a job loads it.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
        if bundled.is_file():
            data = np.loadtxt(bundled, delimiter=",")
            return data[:, :-1].astype(dtype), data[:, -1].astype(np.int32)
    from sklearn.datasets import load_digits as sklearn_digits

    x, y = sklearn_digits(return_X_y=True)
    return x.astype(dtype), y.astype(np.int32)


def _state(params: Any, bn_state: Any, opt_state: Any, epoch: int, mesh: Any) -> Any:
    """The training state as one pytree, the epoch as a (replicated) array."""
    counter = jnp.int32(epoch) if mesh is None else parallel.replicate(np.int32(epoch), mesh)
    return params, bn_state, opt_state, counter


if __name__ == "__main__":
    main()
