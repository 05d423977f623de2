"""Improving optimization: the lecture's optimizers training the same MLP on the digits."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import optax

import jaxopt_lectures as jl
from jaxopt_lectures.experiments import figures
from jaxopt_lectures.experiments.api import Claim, Config, Experiment, Figure, Summary, seeds
from jaxopt_lectures.experiments.engine import (
    MLP,
    Timer,
    Timing,
    TrainRun,
    select_optimizer,
    train,
)
from jaxopt_lectures.experiments.formatting import mean_std

__all__ = [
    "EXPERIMENT",
    "OPTIMIZERS",
    "OptimizersResult",
    "claims",
    "compute",
    "figure",
    "summarize",
]

# name -> (learning rate -> transform, rate). Adam, RMSprop, AdaGrad and AdaDelta at this
# library's default rates; SGD has none, so both a small and a large one.
OPTIMIZERS: dict[str, tuple[Callable[[float], optax.GradientTransformation], float]] = {
    "sgd (lr 0.01)": (jl.sgd, 0.01),
    "sgd (lr 0.1)": (jl.sgd, 0.1),
    "momentum": (lambda lr: jl.momentum(lr, momentum=0.9), 0.01),
    "nag": (lambda lr: jl.nag(lr, momentum=0.9), 0.01),
    "adagrad": (jl.adagrad, 0.01),
    "rmsprop": (jl.rmsprop, 0.01),
    "adadelta": (jl.adadelta, 1.0),
    "adam": (jl.adam, 1e-3),
}
MODEL = MLP(hidden=(128, 128), activation="relu")


class OptimizersResult(NamedTuple):
    """Per optimizer: curves (seeds x evaluations) and final numbers (per seed)."""

    epochs: int
    seeds: tuple[int, ...]
    epochs_axis: np.ndarray
    per: dict[str, dict[str, np.ndarray]]
    timings: tuple[Timing, ...]


def compute(config: Config, seed: int) -> OptimizersResult:
    """Train one MLP per optimizer: "many different ways to improve performance and speed rate".

    Settings: a 2x128 ReLU MLP (He init) on the standardized digits, mini-batches of 64, 30 epochs
    (10 quick), 5 seeds (2 quick); every optimizer sees the same initializations and mini-batch
    orders. Rates: the library's defaults (Adam 1e-3, RMSprop 0.01, AdaGrad 0.01, AdaDelta 1.0),
    momentum and NAG 0.01 with momentum 0.9, and plain SGD at 0.01 and at 0.1. The eight
    optimizers and the seeds are lanes of one ``vmap`` (:func:`~.engine.select_optimizer`).

    Measured per epoch: training and validation loss; at the end: the best validation loss (early
    stopping), the final training loss, the test accuracy of the best-validation parameters.
    """
    timer = Timer()
    epochs = config.pick(30, 10)
    run_seeds = seeds(config, seed, full=5, quick=2)
    names = list(OPTIMIZERS)
    run_all = TrainRun(
        select_optimizer([OPTIMIZERS[n][0] for n in names]),
        tuple((i, OPTIMIZERS[n][1]) for i, n in enumerate(names)),
        MODEL,
    )
    (h,) = train([run_all], config.data(seed), epochs=epochs, seeds=run_seeds, timer=timer)
    config.advance(1)
    per = {
        name: {
            "train_loss": h.train_loss[i],
            "val_loss": h.val_loss[i],
            "val_acc": h.val_acc[i],
            "best_val_loss": h.val_loss[i].min(axis=-1),
            "final_train_loss": h.train_loss[i, :, -1],
            "final_val_loss": h.val_loss[i, :, -1],
            "test_acc": h.test_acc[i],
            "best_epoch": h.epochs[h.best_index[i]],
        }
        for i, name in enumerate(names)
    }
    return OptimizersResult(epochs, run_seeds, h.epochs, per, tuple(timer.timings))


def figure(r: OptimizersResult) -> Figure:
    """Training and validation loss per epoch (seed bands); test accuracy per optimizer."""
    plt = figures.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(17, 5), gridspec_kw={"width_ratios": [1, 1, 0.8]})
    for name in OPTIMIZERS:
        style = {
            "color": figures.COLORS[name],
            "linestyle": "--" if name.startswith("sgd") else "-",
        }
        figures.band(axes[0], r.epochs_axis, r.per[name]["train_loss"], label=name, **style)
        figures.band(axes[1], r.epochs_axis, r.per[name]["val_loss"], label=name, **style)
    axes[0].set_yscale("log")
    axes[0].set(title="Training loss", xlabel="epoch", ylabel="cross-entropy (log scale)")
    axes[1].set_yscale("log")
    axes[1].set(title="Validation loss", xlabel="epoch", ylabel="cross-entropy (log scale)")
    axes[0].legend(ncol=2)
    ax = axes[2]
    order = list(OPTIMIZERS)
    means = [100 * r.per[n]["test_acc"].mean() for n in order]
    spread = [100 * r.per[n]["test_acc"].std() for n in order]
    ax.barh(order, means, xerr=spread, color=[figures.COLORS[n] for n in order])
    ax.set_xlim(max(0.0, min(means) - 3), 100)
    for y, m in enumerate(means):
        ax.text(m - 0.3, y, f"{m:.1f}", va="center", ha="right", color="white", fontsize=9)
    ax.invert_yaxis()
    ax.set(title="Test accuracy (best-validation params)", xlabel="accuracy (%)")
    fig.suptitle(
        f"Optimizers training a {MODEL.describe()} MLP on digits "
        f"({len(r.seeds)} seeds: mean and min-max band)"
    )
    fig.tight_layout()
    return Figure("optimizers.png", fig)


def claims(r: OptimizersResult) -> list[Claim]:
    """Adam and RMSprop beat SGD at 0.01, and at a well-chosen 0.1 by more than the seeds' noise."""
    per = r.per

    def beats(a: str, b: str) -> bool:
        return bool(
            per[a]["best_val_loss"].mean() < per[b]["best_val_loss"].mean()
            and per[a]["final_train_loss"].mean() < per[b]["final_train_loss"].mean()
        )

    def line(n: str) -> str:
        return (
            f"{n}: best val loss {mean_std(per[n]['best_val_loss'])}, final train loss "
            f"{mean_std(per[n]['final_train_loss'])}"
        )

    # Against SGD at 0.1: is the best-validation-loss gap larger than the seeds' spread?
    sgd_hi = per["sgd (lr 0.1)"]["best_val_loss"]
    adam_gap = float(sgd_hi.mean() - per["adam"]["best_val_loss"].mean())
    noise = float(max(sgd_hi.std(), per["adam"]["best_val_loss"].std()))
    rms_overfits = bool(
        per["rmsprop"]["final_val_loss"].mean() > per["rmsprop"]["best_val_loss"].mean() * 1.2
    )
    return [
        Claim(
            claim="Adam and RMSprop (default rates) beat plain SGD (lr 0.01) on the MLP",
            held=beats("adam", "sgd (lr 0.01)") and beats("rmsprop", "sgd (lr 0.01)"),
            measured="; ".join(line(n) for n in ("adam", "rmsprop", "sgd (lr 0.01)")),
            rule="lower mean best validation loss and lower mean final training loss",
        ),
        Claim(
            claim="... and plain SGD at a well-chosen rate (0.1)",
            held=beats("adam", "sgd (lr 0.1)")
            and beats("rmsprop", "sgd (lr 0.1)")
            and adam_gap > noise,
            measured=f"{line('sgd (lr 0.1)')}; Adam's best val loss is lower by {adam_gap:.3g} "
            f"against a seed spread of {noise:.2g}"
            + ("; RMSprop overfits (its final val loss is >1.2x its best)" if rms_overfits else ""),
            rule="both lower on both numbers, and Adam's margin exceeds the seeds' std",
        ),
    ]


