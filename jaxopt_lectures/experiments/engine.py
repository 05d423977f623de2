"""The experiment engine: whole trajectories and whole training runs compiled with ``lax.scan``.

Two kinds of work, both pure functions of their inputs, compiled once per experiment:

- **Trajectories** of an optimizer on a small problem (the lecture's quadratic, Rosenbrock, ...):
  :func:`run_trajectories` runs many optimizer/problem pairs in one compiled program, each a
  ``lax.scan`` over the steps; :func:`sweep_trajectories` runs one optimizer at many learning rates
  with ``vmap``.
- **Training runs** of an MLP on a classification data set: :func:`train` compiles a list of
  :class:`TrainRun` into one program. Every run is a ``lax.scan`` over evaluation periods of a
  ``lax.scan`` over mini-batch steps, ``vmap``-ed over its learning rates and over the seeds. At
  every evaluation it records the training and validation loss and accuracy, and it keeps the
  parameters with the best validation loss (early stopping: the returned test numbers are those of
  the best-validation parameters, and of the last ones for comparison).

Compiling everything an experiment needs as one program matters on a CPU: XLA's compile time is a
large share of a short experiment, and one program with seven training runs compiles about 2.5x
faster than seven programs with one run each.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxopt_lectures as jl
from jaxopt_lectures.experiments.data import Dataset

__all__ = [
    "MLP",
    "History",
    "TrainCarry",
    "TrainRun",
    "Trajectory",
    "TrajectoryJob",
    "cross_entropy",
    "first_reach",
    "init_carry",
    "run_trajectories",
    "select_optimizer",
    "sweep_trajectories",
    "timed",
    "train",
    "train_step",
]

K = TypeVar("K")

# (what, compile seconds, run seconds) of every program the engine compiled in this process: the
# CLI reports the share of compile time.
TIMINGS: list[tuple[str, float, float]] = []
LossFn = Callable[[jax.Array], jax.Array]
OptimizerFactory = Callable[[Any], optax.GradientTransformation]
Probe = Callable[["MLP", Any, Any, tuple[jax.Array, ...]], dict[str, jax.Array]]


# ------------------------------------------------------------------------------------------------
# Trajectories on small problems
# ------------------------------------------------------------------------------------------------


class Trajectory(NamedTuple):
    """The iterates of an optimizer: ``points[t]`` after t steps (``points[0]`` = the start) and
    ``losses[t]`` = loss(points[t]). Leading axes are added by sweeps."""

    points: Any
    losses: Any


class TrajectoryJob(NamedTuple):
    """One optimizer on one problem: minimize ``loss_fn`` from ``x0`` with ``optimizer``."""

    loss_fn: LossFn
    x0: Any
    optimizer: optax.GradientTransformation


def _trajectory(
    loss_fn: LossFn, x0: jax.Array, tx: optax.GradientTransformation, num_steps: int
) -> Trajectory:
    """``num_steps`` steps of ``tx`` on ``loss_fn`` as one ``lax.scan`` (traceable, not jitted).

    The loss is passed to every update as the extra argument ``value_fn``, which Newton's
    transforms need and the first-order ones ignore.
    """
    x0 = jnp.asarray(x0, jnp.float32)

    def step(carry: tuple[jax.Array, Any], _: None) -> tuple[tuple[jax.Array, Any], jax.Array]:
        x, state = carry
        grads = jax.grad(loss_fn)(x)
        updates, state = tx.update(grads, state, x, value_fn=loss_fn)
        x = optax.apply_updates(x, updates)
        return (x, state), x

    _, xs = jax.lax.scan(step, (x0, tx.init(x0)), None, length=num_steps)
    points = jnp.concatenate([x0[None], xs])
    return Trajectory(points=points, losses=jax.vmap(loss_fn)(points))


def run_trajectories(jobs: Mapping[K, TrajectoryJob], num_steps: int) -> dict[K, Trajectory]:
    """Run every job for ``num_steps`` steps, all in one compiled program.

    Args:
      jobs: ``{key: TrajectoryJob(loss_fn, x0, optimizer)}``; the optimizers may have different
        state types (SGD, Adam, Newton ...), which is why they are compiled side by side and not
        ``vmap``-ed.
      num_steps: the number of updates.

    Returns:
      ``{key: Trajectory}`` with NumPy arrays: ``points`` of shape ``(num_steps + 1, *x0.shape)``
      and ``losses`` of shape ``(num_steps + 1,)``. A diverging run shows as inf or NaN.

    Example:
      >>> import jax.numpy as jnp, jaxopt_lectures as jl
      >>> from jaxopt_lectures.experiments.engine import TrajectoryJob, run_trajectories
      >>> loss = lambda x: jnp.sum(x**2)
      >>> out = run_trajectories({"gd": TrajectoryJob(loss, jnp.ones(2), jl.sgd(0.25))}, 3)
      >>> out["gd"].losses.tolist()
      [2.0, 0.5, 0.125, 0.03125]
    """
    _check_count("num_steps", num_steps)
    keys = list(jobs)

    @jax.jit
    def run_all(x0s: list[jax.Array]) -> list[Trajectory]:
        return [
            _trajectory(jobs[k].loss_fn, x0, jobs[k].optimizer, num_steps)
            for k, x0 in zip(keys, x0s, strict=True)
        ]

    results = timed("trajectories", run_all, [jnp.asarray(jobs[k].x0, jnp.float32) for k in keys])
    return {k: _to_numpy(r) for k, r in zip(keys, results, strict=True)}


def sweep_trajectories(
    make_optimizer: OptimizerFactory,
    loss_fn: LossFn,
    x0: Any,
    learning_rates: Sequence[float] | np.ndarray,
    num_steps: int,
) -> Trajectory:
    """One optimizer at many learning rates, ``vmap``-ed: one compiled trajectory for all of them.

    Args:
      make_optimizer: ``learning_rate -> GradientTransformation``; called with a traced scalar,
        so every rate shares one state type (``lambda lr: jl.sgd(lr)``).
      loss_fn, x0: the problem.
      learning_rates: the rates to sweep.
      num_steps: the number of updates.

    Returns:
      A :class:`Trajectory` of NumPy arrays with a leading axis over the rates: ``points`` of
      shape ``(num_rates, num_steps + 1, *x0.shape)``. The numbers are those of running each rate
      on its own (the tests check it).
    """
    _check_count("num_steps", num_steps)
    rates = jnp.asarray(np.asarray(learning_rates, np.float32))

    @jax.jit
    def sweep(rates: jax.Array, x0: jax.Array) -> Trajectory:
        return jax.vmap(lambda lr: _trajectory(loss_fn, x0, make_optimizer(lr), num_steps))(rates)

    return _to_numpy(timed("sweep", sweep, rates, jnp.asarray(x0, jnp.float32)))


# ------------------------------------------------------------------------------------------------
# Training an MLP
# ------------------------------------------------------------------------------------------------


class MLP(NamedTuple):
    """An MLP as :func:`jaxopt_lectures.nn.mlp_init` / :func:`~jaxopt_lectures.nn.mlp_apply`
    build it: the hidden layer sizes (input and output sizes come from the data), the activation,
    batch norm before every activation, dropout after it, and the initialization (``None``: He for
    ReLU, Glorot otherwise)."""

    hidden: tuple[int, ...]
    activation: str = "relu"
    batch_norm: bool = False
    dropout_rate: float = 0.0
    init: str | None = None

    def describe(self) -> str:
        """For instance ``"2x128 relu"`` or ``"3x100 sigmoid + batch norm"``."""
        sizes = set(self.hidden)
        shape = (
            f"{len(self.hidden)}x{self.hidden[0]}"
            if len(sizes) == 1
            else "-".join(map(str, self.hidden))
        )
        extras = [" + batch norm" if self.batch_norm else ""]
        if self.dropout_rate:
            extras.append(f" + dropout {self.dropout_rate:g}")
        return f"{shape} {self.activation}" + "".join(extras)


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


def select_optimizer(
    factories: Sequence[OptimizerFactory],
) -> Callable[[Any], optax.GradientTransformationExtraArgs]:
    """One optimizer factory that ``vmap`` can map over *different* optimizers.

    ``select_optimizer([f_0, ..., f_n])((i, lr))`` behaves exactly like ``f_i(lr)``: its state is
    the tuple of all the optimizers' states (so every choice has the same state type) and its
    update runs the i-th one with ``lax.switch``. Give a :class:`TrainRun` the hyperparameters
    ``((0, lr_0), (1, lr_1), ...)`` and the optimizers become lanes of one ``vmap`` (under
    ``vmap`` the switch computes every branch and selects, which costs the optimizers' elementwise
    work n times but compiles one training loop instead of n, about half the compile time for the
    lecture's seven optimizers). The numbers are those of separate runs (the tests check it).

    Example:
      >>> import jax.numpy as jnp, jaxopt_lectures as jl
      >>> from jaxopt_lectures.experiments.engine import select_optimizer
      >>> tx = select_optimizer([jl.sgd, jl.adam])(jnp.array([1.0, 0.1]))  # adam(0.1)
      >>> updates, _ = tx.update(jnp.array([3.0]), tx.init(jnp.zeros(1)))
      >>> round(float(updates[0]), 4)  # Adam's first step: -lr * sign(g)
      -0.1
    """
    factories = list(factories)

    def make(hyper: Any) -> optax.GradientTransformationExtraArgs:
        hyper = jnp.asarray(hyper)
        index = hyper[0].astype(jnp.int32)
        txs = [factory(hyper[1]) for factory in factories]

        def init_fn(params: Any) -> tuple[Any, ...]:
            return tuple(tx.init(params) for tx in txs)

        def update_fn(
            updates: Any, state: tuple[Any, ...], params: Any = None, **extra_args: Any
        ) -> tuple[Any, tuple[Any, ...]]:
            def branch(i: int) -> Callable[[Any], Any]:
                def apply(operands: Any) -> Any:
                    grads, states, p = operands
                    new, state_i = txs[i].update(grads, states[i], p, **extra_args)
                    return new, (*states[:i], state_i, *states[i + 1 :])

                return apply

            branches = [branch(i) for i in range(len(txs))]
            return jax.lax.switch(index, branches, (updates, state, params))

        return optax.GradientTransformationExtraArgs(init_fn, update_fn)

    return make


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of integer labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _forward(
    model: MLP,
    params: Any,
    bn_state: Any,
    x: jax.Array,
    *,
    training: bool,
    key: jax.Array | None = None,
) -> tuple[jax.Array, Any]:
    return jl.nn.mlp_apply(
        params,
        bn_state,
        x,
        activation=model.activation,
        training=training,
        key=key,
        dropout_rate=model.dropout_rate if training else 0.0,
    )


def init_carry(
    model: MLP,
    tx: optax.GradientTransformation,
    key: jax.Array,
    num_features: int,
    num_classes: int,
) -> TrainCarry:
    """Parameters from ``key``, an empty batch-norm state and the optimizer's initial state."""
    sizes = [num_features, *model.hidden, num_classes]
    params, bn_state = jl.nn.mlp_init(
        key, sizes, activation=model.activation, batch_norm=model.batch_norm, init=model.init
    )
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
        logits, bn_state = _forward(model, params, carry.bn_state, x, training=True, key=key)
        return cross_entropy(logits, y), bn_state

    (loss, bn_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(carry.params)
    updates, opt_state = tx.update(grads, carry.opt_state, carry.params)
    params = optax.apply_updates(carry.params, updates)
    return TrainCarry(params, bn_state, opt_state, carry.step + 1), loss


def _evaluate(
    model: MLP, params: Any, bn_state: Any, x: jax.Array, y: jax.Array
) -> tuple[jax.Array, jax.Array]:
    logits, _ = _forward(model, params, bn_state, x, training=False)
    return cross_entropy(logits, y), jnp.mean(jnp.argmax(logits, axis=-1) == y)


def _param_norm(params: Any) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(params)))


