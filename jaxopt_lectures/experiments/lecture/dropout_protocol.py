r"""Dropout under Srivastava et al.'s protocol: SGD with momentum, a max-norm constraint, dropout
on the inputs and the hidden units, classification error at several training-set sizes.

Srivastava, Hinton, Krizhevsky, Sutskever and Salakhutdinov (2014, "Dropout: A Simple Way to
Prevent Neural Networks from Overfitting") trained with SGD and high momentum, kept every hidden
unit's incoming weight vector inside a ball of radius c (max-norm, :math:`\lVert w_j \rVert_2 \le
c`, a projection after each step), dropped inputs with probability 0.2 and hidden units with 0.5,
and reported the *classification error*; their data-set-size study (section 7.4) found no gain
from dropout on the smallest training sets and a gain that grows, then shrinks, with size.

Here, on the digits: a 2-layer ReLU MLP trained on the first n training examples for each n in a
grid, without and with dropout (both with max-norm, the same rate, momentum, initialization and
mini-batch order), for a fixed number of steps; at the end, in inference mode, the error and the
cross-entropy on the lane's own n examples and on the whole validation split. Every (dropout,
size, seed) is one lane of one ``vmap``-ed program. The overfitting and dropout-map experiments
share the result (it is computed once per process).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxopt_lectures as jl
from jaxopt_lectures.experiments import figures
from jaxopt_lectures.experiments.api import Config, Figure, Numbers, numbers_of
from jaxopt_lectures.experiments.engine import Timer, Timing, timed
from jaxopt_lectures.experiments.formatting import mean_std
from jaxopt_lectures.experiments.lecture.protocols import compute_once
from jaxopt_lectures.experiments.record import Measurement

__all__ = [
    "FULL",
    "DropoutProtocolResult",
    "DropoutProtocolSettings",
    "better",
    "compute",
    "figure",
    "max_norm",
    "resilient",
    "smaller_gap_at",
]

PROTOCOL = (
    "Srivastava et al. (2014): SGD with momentum 0.95, max-norm 3 on every hidden unit's "
    "incoming weights, dropout 0.2 on inputs and 0.5 on hidden units, classification error at "
    "several training-set sizes"
)


@dataclass(frozen=True)
class DropoutProtocolSettings:
    """Training-set sizes, the network, SGD's rate and momentum, the max-norm radius, the
    dropout rates on inputs and hidden units, steps, evaluations, mini-batch and seeds."""

    train_sizes: tuple[int, ...] = (100, 200, 500, 1000)
    hidden: tuple[int, ...] = (128, 128)
    rate: float = 0.01
    momentum: float = 0.95
    max_norm: float = 3.0
    input_dropout: float = 0.2
    hidden_dropout: float = 0.5
    steps: int = 1000
    evals: int = 5
    batch_size: int = 32
    num_seeds: int = 2


FULL = DropoutProtocolSettings()
ARMS = ("without", "with")  # dropout


class DropoutProtocolResult(NamedTuple):
    """Arrays of shape (arms, sizes, seeds, evals + 1): error and loss on the lane's own training
    examples and on the validation split; ``steps`` of the evaluations."""

    train_sizes: np.ndarray
    steps: np.ndarray
    train_error: np.ndarray
    val_error: np.ndarray
    train_loss: np.ndarray
    val_loss: np.ndarray
    computed_here: bool  # False: shared with the experiment that computed it first
    settings: DropoutProtocolSettings
    timings: tuple[Timing, ...]

    @property
    def error_gap(self) -> np.ndarray:
        """Final validation minus training error, (arms, sizes, seeds)."""
        return self.val_error[..., -1] - self.train_error[..., -1]

    @property
    def loss_gap(self) -> np.ndarray:
        """Final validation minus training cross-entropy, (arms, sizes, seeds)."""
        return self.val_loss[..., -1] - self.train_loss[..., -1]


def max_norm(params: Any, radius: float) -> Any:
    """Project every hidden unit's incoming weight vector (a column of each hidden layer's
    ``w``; not the output layer) onto the ball of ``radius``; biases unchanged.

    Example:
      >>> import jax.numpy as jnp, numpy as np
      >>> from jaxopt_lectures.experiments.lecture.dropout_protocol import max_norm
      >>> hidden = {"w": jnp.array([[3.0, 0.1], [4.0, 0.0]]), "b": jnp.ones(2)}
      >>> p = [hidden, {"w": jnp.ones((2, 1)), "b": jnp.zeros(1)}]
      >>> [np.linalg.norm(np.asarray(q["w"], np.float64), axis=0).round(3).tolist()
      ...  for q in max_norm(p, 2.0)]
      [[2.0, 0.1], [1.414]]
    """
    out = []
    for i, layer in enumerate(params):
        if i < len(params) - 1:
            norm = jnp.linalg.norm(layer["w"], axis=0, keepdims=True)
            layer = {**layer, "w": layer["w"] * jnp.minimum(1.0, radius / jnp.maximum(norm, 1e-12))}
        out.append(layer)
    return out


def _lane(
    settings: DropoutProtocolSettings,
    arrays: tuple[jax.Array, ...],
    num_classes: int,
    lane: jax.Array,
    batches: jax.Array,
) -> tuple[jax.Array, ...]:
    """One lane ``(dropout on, n, seed)``: error and loss on its n examples and on the validation
    split, at the start and after every chunk of steps."""
    x, y, xv, yv = arrays
    on, n, seed = lane[0], lane[1], lane[2]
    key = jax.random.key(seed.astype(jnp.uint32))
    sizes = [x.shape[1], *settings.hidden, num_classes]
    params, _ = jl.nn.mlp_init(key, sizes, activation="relu")
    tx = jl.momentum(settings.rate, momentum=settings.momentum)
    p_in, p_hidden = on * settings.input_dropout, on * settings.hidden_dropout

    def logits_of(p: Any, xs: jax.Array, k: jax.Array | None) -> jax.Array:
        if k is None:
            return jl.nn.mlp_apply(p, [], xs, activation="relu", training=False)[0]
        k_in, k_hidden = jax.random.split(k)
        xs = jl.nn.dropout(k_in, xs, p_in, training=True)
        out, _ = jl.nn.mlp_apply(
            p, [], xs, activation="relu", training=True, key=k_hidden, dropout_rate=p_hidden
        )
        return out

    def measure(p: Any) -> tuple[jax.Array, ...]:
        def per_example(xs: jax.Array, ys: jax.Array) -> tuple[jax.Array, jax.Array]:
            z = logits_of(p, xs, None)
            ce = -jax.nn.log_softmax(z)[jnp.arange(len(ys)), ys]
            return ce, (jnp.argmax(z, -1) != ys).astype(ce.dtype)

        mask = jnp.arange(x.shape[0]) < n
        ce, err = per_example(x, y)
        ce_v, err_v = per_example(xv, yv)
        own = lambda v: jnp.sum(jnp.where(mask, v, 0.0)) / n  # noqa: E731
        return own(err), jnp.mean(err_v), own(ce), jnp.mean(ce_v)

    def step(carry: tuple[Any, Any, jax.Array], idx: jax.Array) -> tuple[Any, None]:
        p, s, i = carry
        k = jax.random.fold_in(key, i)

        def loss(q: Any) -> jax.Array:
            z = logits_of(q, x[idx], k)
            return -jnp.mean(jax.nn.log_softmax(z)[jnp.arange(len(idx)), y[idx]])

        u, s = tx.update(jax.grad(loss)(p), s, p)
        return (max_norm(jax.tree.map(jnp.add, p, u), settings.max_norm), s, i + 1), None

    def chunk(carry: Any, b: jax.Array) -> tuple[Any, tuple[jax.Array, ...]]:
        carry, _ = jax.lax.scan(step, carry, b)
        return carry, measure(carry[0])

    first = measure(params)
    carry = (params, tx.init(params), jnp.zeros([], jnp.int32))
    _, curves = jax.lax.scan(chunk, carry, batches)
    return tuple(jnp.concatenate([f[None], c]) for f, c in zip(first, curves, strict=True))


def _compute(config: Config, seed: int, settings: DropoutProtocolSettings) -> Any:
    timer = Timer()
    data = config.data(seed)
    sizes = [min(n, len(data.x_train)) for n in settings.train_sizes]
    rng = np.random.default_rng(seed)
    lanes = [(on, n, s) for on in (0, 1) for n in sizes for s in range(settings.num_seeds)]
    period = settings.steps // settings.evals
    total = period * settings.evals * settings.batch_size
    # Each seed's mini-batch order over its n examples is shared by both arms.
    orders = {
        (n, s): np.concatenate([rng.permutation(n) for _ in range(-(-total // n))])[:total]
        for n in sizes
        for s in range(settings.num_seeds)
    }
    idx = np.stack([orders[(n, s)] for _, n, s in lanes]).reshape(
        len(lanes), settings.evals, period, settings.batch_size
    )
    seed_values = rng.integers(0, 2**24, settings.num_seeds)  # exact in float32
    hyper = np.array([(on, n, seed_values[s]) for on, n, s in lanes], np.float32)
    n_max = max(sizes)
    arrays = tuple(
        jax.device_put(a)
        for a in (data.x_train[:n_max], data.y_train[:n_max], data.x_val, data.y_val)
    )

    def one(h: jax.Array, b: jax.Array) -> tuple[jax.Array, ...]:
        return _lane(settings, arrays, data.num_classes, h, b)

    out = timed(
        "dropout (Srivastava et al.)",
        jax.jit(jax.vmap(one)),
        jax.device_put(hyper),
        jax.device_put(idx.astype(np.int32)),
        timer=timer,
    )
    shape = (2, len(sizes), settings.num_seeds, -1)
    tr_err, va_err, tr_ce, va_ce = (np.asarray(a, np.float64).reshape(shape) for a in out)
    return DropoutProtocolResult(
        train_sizes=np.asarray(sizes),
        steps=np.arange(settings.evals + 1) * period,
        train_error=tr_err,
        val_error=va_err,
        train_loss=tr_ce,
        val_loss=va_ce,
        computed_here=True,
        settings=settings,
        timings=tuple(timer.timings),
    )


def compute(config: Config, seed: int, base: Any = None) -> DropoutProtocolResult:
    """The ``FULL`` grid, computed once per process for the data and seed (a second experiment
    asking for it gets the same numbers and no timings of its own); ``base`` is not needed."""
    del base
    settings = FULL
    key = ("dropout-protocol", config.data_factory, seed, settings)
    result, here = compute_once(key, lambda: _compute(config, seed, settings))
    return result if here else result._replace(computed_here=False, timings=())


def _per_size(r: DropoutProtocolResult, values: np.ndarray) -> str:
    """``n=...: without a +- s, with b +- s`` per size, from (arms, sizes, seeds) values."""
    return "; ".join(
        f"n={n}: without {mean_std(values[0, j])}, with {mean_std(values[1, j])}"
        for j, n in enumerate(r.train_sizes)
    )


def better(r: DropoutProtocolResult) -> Measurement:
    """ "Then it becomes better": the final validation error, at every size."""
    err = r.val_error[..., -1]
    lower = err[1].mean(-1) < err[0].mean(-1)
    return Measurement(
        protocol=PROTOCOL,
        held=bool(lower.all()),
        measured=f"final validation error (mean +- std over {err.shape[-1]} seeds) "
        f"{_per_size(r, err)}; lower with dropout at {int(lower.sum())} of {lower.size} sizes; "
        f"validation loss {_per_size(r, r.val_loss[..., -1])}",
        rule="the mean final validation error is lower with dropout at every training-set size",
    )


def resilient(r: DropoutProtocolResult) -> Measurement:
    """ "More resilient to overfitting": the final train/validation error gap, at every size."""
    gap = r.error_gap
    smaller = gap[1].mean(-1) < gap[0].mean(-1)
    return Measurement(
        protocol=PROTOCOL,
        held=bool(smaller.all()),
        measured=f"final gap in classification error (validation - training; mean +- std "
        f"over {gap.shape[-1]} seeds) {_per_size(r, gap)}; smaller with dropout at "
        f"{int(smaller.sum())} of {smaller.size} sizes; gap in cross-entropy "
        f"{_per_size(r, r.loss_gap)}",
        rule="the mean final error gap is smaller with dropout at every training-set size",
    )


def smaller_gap_at(r: DropoutProtocolResult, n: int) -> Measurement:
    """The overfitting experiment's claim at its own training-set size ``n`` (one of the sizes)."""
    j = int(np.flatnonzero(r.train_sizes == n)[0])
    gap, loss_gap = r.error_gap[:, j], r.loss_gap[:, j]
    return Measurement(
        protocol=PROTOCOL,
        held=bool(gap[1].mean() < gap[0].mean()),
        measured=f"n={n}: final gap in classification error {mean_std(gap[1])} with dropout vs "
        f"{mean_std(gap[0])} without (mean +- std over {gap.shape[-1]} seeds); in "
        f"cross-entropy {mean_std(loss_gap[1])} vs {mean_std(loss_gap[0])}; validation error "
        f"{mean_std(r.val_error[1, j, :, -1])} vs {mean_std(r.val_error[0, j, :, -1])}",
        rule="the mean final gap in classification error is smaller with dropout",
    )


