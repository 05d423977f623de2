"""MLPs trained for a fixed number of steps, their parameters kept at checkpoints: for
experiments that probe trained parameters (the loss along random directions, smoothness
measures) rather than read learning curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_lectures.experiments.data import Dataset
from jaxopt_lectures.experiments.engine.timing import Timer, timed
from jaxopt_lectures.experiments.engine.training import (
    TrainCarry,
    TrainRun,
    cross_entropy,
    init_carry,
    train_step,
)

__all__ = ["Fitted", "fit_mlps"]


class Fitted(NamedTuple):
    """What :func:`fit_mlps` returns per run, NumPy arrays with leading axes (rates, seeds,
    checkpoints): parameters and batch-norm state after ``steps[k]`` steps, and the validation
    accuracy and training loss (inference mode, whole splits) there."""

    params: Any
    bn_state: Any
    val_acc: np.ndarray
    train_loss: np.ndarray
    steps: np.ndarray


def _fit_one(
    run: TrainRun, rate: jax.Array, seed: jax.Array, idx: jax.Array, arrays: tuple[Any, ...]
) -> Any:
    """One run at one rate and seed: ``idx`` (checkpoints, period, batch) indexes the batches."""
    x, y, xv, yv, num_classes = arrays
    n_train = x.shape[0]
    x_both, y_both = jnp.concatenate([x, xv]), jnp.concatenate([y, yv])
    tx = run.optimizer(rate)
    key = jax.random.key(seed)
    carry = init_carry(run.model, tx, key, x.shape[1], num_classes)

    def step(carry: TrainCarry, i: jax.Array) -> tuple[TrainCarry, jax.Array]:
        k = jax.random.fold_in(key, carry.step)
        return train_step(run.model, tx, carry, (x[i], y[i], k))

    def chunk(carry: TrainCarry, idx: jax.Array) -> tuple[TrainCarry, Any]:
        carry, _ = jax.lax.scan(step, carry, idx)
        # Both splits in one forward pass (inference mode): a second pass compiles a second time.
        logits, _ = run.model.apply(carry.params, carry.bn_state, x_both, training=False)
        train_loss = cross_entropy(logits[:n_train], y_both[:n_train])
        val_acc = jnp.mean(jnp.argmax(logits[n_train:], axis=-1) == y_both[n_train:])
        return carry, (carry.params, carry.bn_state, val_acc, train_loss)

    _, saved = jax.lax.scan(chunk, carry, idx)
    return saved


# Long: one compiled program; its jitted closure reads best next to what it closes over.
def fit_mlps(
    runs: Mapping[str, TrainRun],
    data: Dataset,
    *,
    steps: int,
    seeds: Sequence[int],
    checkpoints: int = 1,
    batch_size: int = 64,
    timer: Timer | None = None,
    short: bool = False,
) -> dict[str, Fitted]:
    """Train every run at each of its rates and seeds for ``steps`` mini-batch steps, in one
    compiled program, keeping the parameters at ``checkpoints`` evenly spaced steps (the last
    one at ``steps``) with their validation accuracy and training loss.

    A lighter sibling of :func:`~jaxopt_lectures.experiments.engine.train` (no per-epoch
    curves, no early stopping: less to compile). NumPy draws the mini-batches (with replacement)
    from each seed, the same for every run and rate. ``timer`` collects the compile and run
    time; ``short`` marks the program short (:func:`~jaxopt_lectures.experiments.engine.timed`).
    """
    if steps < 1 or checkpoints < 1 or steps % checkpoints:
        raise ValueError(f"checkpoints ({checkpoints}) must divide steps ({steps}), both >= 1")
    n = len(data.x_train)
    period = steps // checkpoints
    batches = np.stack(
        [np.random.default_rng(s).integers(0, n, (checkpoints, period, batch_size)) for s in seeds]
    )
    # device_put, as in engine.training: jnp.asarray would compile a small program per array.
    arrays = (
        jax.device_put(data.x_train),
        jax.device_put(data.y_train),
        jax.device_put(data.x_val),
        jax.device_put(data.y_val),
        data.num_classes,
    )

    @jax.jit
    def fit_all(rates: list[jax.Array], seed_arr: jax.Array, batches: jax.Array) -> list[Any]:
        out = []
        for run, r in zip(runs.values(), rates, strict=True):
            per_seed = jax.vmap(
                lambda lr, s, b, run=run: _fit_one(run, lr, s, b, arrays), (None, 0, 0)
            )
            out.append(jax.vmap(per_seed, (0, None, None))(r, seed_arr, batches))
        return out

    rates = [jax.device_put(np.asarray(r.learning_rates, np.float32)) for r in runs.values()]
    seed_arr = jax.device_put(np.asarray(seeds, np.uint32))
    out = timed(
        "fit",
        fit_all,
        rates,
        seed_arr,
        jax.device_put(batches),
        timer=timer,
        short=short,
    )
    out = jax.tree.map(np.asarray, out)
    at = np.arange(1, checkpoints + 1) * period
    return {
        name: Fitted(params=o[0], bn_state=o[1], val_acc=o[2], train_loss=o[3], steps=at)
        for name, o in zip(runs, out, strict=True)
    }
