"""Training runs of an MLP on a classification data set, compiled with ``lax.scan``.

:func:`train` compiles a list of :class:`TrainRun` into one program. Every run is a ``lax.scan``
over evaluation periods of a ``lax.scan`` over mini-batch steps, ``vmap``-ed over its learning
rates and over the seeds. At every evaluation it records the training and validation loss and
accuracy, and it keeps the parameters with the best validation loss (early stopping: the returned
test numbers are those of the best-validation parameters, and of the last ones for comparison).

Compiling everything an experiment needs as one program matters on a CPU: XLA's compile time is a
large share of a short experiment, and one program with seven training runs compiles about 2.5x
faster than seven programs with one run each.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxopt_lectures as jl
from jaxopt_lectures._checks import check_int
from jaxopt_lectures._tree import tree_norm
from jaxopt_lectures.experiments.data import Dataset
from jaxopt_lectures.experiments.engine.timing import Timer, timed
from jaxopt_lectures.experiments.engine.trajectories import OptimizerFactory

__all__ = [
    "MLP",
    "History",
    "TrainCarry",
    "TrainRun",
    "cross_entropy",
    "init_carry",
    "train",
    "train_step",
]

Probe = Callable[["MLP", Any, Any, tuple[jax.Array, ...]], dict[str, jax.Array]]


# The architecture of the trained networks: jl.nn's MLP configuration (kept under this name too).
MLP = jl.nn.MLPConfig


class TrainRun(NamedTuple):
    """One training configuration, run at every learning rate in ``learning_rates``.

    ``optimizer`` maps a (traced) learning rate to a gradient transformation, e.g.
    ``jl.adam`` or ``lambda lr: jl.momentum(lr, momentum=0.9)``; the rates are ``vmap``-ed. An entry
    may also be a tuple of hyperparameters, passed on as one array (see :func:`select_optimizer`).
    ``data`` overrides the data set given to :func:`train` (to compare raw and standardized
    inputs).
    """

    optimizer: OptimizerFactory
    learning_rates: tuple[Any, ...]
    model: MLP
    data: Dataset | None = None


class History(NamedTuple):
    """What a :class:`TrainRun` recorded, as NumPy arrays.

    Arrays of curves have shape ``(num_rates, num_seeds, num_evals + 1)``: entry 0 is before the
    first step, entry i after ``steps[i]`` steps. Losses are the mean cross-entropy, accuracies
    fractions, both in inference mode (no dropout; batch norm with its moving averages) on the
    whole split. ``best_index`` is the evaluation with the lowest validation loss (early stopping
    restores the parameters of that moment) and ``test_*`` are measured with those parameters,
    ``final_test_*`` with the last ones (shape ``(num_rates, num_seeds)``). ``probes`` holds the
    curves of any probe (``"param_norm"``, the global norm of the parameters, always).
    ``checkpoints`` (when asked for) is ``(params, bn_state)`` with leading axes
    ``(num_rates, num_seeds, num_checkpoints)``, taken after ``checkpoint_steps`` steps.
    """

    learning_rates: np.ndarray
    seeds: np.ndarray
    steps: np.ndarray
    steps_per_epoch: int
    train_loss: np.ndarray
    train_acc: np.ndarray
    val_loss: np.ndarray
    val_acc: np.ndarray
    best_index: np.ndarray
    test_loss: np.ndarray
    test_acc: np.ndarray
    final_test_loss: np.ndarray
    final_test_acc: np.ndarray
    probes: dict[str, np.ndarray]
    checkpoints: Any = None
    checkpoint_steps: np.ndarray | None = None

    @property
    def epochs(self) -> np.ndarray:
        """The evaluation points in epochs (``steps / steps_per_epoch``)."""
        return self.steps / self.steps_per_epoch


class TrainCarry(NamedTuple):
    """The state threaded through training steps."""

    params: Any
    bn_state: Any
    opt_state: Any
    step: jax.Array


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of integer labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def init_carry(
    model: MLP,
    tx: optax.GradientTransformation,
    key: jax.Array,
    num_features: int,
    num_classes: int,
) -> TrainCarry:
    """Parameters from ``key``, an empty batch-norm state and the optimizer's initial state."""
    params, bn_state = model.init_params(key, num_features, num_classes)
    return TrainCarry(params, bn_state, tx.init(params), jnp.zeros([], jnp.int32))