def _train_one(
    run: TrainRun,
    learning_rate: jax.Array,
    seed: jax.Array,
    arrays: tuple[jax.Array, ...],
    *,
    num_classes: int,
    epochs: int,
    batch_size: int,
    eval_every: int,
    probe: Probe | None,
    checkpoint_every: int | None,
) -> dict[str, Any]:
    """One seed at one learning rate (traceable): scan over evaluation periods of a scan over
    steps. Returns the curves and the test numbers of the best and the last parameters."""
    x_train, y_train, x_val, y_val, x_test, y_test = arrays
    n_train = x_train.shape[0]
    steps_per_epoch = n_train // batch_size
    num_evals = epochs * steps_per_epoch // eval_every
    tx = run.optimizer(learning_rate)
    key_init, key_order, key_dropout = jax.random.split(jax.random.key(seed), 3)
    carry = init_carry(run.model, tx, key_init, x_train.shape[1], num_classes)

    # Every epoch visits the training set in a fresh random order, dropping the remainder.
    order = jax.vmap(lambda k: jax.random.permutation(k, n_train)[: steps_per_epoch * batch_size])(
        jax.random.split(key_order, epochs)
    )
    batches = order.reshape(num_evals, eval_every, batch_size)

    x_both = jnp.concatenate([x_train, x_val])  # one forward pass for both splits
    y_both = jnp.concatenate([y_train, y_val])

    def measure(carry: TrainCarry) -> dict[str, jax.Array]:
        logits, _ = _forward(run.model, carry.params, carry.bn_state, x_both, training=False)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, y_both)
        hits = jnp.argmax(logits, axis=-1) == y_both
        train_loss, val_loss = jnp.mean(losses[:n_train]), jnp.mean(losses[n_train:])
        train_acc, val_acc = jnp.mean(hits[:n_train]), jnp.mean(hits[n_train:])
        out = {
            "train_loss": train_loss,
            "train_acc": train_acc,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "param_norm": _param_norm(carry.params),
        }
        if probe is not None:
            out.update(probe(run.model, carry.params, carry.bn_state, arrays))
        return out

    def step(carry: TrainCarry, idx: jax.Array) -> tuple[TrainCarry, jax.Array]:
        key = jax.random.fold_in(key_dropout, carry.step)
        return train_step(run.model, tx, carry, (x_train[idx], y_train[idx], key))

    first = measure(carry)
    best0 = (first["val_loss"], jnp.zeros([], jnp.int32), carry.params, carry.bn_state)
    every = checkpoint_every or num_evals + 1
    num_checkpoints = num_evals // every + 1
    saved0 = jax.tree.map(  # slot 0 = the initialization
        lambda a: jnp.zeros((num_checkpoints, *a.shape), a.dtype).at[0].set(a),
        (carry.params, carry.bn_state),
    )

    def period(state: tuple[TrainCarry, Any, Any, jax.Array], idx: jax.Array) -> tuple[Any, Any]:
        carry, best, saved, i = state
        carry, _ = jax.lax.scan(step, carry, idx)
        m = measure(carry)
        better = m["val_loss"] < best[0]  # NaN (a diverged run) never counts as better
        best = jax.tree.map(
            lambda new, old: jnp.where(better, new, old),
            (m["val_loss"], i, carry.params, carry.bn_state),
            best,
        )
        if checkpoint_every:  # write slot i // every when i is a multiple (else rewrite it as is)
            slot, take = i // every, i % every == 0
            saved = jax.tree.map(
                lambda buf, a: jax.lax.dynamic_update_index_in_dim(
                    buf, jnp.where(take, a, buf[slot]), slot, 0
                ),
                saved,
                (carry.params, carry.bn_state),
            )
        return (carry, best, saved, i + 1), m

    (carry, best, saved, _), curves = jax.lax.scan(
        period, (carry, best0, saved0, jnp.ones([], jnp.int32)), batches
    )
    curves = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, curves)
    _, best_index, best_params, best_bn = best
    pair = jax.tree.map(  # the best and the last parameters, tested in one vmap-ed forward pass
        lambda a, b: jnp.stack([a, b]), (best_params, best_bn), (carry.params, carry.bn_state)
    )
    test_loss, test_acc = jax.vmap(lambda p, s: _evaluate(run.model, p, s, x_test, y_test))(*pair)
    return {
        "curves": curves,
        "best_index": best_index,
        "test_loss": test_loss[0],
        "test_acc": test_acc[0],
        "final_test_loss": test_loss[1],
        "final_test_acc": test_acc[1],
        "checkpoints": saved if checkpoint_every else None,
    }


