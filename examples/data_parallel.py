"""Data-parallel training of the lecture's MLP (with synchronized batch norm) on every device.

    python examples/data_parallel.py                       # all local devices (GPUs, TPU cores)
    XLA_FLAGS=--xla_force_host_platform_device_count=8 \
        python examples/data_parallel.py                   # simulate 8 devices on a CPU
    python examples/data_parallel.py --distributed         # one process per host, many hosts

Needs scikit-learn for the bundled digits data (pip install "jaxopt_lectures[experiments]").
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import jaxopt_lectures as jl
from jaxopt_lectures import parallel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128, help="global batch size")
    parser.add_argument("--distributed", action="store_true", help="jax.distributed.initialize()")
    args = parser.parse_args()
    if args.distributed:
        # On a cluster (SLURM, a Cloud TPU pod, ...) JAX reads the coordinator address, the number
        # of processes and this process's index from the environment.
        jax.distributed.initialize()

    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = jnp.asarray(x, jnp.float32)
    x = np.asarray(jl.nn.normalize(jl.nn.normalizer_fit(x), x, min_std=1.0))
    y = y.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    x_train, y_train, x_val, y_val = x[:1400], y[:1400], x[1400:], y[1400:]

    mesh = parallel.data_mesh()
    batch = args.batch_size - args.batch_size % mesh.size  # a multiple of the device count
    print(f"{mesh.size} device(s) of {jax.devices()[0].platform}; global batch {batch}")

    params, bn_state = jl.nn.mlp_init(
        jax.random.key(0), [64, 128, 128, 10], activation="relu", batch_norm=True
    )
    tx = jl.nag(0.05, momentum=0.9)
    step = parallel.make_train_step(tx, activation="relu", mesh=mesh)
    params, bn_state = parallel.replicate((params, bn_state), mesh)
    opt_state = jl.init_sharded(tx, params)  # replicated like params, created in place
    for epoch in range(args.epochs):
        params, bn_state, opt_state, losses = parallel.train_epochs(
            step, params, bn_state, opt_state, x_train, y_train,
            epochs=1, batch_size=batch, seed=epoch, mesh=mesh,
        )  # fmt: skip
        logits, _ = jl.nn.mlp_apply(
            params, bn_state, jnp.asarray(x_val), activation="relu", training=False
        )
        accuracy = float(jnp.mean(jnp.argmax(logits, -1) == y_val))
        print(f"epoch {epoch + 1}: training loss {losses.mean():.4f}, validation accuracy "
              f"{accuracy:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