def train_step(
    model: MLP,
    tx: optax.GradientTransformation,
    carry: TrainCarry,
    batch: tuple[jax.Array, jax.Array, jax.Array],
) -> tuple[TrainCarry, jax.Array]:
    """One mini-batch step: the loss and its gradient on ``batch = (x, y, key)``, one update.

    The key drives dropout; batch norm normalizes with the batch's statistics and its moving
    averages are carried to the next step. Returns the new carry and the mini-batch loss.
    """
    x, y, key = batch

    def loss_fn(params: Any) -> tuple[jax.Array, Any]:
        logits, bn_state = model.apply(params, carry.bn_state, x, training=True, key=key)
        return cross_entropy(logits, y), bn_state

    (loss, bn_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(carry.params)
    updates, opt_state = tx.update(grads, carry.opt_state, carry.params)
    params = optax.apply_updates(carry.params, updates)
    return TrainCarry(params, bn_state, opt_state, carry.step + 1), loss


def _evaluate(
    model: MLP, params: Any, bn_state: Any, x: jax.Array, y: jax.Array
) -> tuple[jax.Array, jax.Array]:
    logits, _ = model.apply(params, bn_state, x, training=False)
    return cross_entropy(logits, y), jnp.mean(jnp.argmax(logits, axis=-1) == y)


class _Schedule(NamedTuple):
    """The static shape of a training run, checked once by :func:`_schedule`."""

    epochs: int
    batch_size: int
    steps_per_epoch: int
    eval_every: int
    num_evals: int
    checkpoint_every: int | None
    num_classes: int


class _RunOutput(NamedTuple):
    """What one (run, rate, seed) returns from inside the compiled program."""

    curves: dict[str, jax.Array]  # one value per evaluation: losses, accuracies, probes
    best_index: jax.Array
    test_loss: jax.Array
    test_acc: jax.Array
    final_test_loss: jax.Array
    final_test_acc: jax.Array
    checkpoints: Any


@functools.partial(jax.jit, static_argnums=1)
def _epoch_keys(seed: jax.Array, epochs: int) -> jax.Array:
    """The raw keys of every epoch's order: the seed's second subkey, split once per epoch."""
    key_order = jax.random.split(jax.random.key(seed), 3)[1]
    return jax.random.key_data(jax.random.split(key_order, epochs))


@functools.partial(jax.jit, static_argnums=1)
def _permutation(key_data: jax.Array, n: int) -> jax.Array:
    return jax.random.permutation(jax.random.wrap_key_data(key_data), n)


def _batch_orders(seeds: Sequence[int], n_train: int, s: _Schedule) -> np.ndarray:
    """Indices of every mini-batch, shaped (seeds, evaluations, steps per evaluation, batch):
    every epoch visits the training set in a fresh random order, dropping the remainder.

    Computed before the training program, by two small programs that the :func:`train` calls
    share (one per training-set size, one per power-of-two count of epochs): inside the training
    program the permutations (a sort per epoch) took a fifth of its compile time. The keys: the
    seed's second subkey (the training program takes the first for the initialization and the
    third for dropout), split once per epoch."""
    used = s.steps_per_epoch * s.batch_size
    # With JAX's partitionable threefry (the default) the first n keys of a split into more are
    # the split into n: splitting into a power of two shares the program between epoch counts.
    count = 1 << max(6, (s.epochs - 1).bit_length())
    exact = not getattr(jax.config, "jax_threefry_partitionable", True)
    orders = np.empty((len(seeds), s.epochs, used), np.int32)
    for i, seed in enumerate(seeds):
        keys = np.asarray(_epoch_keys(np.uint32(seed), s.epochs if exact else count))
        for epoch, key in enumerate(keys[: s.epochs]):
            orders[i, epoch] = np.asarray(_permutation(key, n_train))[:used]
    return orders.reshape(len(seeds), s.num_evals, s.eval_every, s.batch_size)


def _measure_fn(
    run: TrainRun, arrays: tuple[jax.Array, ...], probe: Probe | None
) -> Callable[[TrainCarry], dict[str, jax.Array]]:
    """Losses and accuracies on the whole training and validation splits (one forward pass for
    both, inference mode), the parameters' norm, and the probe's values."""
    x_train, y_train, x_val, y_val, _, _ = arrays
    n_train = x_train.shape[0]
    x_both = jnp.concatenate([x_train, x_val])
    y_both = jnp.concatenate([y_train, y_val])

    def measure(carry: TrainCarry) -> dict[str, jax.Array]:
        logits, _ = run.model.apply(carry.params, carry.bn_state, x_both, training=False)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, y_both)
        hits = jnp.argmax(logits, axis=-1) == y_both
        out = {
            "train_loss": jnp.mean(losses[:n_train]),
            "train_acc": jnp.mean(hits[:n_train]),
            "val_loss": jnp.mean(losses[n_train:]),
            "val_acc": jnp.mean(hits[n_train:]),
            "param_norm": tree_norm(carry.params),
        }
        if probe is not None:
            out.update(probe(run.model, carry.params, carry.bn_state, arrays))
        return out

    return measure