def _arrays(data: Dataset) -> tuple[jax.Array, ...]:
    return tuple(
        jnp.asarray(a)
        for a in (data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test)
    )


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

    Returns:
      One :class:`History` per run, in order.
    """
    _check_count("epochs", epochs)
    _check_count("batch_size", batch_size)
    if not runs or not seeds:
        raise ValueError("train: give at least one run and one seed")
    datasets = [run.data or data for run in runs]
    n_trains = {len(d.x_train) for d in datasets}
    if len(n_trains) != 1 or len({d.num_classes for d in datasets}) != 1:
        raise ValueError("train: every run's data set must have the same splits and classes")
    n_train = n_trains.pop()
    if batch_size > n_train:
        raise ValueError(f"batch_size {batch_size} exceeds the {n_train} training examples")
    steps_per_epoch = n_train // batch_size
    total = epochs * steps_per_epoch
    eval_every = steps_per_epoch if eval_every is None else eval_every
    _check_count("eval_every", eval_every)
    if total % eval_every:
        raise ValueError(
            f"eval_every={eval_every} must divide the {total} steps "
            f"({epochs} epochs x {steps_per_epoch} steps)"
        )
    if checkpoint_every is not None:
        _check_count("checkpoint_every", checkpoint_every)
    for run in runs:
        if not run.learning_rates:
            raise ValueError("train: every run needs at least one learning rate")
    num_classes = datasets[0].num_classes
    unique = {id(d): d for d in datasets}
    slot = {key: i for i, key in enumerate(unique)}

    def one_run(run: TrainRun, rates: jax.Array, seed_arr: jax.Array, arrays: Any) -> Any:
        def single(lr: jax.Array, seed: jax.Array) -> dict[str, Any]:
            return _train_one(
                run,
                lr,
                seed,
                arrays,
                num_classes=num_classes,
                epochs=epochs,
                batch_size=batch_size,
                eval_every=eval_every,
                probe=probe,
                checkpoint_every=checkpoint_every,
            )

        return jax.vmap(jax.vmap(single, in_axes=(None, 0)), in_axes=(0, None))(rates, seed_arr)

    @jax.jit
    def train_all(rates: list[jax.Array], seed_arr: jax.Array, all_arrays: list[Any]) -> list[Any]:
        return [
            one_run(run, r, seed_arr, all_arrays[slot[id(d)]])
            for run, r, d in zip(runs, rates, datasets, strict=True)
        ]

    rates = [jnp.asarray(np.asarray(run.learning_rates, np.float32)) for run in runs]
    if any(r.ndim not in (1, 2) for r in rates):
        raise ValueError("train: learning_rates must be numbers or equal-length tuples of them")
    seed_arr = jnp.asarray(np.asarray(seeds, np.uint32))
    outputs = timed("train", train_all, rates, seed_arr, [_arrays(d) for d in unique.values()])
    steps = np.arange(total // eval_every + 1) * eval_every
    histories = []
    for run, out in zip(runs, outputs, strict=True):
        out = jax.tree.map(np.asarray, out)
        curves = out["curves"]
        histories.append(
            History(
                learning_rates=np.asarray(run.learning_rates, np.float64),
                seeds=np.asarray(seeds),
                steps=steps,
                steps_per_epoch=steps_per_epoch,
                train_loss=curves.pop("train_loss"),
                train_acc=curves.pop("train_acc"),
                val_loss=curves.pop("val_loss"),
                val_acc=curves.pop("val_acc"),
                best_index=out["best_index"],
                test_loss=out["test_loss"],
                test_acc=out["test_acc"],
                final_test_loss=out["final_test_loss"],
                final_test_acc=out["final_test_acc"],
                probes=curves,
                checkpoints=out["checkpoints"],
                checkpoint_steps=(steps[::checkpoint_every] if checkpoint_every else None),
            )
        )
    return histories


def first_reach(curve: np.ndarray, target: float, steps: np.ndarray) -> float:
    """The first entry of ``steps`` at which ``curve >= target`` (along the last axis), or inf.

    Example:
      >>> import numpy as np
      >>> from jaxopt_lectures.experiments.engine import first_reach
      >>> first_reach(np.array([0.1, 0.5, 0.95, 0.9]), 0.9, np.array([0, 10, 20, 30]))
      20.0
    """
    hits = np.nonzero(np.asarray(curve) >= target)[0]
    return float(steps[hits[0]]) if len(hits) else math.inf


def timed(what: str, jitted: Any, *args: Any) -> Any:
    """Compile ``jitted`` (a ``jax.jit`` function) for ``args``, run it, record both times in
    ``TIMINGS``, return the outputs (ready)."""
    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    middle = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    TIMINGS.append((what, middle - start, time.perf_counter() - middle))
    return out


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _to_numpy(tree: Any) -> Any:
    return jax.tree.map(np.asarray, tree)