def numbers(r: DropoutProtocolResult) -> dict[str, Numbers]:
    """Every field but the settings and timings, the gaps, and the settings."""
    return {
        **numbers_of(r),
        "error_gap": r.error_gap,
        "loss_gap": r.loss_gap,
        "settings": asdict(r.settings),
    }


def figure_named(filename: str) -> Any:
    """:func:`figure` saved under ``filename`` (each experiment that shows it has its own)."""

    def draw(r: DropoutProtocolResult) -> Figure:
        return figure(r)._replace(filename=filename)

    return draw


COLORS = {"without": "#d62728", "with": "#1f77b4"}


def figure(r: DropoutProtocolResult) -> Figure:
    """Final validation error, error gap and loss gap against the training-set size, without
    and with dropout (mean over seeds, min-max bars)."""
    plt = figures.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    panels = (
        (r.val_error[..., -1] * 100, "Final validation error", "error (%)"),
        (r.error_gap * 100, "Final gap in error (val - train)", "percentage points"),
        (r.loss_gap, "Final gap in cross-entropy (val - train)", "nats"),
    )
    for ax, (values, title, ylabel) in zip(axes, panels, strict=True):
        for a, arm in enumerate(ARMS):
            v = values[a]
            mean = v.mean(-1)
            err = np.stack([mean - v.min(-1), v.max(-1) - mean])
            ax.errorbar(
                r.train_sizes,
                mean,
                yerr=err,
                fmt="o-",
                capsize=4,
                color=COLORS[arm],
                label=f"{arm} dropout",
            )
        ax.set_xscale("log")
        ax.set_xticks(r.train_sizes, [str(n) for n in r.train_sizes])
        ax.set(title=title, xlabel="training examples", ylabel=ylabel)
        ax.axhline(0, color="grey", lw=0.8)
        ax.legend()
    s = r.settings
    fig.suptitle(
        f"Srivastava et al.'s protocol: SGD + momentum {s.momentum:g}, max-norm {s.max_norm:g}, "
        f"dropout {s.input_dropout:g} (inputs) / {s.hidden_dropout:g} (hidden), "
        f"{'x'.join(map(str, s.hidden))} ReLU"
    )
    fig.tight_layout()
    return Figure("dropout_protocol.png", fig)