def _checkpoint_buffers(carry: TrainCarry, s: _Schedule) -> tuple[Any, int]:
    """Buffers for the checkpoints (slot 0 = the initialization) and the evaluations between
    two checkpoints."""
    every = s.checkpoint_every or s.num_evals + 1
    num_checkpoints = s.num_evals // every + 1
    saved = jax.tree.map(
        lambda a: jnp.zeros((num_checkpoints, *a.shape), a.dtype).at[0].set(a),
        (carry.params, carry.bn_state),
    )
    return saved, every


def _train_one(
    run: TrainRun,
    learning_rate: jax.Array,
    seed: jax.Array,
    batches: jax.Array,
    arrays: tuple[jax.Array, ...],
    s: _Schedule,
    probe: Probe | None,
) -> _RunOutput:
    """One seed at one learning rate (traceable): scan over evaluation periods of a scan over
    steps (the mini-batches' indices ``batches`` from :func:`_batch_orders`), keeping the
    best-validation parameters; the test numbers of the best and the last."""
    x_train, y_train, _, _, x_test, y_test = arrays
    tx = run.optimizer(learning_rate)
    key_init, _, key_dropout = jax.random.split(jax.random.key(seed), 3)
    carry = init_carry(run.model, tx, key_init, x_train.shape[1], s.num_classes)
    measure = _measure_fn(run, arrays, probe)

    def step(carry: TrainCarry, idx: jax.Array) -> tuple[TrainCarry, jax.Array]:
        key = jax.random.fold_in(key_dropout, carry.step)
        return train_step(run.model, tx, carry, (x_train[idx], y_train[idx], key))

    # Evaluation 0 is the initialization: its period runs no steps. One scan over every
    # evaluation traces the measurement once (a second copy before the loop doubled its share of
    # the compile time); the branch's predicate is the same in every lane of the vmap, so it
    # stays a branch and the training steps are those of a plain loop.
    best0 = (jnp.zeros([]), jnp.zeros([], jnp.int32), carry.params, carry.bn_state)
    saved0, every = _checkpoint_buffers(carry, s)

    def period(state: tuple[TrainCarry, Any, Any, jax.Array], idx: jax.Array) -> tuple[Any, Any]:
        carry, best, saved, i = state
        carry = jax.lax.cond(i > 0, lambda c: jax.lax.scan(step, c, idx)[0], lambda c: c, carry)
        m = measure(carry)
        # NaN (a diverged run) never counts as better; evaluation 0 is the first best.
        better = (m["val_loss"] < best[0]) | (i == 0)
        best = jax.tree.map(
            lambda new, old: jnp.where(better, new, old),
            (m["val_loss"], i, carry.params, carry.bn_state),
            best,
        )
        if s.checkpoint_every:  # write slot i // every when i is a multiple (else rewrite it)
            slot, take = i // every, i % every == 0
            saved = jax.tree.map(
                lambda buf, a: jax.lax.dynamic_update_index_in_dim(
                    buf, jnp.where(take, a, buf[slot]), slot, 0
                ),
                saved,
                (carry.params, carry.bn_state),
            )
        return (carry, best, saved, i + 1), m

    periods = jnp.concatenate([batches[:1], batches])  # period 0's indices are not used
    (carry, best, saved, _), curves = jax.lax.scan(
        period, (carry, best0, saved0, jnp.zeros([], jnp.int32)), periods
    )
    _, best_index, best_params, best_bn = best
    pair = jax.tree.map(  # the best and the last parameters, tested in one vmap-ed forward pass
        lambda a, b: jnp.stack([a, b]), (best_params, best_bn), (carry.params, carry.bn_state)
    )
    test_loss, test_acc = jax.vmap(lambda p, b: _evaluate(run.model, p, b, x_test, y_test))(*pair)
    checkpoints = saved if s.checkpoint_every else None
    return _RunOutput(
        curves, best_index, test_loss[0], test_acc[0], test_loss[1], test_acc[1], checkpoints
    )


