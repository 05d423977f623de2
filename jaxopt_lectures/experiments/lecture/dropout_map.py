r"""Where dropout helps: the generalization gap and the best validation loss over a grid of dropout
rate x training-set size.

The lecture: applying dropout, "initially, the performance on D_val improves slowly; then it
becomes better and more resilient to overfitting". One setting cannot say where that holds, so a
2-layer ReLU MLP is trained with Adam on the first n training digits for each n in a grid, at
each dropout rate in a grid (dropout after each hidden layer), for a fixed number of steps, and
evaluated periodically (inference mode: no dropout) on its own n training examples and on the
whole validation split. Per cell: the gap (validation loss - training loss) at the end, the best
validation loss along the way (early stopping), and the validation loss at the first evaluation.
Every (rate, size, seed) is one lane of one ``vmap``-ed program.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxopt_lectures as jl
from jaxopt_lectures.experiments import figures
from jaxopt_lectures.experiments.api import Claim, Config, Experiment, Figure, Summary, numbers_of
from jaxopt_lectures.experiments.engine import (
    MLP,
    Timer,
    Timing,
    init_carry,
    timed,
    train_step,
)

__all__ = [
    "EXPERIMENT",
    "DropoutMapResult",
    "DropoutMapSettings",
    "claims",
    "compute",
    "figure",
    "summarize",
]


@dataclass(frozen=True)
class DropoutMapSettings:
    """The grids, the network, Adam's rate, steps, evaluations, mini-batch size and seeds."""

    dropout_rates: tuple[float, ...] = (0.0, 0.25, 0.5)
    train_sizes: tuple[int, ...] = (100, 300, 1000)
    hidden: tuple[int, ...] = (256, 256)
    rate: float = 1e-3
    steps: int = 1200
    evals: int = 24
    batch_size: int = 50
    num_seeds: int = 2


FULL = DropoutMapSettings()
QUICK = DropoutMapSettings(
    dropout_rates=(0.0, 0.5),
    train_sizes=(200, 600),
    hidden=(128, 128),
    steps=300,
    evals=6,
    num_seeds=1,
)


class DropoutMapResult(NamedTuple):
    """Arrays of shape (dropout rates, sizes, seeds) and the curves (..., evals + 1)."""

    dropout_rates: np.ndarray
    train_sizes: np.ndarray
    steps: np.ndarray
    train_loss: np.ndarray  # (rates, sizes, seeds, evals + 1)
    val_loss: np.ndarray
    final_gap: np.ndarray  # (rates, sizes, seeds)
    best_val_loss: np.ndarray
    first_val_loss: np.ndarray  # at the first evaluation after the start
    settings: DropoutMapSettings
    timings: tuple[Timing, ...]