def summarize(r: OptimizersResult) -> Summary:
    """Headlines, the numbers behind the figure, the settings."""
    per = r.per
    curves_only = ("train_loss", "val_loss", "val_acc")
    return Summary(
        headlines=[
            (f"best val loss: {n}", mean_std(per[n]["best_val_loss"]))
            for n in ("adam", "rmsprop", "sgd (lr 0.01)", "sgd (lr 0.1)")
        ]
        + [("test accuracy: Adam", f"{100 * per['adam']['test_acc'].mean():.1f}%")],
        numbers={
            "epochs": r.epochs_axis,
            "per_optimizer": {
                n: {k: v for k, v in per[n].items() if k not in curves_only}
                | {"learning_rate": OPTIMIZERS[n][1]}
                for n in OPTIMIZERS
            },
            "curves": {
                n: {
                    "train_loss_mean": per[n]["train_loss"].mean(0),
                    "val_loss_mean": per[n]["val_loss"].mean(0),
                }
                for n in OPTIMIZERS
            },
        },
        settings={
            "model": MODEL.describe(),
            "epochs": r.epochs,
            "seeds": list(r.seeds),
            "batch_size": 64,
        },
    )


EXPERIMENT = Experiment(
    name="optimizers",
    title="The optimizers training an MLP on digits",
    section="Improving optimization",
    summary="training and validation loss per epoch and test accuracy for every optimizer",
    stages=1,
    compute=compute,
    figure=figure,
    claims=claims,
    summarize=summarize,
)