def _arrays(data: Dataset) -> tuple[jax.Array, ...]:
    # device_put copies the NumPy arrays over as they are; jnp.asarray would compile a small
    # program per shape and dtype to do the same.
    return tuple(
        jax.device_put(a)
        for a in (data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test)
    )


# Long for its docstring (24 of 61 lines: arguments, returns).
def train(
    runs: Sequence[TrainRun],
    data: Dataset,
    *,
    epochs: int,
    seeds: Sequence[int] = (0,),
    batch_size: int = 64,
    eval_every: int | None = None,
    probe: Probe | None = None,
    checkpoint_every: int | None = None,
    timer: Timer | None = None,
) -> list[History]:
    """Train every run at each of its learning rates and for every seed, in one compiled program.

    Each (run, rate, seed) trains an MLP with mini-batches of ``batch_size`` for ``epochs``
    passes over the training set (reshuffled every epoch, the remainder dropped), evaluating every
    ``eval_every`` steps (default: once per epoch). The seed fixes the initialization, the order of
    the mini-batches and the dropout masks, so two runs with the same seed differ only by what the
    run changes (the optimizer, the rate, the model).

    Args:
      runs: the configurations; rates and seeds are ``vmap``-ed within a run.
      data: the data set (a run's own ``data`` takes precedence).
      epochs: passes over the training set.
      seeds: the seeds, each one a full repetition.
      batch_size: the mini-batch size m (at most the training set's size).
      eval_every: steps between evaluations; it must divide ``epochs * steps_per_epoch``.
      probe: ``probe(model, params, bn_state, arrays) -> {name: scalar}``, traced and evaluated at
        every evaluation (e.g. the Hessian's top eigenvalue); ``arrays`` are the six split arrays.
      checkpoint_every: keep the parameters and batch-norm state every this many evaluations
        (and at the start) in ``History.checkpoints``, to probe them afterwards.
      timer: collects the compile and run time (:class:`~.timing.Timer`).

    Returns:
      One :class:`History` per run, in order.
    """
    datasets = [run.data or data for run in runs]
    s = _schedule(runs, datasets, seeds, epochs, batch_size, eval_every, checkpoint_every)
    unique = {id(d): d for d in datasets}
    slot = {key: i for i, key in enumerate(unique)}

    def one_run(
        run: TrainRun, rates: jax.Array, seed_arr: jax.Array, orders: jax.Array, arrays: Any
    ) -> Any:
        def single(lr: jax.Array, seed: jax.Array, batches: jax.Array) -> _RunOutput:
            return _train_one(run, lr, seed, batches, arrays, s, probe)

        per_seed = jax.vmap(single, in_axes=(None, 0, 0))
        return jax.vmap(per_seed, in_axes=(0, None, None))(rates, seed_arr, orders)

    @jax.jit
    def train_all(
        rates: list[jax.Array], seed_arr: jax.Array, orders: jax.Array, all_arrays: list[Any]
    ) -> list[Any]:
        return [
            one_run(run, r, seed_arr, orders, all_arrays[slot[id(d)]])
            for run, r, d in zip(runs, rates, datasets, strict=True)
        ]

    rates = [jax.device_put(np.asarray(run.learning_rates, np.float32)) for run in runs]
    if any(r.ndim not in (1, 2) for r in rates):
        raise ValueError("train: learning_rates must be numbers or equal-length tuples of them")
    seed_arr = jax.device_put(np.asarray(seeds, np.uint32))
    orders = jax.device_put(_batch_orders(seeds, len(datasets[0].x_train), s))
    arrays = [_arrays(d) for d in unique.values()]
    outputs = timed("train", train_all, rates, seed_arr, orders, arrays, timer=timer)
    return [_history(run, out, seeds, s) for run, out in zip(runs, outputs, strict=True)]


