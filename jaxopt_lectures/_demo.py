"""A short, real demonstration: the lecture's optimizers train the same MLP on handwritten digits.

Used by ``python -m jaxopt_lectures`` until the full lecture reproduction lands. The data is
scikit-learn's bundled digits set (1,797 8x8 images, shipped inside the package, so it works
offline); every epoch is one compiled ``lax.scan`` over shuffled mini-batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxopt_lectures as jl

Params = dict[str, jax.Array]

OPTIMIZERS: dict[str, Callable[[], optax.GradientTransformation]] = {
    "sgd (1/t decay)": lambda: jl.sgd(jl.inverse_time_decay(0.1, decay_rate=0.01, decay_steps=1)),
    "momentum": lambda: jl.momentum(0.01, momentum=0.9),
    "nag": lambda: jl.nag(0.01, momentum=0.9),
    "adagrad": lambda: jl.adagrad(0.05),
    "rmsprop": lambda: jl.rmsprop(1e-3, decay=0.9),
    "adadelta": lambda: jl.adadelta(1.0, rho=0.95),
    "adam": lambda: jl.adam(1e-3),
}


def load_digits(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits split 80/20 into train and validation, standardized with training statistics."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise SystemExit(
            "The demo needs scikit-learn for its bundled digits data: "
            "pip install 'jaxopt_lectures[experiments]'"
        ) from err
    x, y = sk_load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order].astype(np.float32), y[order].astype(np.int32)
    n_train = int(0.8 * len(x))
    mean = x[:n_train].mean(axis=0)
    std = np.maximum(x[:n_train].std(axis=0), 1.0)  # constant border pixels: no division by 0
    x = (x - mean) / std
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def init_mlp(key: jax.Array, sizes: tuple[int, ...]) -> list[Params]:
    """He-initialized dense layers."""
    layers = []
    keys = jax.random.split(key, len(sizes) - 1)
    for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:], strict=True):
        w = jax.random.normal(k, (n_in, n_out)) * jnp.sqrt(2.0 / n_in)
        layers.append({"w": w, "b": jnp.zeros(n_out)})
    return layers


def mlp_loss(layers: list[Params], x: jax.Array, y: jax.Array) -> jax.Array:
    """Mean cross-entropy of a ReLU MLP."""
    h = x
    for layer in layers[:-1]:
        h = jax.nn.relu(h @ layer["w"] + layer["b"])
    logits = h @ layers[-1]["w"] + layers[-1]["b"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def accuracy(layers: list[Params], x: jax.Array, y: jax.Array) -> jax.Array:
    h = x
    for layer in layers[:-1]:
        h = jax.nn.relu(h @ layer["w"] + layer["b"])
    return jnp.mean(jnp.argmax(h @ layers[-1]["w"] + layers[-1]["b"], axis=-1) == y)


def train(
    tx: optax.GradientTransformation,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    epochs: int,
    seed: int,
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Train; return the training and validation loss per epoch (epoch 0 = before training) and
    the final validation accuracy."""
    x_train, y_train, x_val, y_val = (jnp.asarray(a) for a in data)
    num_batches = len(x_train) // batch_size

    @jax.jit
    def epoch(carry: Any, key: jax.Array) -> tuple[Any, jax.Array]:
        def step(carry: Any, idx: jax.Array) -> tuple[Any, jax.Array]:
            params, state = carry
            loss, grads = jax.value_and_grad(mlp_loss)(params, x_train[idx], y_train[idx])
            updates, state = tx.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), loss

        perm = jax.random.permutation(key, len(x_train))[: num_batches * batch_size]
        carry, _ = jax.lax.scan(step, carry, perm.reshape(num_batches, batch_size))
        params = carry[0]
        return carry, jnp.stack(
            [mlp_loss(params, x_train, y_train), mlp_loss(params, x_val, y_val)]
        )

    key_init, key_data = jax.random.split(jax.random.key(seed))
    params = init_mlp(key_init, (x_train.shape[1], 64, 10))
    carry = (params, tx.init(params))
    losses = [[float(mlp_loss(params, x_train, y_train)), float(mlp_loss(params, x_val, y_val))]]
    for key in jax.random.split(key_data, epochs):
        carry, pair = epoch(carry, key)
        losses.append([float(v) for v in pair])
    table = np.asarray(losses)
    return table[:, 0], table[:, 1], float(accuracy(carry[0], x_val, y_val))


def run_demo(epochs: int = 10, seed: int = 0, print_fn: Callable[[str], None] = print) -> dict:
    """Train one MLP per optimizer and print the training loss going down, epoch by epoch."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    data = load_digits(seed)
    print_fn(
        f"Digits: {len(data[0])} training and {len(data[2])} validation images; "
        f"MLP 64-64-10 (ReLU), mini-batches of 64, {epochs} epochs, jax on {jax.default_backend()}."
    )
    shown = sorted({0, 1, 2, epochs // 2, epochs})
    header = f"{'optimizer':<17}" + "".join(f"{'epoch ' + str(e):>10}" for e in shown)
    print_fn("\nTraining loss (cross-entropy) by epoch, then validation loss and accuracy:")
    print_fn(header + f"{'val loss':>10}{'val acc':>9}{'time':>7}")
    results = {}
    for name, make in OPTIMIZERS.items():
        start = time.perf_counter()
        train_loss, val_loss, acc = train(make(), data, epochs, seed)
        elapsed = time.perf_counter() - start
        row = f"{name:<17}" + "".join(f"{train_loss[e]:>10.4f}" for e in shown)
        print_fn(row + f"{val_loss[-1]:>10.4f}{acc:>9.3f}{elapsed:>6.1f}s")
        results[name] = {"train_loss": train_loss, "val_loss": val_loss, "val_accuracy": acc}
    return results