def _lane(
    settings: DropoutMapSettings,
    arrays: tuple[jax.Array, ...],
    num_classes: int,
    h: jax.Array,
    batches: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """One lane ``h = (dropout rate, training-set size n, seed)``: the training loss on its
    first n examples and the validation loss, at the start and after every chunk of steps."""
    x, y, xv, yv = arrays
    n_max = x.shape[0]
    tx = jl.adam(settings.rate)

    def losses(model: MLP, params: Any, n: jax.Array) -> tuple[jax.Array, jax.Array]:
        def ce(xs: jax.Array, ys: jax.Array) -> jax.Array:
            logits, _ = jl.nn.mlp_apply(params, [], xs, activation="relu", training=False)
            return jax.nn.log_softmax(logits)[jnp.arange(len(ys)), ys]

        mask = jnp.arange(n_max) < n
        train = -jnp.sum(jnp.where(mask, ce(x, y), 0.0)) / n
        return train, -jnp.mean(ce(xv, yv))

    model = MLP(settings.hidden, dropout_rate=h[0])  # type: ignore[arg-type]  # traced rate
    key = jax.random.key(h[2].astype(jnp.uint32))
    carry = init_carry(model, tx, key, x.shape[1], num_classes)

    def step(c: Any, i: jax.Array) -> tuple[Any, jax.Array]:
        k = jax.random.fold_in(key, c.step)
        return train_step(model, tx, c, (x[i], y[i], k))

    def chunk(c: Any, b: jax.Array) -> tuple[Any, tuple[jax.Array, jax.Array]]:
        c, _ = jax.lax.scan(step, c, b)
        return c, losses(model, c.params, h[1])

    first = losses(model, carry.params, h[1])
    _, (tr, va) = jax.lax.scan(chunk, carry, batches)
    return jnp.concatenate([first[0][None], tr]), jnp.concatenate([first[1][None], va])


def compute(config: Config, seed: int) -> DropoutMapResult:
    """Train the whole grid in one program; ``FULL`` settings (in quick mode
    ``QUICK``), random numbers from ``seed``, the data split with ``seed``."""
    settings: DropoutMapSettings = config.pick(FULL, QUICK)
    timer = Timer()
    key = jax.random.key(seed)
    data = config.data(seed)
    sizes = [min(n, len(data.x_train)) for n in settings.train_sizes]
    n_max = max(sizes)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
    lanes = [
        (r, n, s) for r in settings.dropout_rates for n in sizes for s in range(settings.num_seeds)
    ]
    period = settings.steps // settings.evals
    # Mini-batches without replacement within each pass over that lane's own n examples.
    idx = np.stack(
        [
            np.concatenate(
                [rng.permutation(n) for _ in range(-(-settings.steps * settings.batch_size // n))]
            )[: period * settings.evals * settings.batch_size].reshape(
                settings.evals, period, settings.batch_size
            )
            for _, n, _ in lanes
        ]
    )
    seed_values = rng.integers(0, 2**24, settings.num_seeds)  # exact in float32
    hyper = np.array([(r, n, seed_values[s]) for r, n, s in lanes], np.float32)
    # device_put: jnp.asarray would compile a small program per array to copy it over.
    arrays = tuple(
        jax.device_put(a)
        for a in (data.x_train[:n_max], data.y_train[:n_max], data.x_val, data.y_val)
    )

    def one(h: jax.Array, batches: jax.Array) -> tuple[jax.Array, jax.Array]:
        return _lane(settings, arrays, data.num_classes, h, batches)

    out = timed(
        "dropout map",
        jax.jit(jax.vmap(one)),
        jax.device_put(hyper),
        jax.device_put(idx),
        timer=timer,
        short=True,
    )
    shape = (len(settings.dropout_rates), len(sizes), settings.num_seeds, -1)
    tr, va = (np.asarray(a, np.float64).reshape(shape) for a in out)
    config.advance(1)
    return DropoutMapResult(
        dropout_rates=np.asarray(settings.dropout_rates),
        train_sizes=np.asarray(sizes),
        steps=np.arange(settings.evals + 1) * period,
        train_loss=tr,
        val_loss=va,
        final_gap=va[..., -1] - tr[..., -1],
        best_val_loss=np.nanmin(va, axis=-1),
        first_val_loss=va[..., 1],
        settings=settings,
        timings=tuple(timer.timings),
    )


def figure(result: DropoutMapResult) -> Figure:
    """Maps of the final gap and the best validation loss; validation curves per size."""
    plt = figures.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(19, 5.2))
    for ax, values, title in (
        (axes[0], result.final_gap.mean(-1), "final gap: val loss - train loss"),
        (axes[1], result.best_val_loss.mean(-1), "best validation loss (early stopping)"),
    ):
        im = ax.imshow(values, cmap="viridis", aspect="auto", origin="lower")
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                ax.text(
                    j,
                    i,
                    f"{values[i, j]:.3g}",
                    ha="center",
                    va="center",
                    color="w",
                    fontsize=10,
                    fontweight="bold",
                )
        ax.set_xticks(range(len(result.train_sizes)), [str(n) for n in result.train_sizes])
        ax.set_yticks(range(len(result.dropout_rates)), [f"{r:g}" for r in result.dropout_rates])
        ax.set(title=title, xlabel="training examples", ylabel="dropout rate")
        fig.colorbar(im, ax=ax)
    ax = axes[2]
    cmap = plt.get_cmap("viridis")
    for j, n in enumerate(result.train_sizes):
        for i, r in enumerate(result.dropout_rates):
            ax.plot(
                result.steps,
                result.val_loss[i, j].mean(0),
                color=cmap(j / max(len(result.train_sizes) - 1, 1)),
                linestyle=["-", "--", ":", "-."][i % 4],
                label=f"n={n}, dropout {r:g}",
            )
    ax.set_yscale("log")
    ax.set(title="Validation loss (mean over seeds)", xlabel="step", ylabel="cross-entropy")
    ax.legend(fontsize=7, ncol=2)
    fig.suptitle("Dropout: where it helps (rate x training-set size)")
    fig.tight_layout()
    return Figure("dropout_map.png", fig)


def claims(result: DropoutMapResult) -> list[Claim]:
    """Better (best validation loss) and more resilient (final gap), cell by cell; slower at
    first."""
    best = result.best_val_loss.mean(-1)  # (rates, sizes)
    gap = result.final_gap.mean(-1)
    first = result.first_val_loss.mean(-1)
    better = best[1:] < best[0]  # (dropout rates > 0, sizes)
    resilient = gap[1:] < gap[0]
    slower = first[1:] > first[0]

    def cells(mask: np.ndarray) -> str:
        return ", ".join(
            f"dropout {r:g}/n={n}"
            for (i, j), ok in np.ndenumerate(mask)
            if ok
            for r, n in [(result.dropout_rates[i + 1], result.train_sizes[j])]
        )

    total = better.size
    return [
        Claim(
            claim="Applying dropout: initially, the performance on D_val improves slowly",
            held=bool(slower.all()),
            measured=f"validation loss at the first evaluation (step {result.steps[1]}) higher "
            f"with dropout than without in {int(slower.sum())} of {total} cells"
            + (f": {cells(slower)}" if slower.any() else ""),
            rule="higher in every (dropout rate > 0, training size) cell",
        ),
        Claim(
            claim="Applying dropout: then it becomes better (lower best validation loss)",
            held=bool(better.all()),
            measured=f"best validation loss lower with dropout in {int(better.sum())} of {total} "
            "cells"
            + (f" ({cells(better)})" if better.any() else "")
            + "; without dropout per size: "
            + ", ".join(
                f"n={n}: {b:.3g}" for n, b in zip(result.train_sizes, best[0], strict=True)
            ),
            rule="lower in every (dropout rate > 0, training size) cell (means over seeds)",
        ),
        Claim(
            claim="Applying dropout: ... and more resilient to overfitting (smaller final "
            "train/validation gap)",
            held=bool(resilient.all()),
            measured=f"final gap smaller with dropout in {int(resilient.sum())} of {total} cells"
            + (f" ({cells(resilient)})" if resilient.any() else "")
            + "; gap without dropout per size: "
            + ", ".join(f"n={n}: {g:.3g}" for n, g in zip(result.train_sizes, gap[0], strict=True)),
            rule="smaller in every (dropout rate > 0, training size) cell (means over seeds)",
        ),
    ]


def summarize(result: DropoutMapResult) -> Summary:
    """Headlines, every field of the result (the numbers behind the figure), the settings."""
    better = result.best_val_loss.mean(-1)[1:] < result.best_val_loss.mean(-1)[0]
    resilient = result.final_gap.mean(-1)[1:] < result.final_gap.mean(-1)[0]
    return Summary(
        headlines=[
            ("cells where dropout lowers the best val loss", f"{better.sum()} of {better.size}"),
            ("cells where dropout shrinks the final gap", f"{resilient.sum()} of {resilient.size}"),
        ],
        numbers=numbers_of(result),
        settings=asdict(result.settings),
    )


EXPERIMENT = Experiment(
    name="dropout-map",
    title="Where dropout helps",
    section="Dropout; Contrasting overfitting",
    summary="final gap and best validation loss over dropout rate x training-set size",
    stages=1,
    compute=compute,
    figure=figure,
    claims=claims,
    summarize=summarize,
)