def _schedule(
    runs: Sequence[TrainRun],
    datasets: Sequence[Dataset],
    seeds: Sequence[int],
    epochs: int,
    batch_size: int,
    eval_every: int | None,
    checkpoint_every: int | None,
) -> _Schedule:
    """Check :func:`train`'s arguments and derive the steps per epoch and evaluations."""
    check_int("epochs", epochs)
    check_int("batch_size", batch_size)
    if not runs or not seeds:
        raise ValueError("train: give at least one run and one seed")
    n_trains = {len(d.x_train) for d in datasets}
    if len(n_trains) != 1 or len({d.num_classes for d in datasets}) != 1:
        raise ValueError("train: every run's data set must have the same splits and classes")
    n_train = n_trains.pop()
    if batch_size > n_train:
        raise ValueError(f"batch_size {batch_size} exceeds the {n_train} training examples")
    steps_per_epoch = n_train // batch_size
    total = epochs * steps_per_epoch
    eval_every = steps_per_epoch if eval_every is None else eval_every
    check_int("eval_every", eval_every)
    if total % eval_every:
        raise ValueError(
            f"eval_every={eval_every} must divide the {total} steps "
            f"({epochs} epochs x {steps_per_epoch} steps)"
        )
    if checkpoint_every is not None:
        check_int("checkpoint_every", checkpoint_every)
    if any(not run.learning_rates for run in runs):
        raise ValueError("train: every run needs at least one learning rate")
    return _Schedule(
        epochs=epochs,
        batch_size=batch_size,
        steps_per_epoch=steps_per_epoch,
        eval_every=eval_every,
        num_evals=total // eval_every,
        checkpoint_every=checkpoint_every,
        num_classes=datasets[0].num_classes,
    )


def _history(run: TrainRun, out: _RunOutput, seeds: Sequence[int], s: _Schedule) -> History:
    """The compiled program's output for one run, as NumPy arrays in a :class:`History`."""
    host: _RunOutput = jax.tree.map(np.asarray, out)  # NumPy arrays from here on
    curves: dict[str, np.ndarray] = dict(host.curves)  # type: ignore[arg-type]
    steps = np.arange(s.num_evals + 1) * s.eval_every
    return History(
        learning_rates=np.asarray(run.learning_rates, np.float64),
        seeds=np.asarray(seeds),
        steps=steps,
        steps_per_epoch=s.steps_per_epoch,
        train_loss=curves.pop("train_loss"),
        train_acc=curves.pop("train_acc"),
        val_loss=curves.pop("val_loss"),
        val_acc=curves.pop("val_acc"),
        best_index=np.asarray(host.best_index),
        test_loss=np.asarray(host.test_loss),
        test_acc=np.asarray(host.test_acc),
        final_test_loss=np.asarray(host.final_test_loss),
        final_test_acc=np.asarray(host.final_test_acc),
        probes=curves,
        checkpoints=host.checkpoints,
        checkpoint_steps=steps[:: s.checkpoint_every] if s.checkpoint_every else None,
    )
