"""Experiment 4: the lecture's optimizers training the same MLP on the digits."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import optax

import jaxopt_lectures as jl
from jaxopt_lectures.experiments import figures
from jaxopt_lectures.experiments.base import Claim, Context, Result, mean_std
from jaxopt_lectures.experiments.engine import MLP, TrainRun, select_optimizer, train

__all__ = ["OPTIMIZERS", "run"]

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


def run(ctx: Context) -> Result:
    """Train one MLP per optimizer: "many different ways to improve performance and speed rate".

    Settings: a 2x128 ReLU MLP (He init) on the standardized digits, mini-batches of 64, 30 epochs
    (10 quick), 5 seeds (2 quick); every optimizer sees the same initializations and mini-batch
    orders. Rates: the library's defaults (Adam 1e-3, RMSprop 0.01, AdaGrad 0.01, AdaDelta 1.0),
    momentum and NAG 0.01 with momentum 0.9, and plain SGD at 0.01 and at 0.1. The eight
    optimizers and the seeds are lanes of one ``vmap`` (:func:`~.engine.select_optimizer`).

    Measured per epoch: training and validation loss; at the end: the best validation loss (early
    stopping), the final training loss, the test accuracy of the best-validation parameters.
    """
    data = ctx.data()
    epochs = ctx.pick(30, 10)
    seeds = ctx.seeds(full=5, quick=2)
    # Every optimizer is a lane of one vmap (select_optimizer): one compiled training loop.
    names = list(OPTIMIZERS)
    run_all = TrainRun(
        select_optimizer([OPTIMIZERS[n][0] for n in names]),
        tuple((i, OPTIMIZERS[n][1]) for i, n in enumerate(names)),
        MODEL,
    )
    (history,) = train([run_all], data, epochs=epochs, seeds=seeds)
    ctx.advance(1)
    hist = {n: (history, i) for i, n in enumerate(names)}

    per: dict[str, dict[str, np.ndarray]] = {}
    for name, (h, i) in hist.items():
        per[name] = {
            "train_loss": h.train_loss[i],
            "val_loss": h.val_loss[i],
            "val_acc": h.val_acc[i],
            "best_val_loss": h.val_loss[i].min(axis=-1),
            "final_train_loss": h.train_loss[i, :, -1],
            "final_val_loss": h.val_loss[i, :, -1],
            "test_acc": h.test_acc[i],
            "best_epoch": h.epochs[h.best_index[i]],
        }
    epochs_axis = history.epochs

    plt = figures.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(17, 5), gridspec_kw={"width_ratios": [1, 1, 0.8]})
    for name in OPTIMIZERS:
        color = figures.COLORS[name]
        style = "--" if name.startswith("sgd") else "-"
        figures.band(
            axes[0], epochs_axis, per[name]["train_loss"], label=name, color=color, linestyle=style
        )
        figures.band(
            axes[1], epochs_axis, per[name]["val_loss"], label=name, color=color, linestyle=style
        )
    axes[0].set_yscale("log")
    axes[0].set(title="Training loss", xlabel="epoch", ylabel="cross-entropy (log scale)")
    axes[1].set_yscale("log")
    axes[1].set(title="Validation loss", xlabel="epoch", ylabel="cross-entropy (log scale)")
    axes[0].legend(ncol=2)
    ax = axes[2]
    order = list(OPTIMIZERS)
    means = [100 * per[n]["test_acc"].mean() for n in order]
    spread = [100 * per[n]["test_acc"].std() for n in order]
    ax.barh(order, means, xerr=spread, color=[figures.COLORS[n] for n in order])
    low = min(means) - 3
    ax.set_xlim(max(0.0, low), 100)
    for y, m in enumerate(means):
        ax.text(m - 0.3, y, f"{m:.1f}", va="center", ha="right", color="white", fontsize=9)
    ax.invert_yaxis()
    ax.set(title="Test accuracy (best-validation params)", xlabel="accuracy (%)")
    fig.suptitle(
        f"Optimizers training a {MODEL.describe()} MLP on digits "
        f"({len(seeds)} seeds: mean and min-max band)"
    )
    fig.tight_layout()
    name = figures.save(fig, ctx.figure_path("optimizers.png"))
    ctx.advance(1)

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
    claims = [
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
    numbers = {
        n: {k: v for k, v in per[n].items() if k not in ("train_loss", "val_loss", "val_acc")}
        | {"learning_rate": OPTIMIZERS[n][1]}
        for n in OPTIMIZERS
    }
    curves = {
        n: {
            "train_loss_mean": per[n]["train_loss"].mean(0),
            "val_loss_mean": per[n]["val_loss"].mean(0),
        }
        for n in OPTIMIZERS
    }
    return Result(
        numbers={"epochs": epochs_axis, "per_optimizer": numbers, "curves": curves},
        figures=[name],
        headlines=[
            (f"best val loss: {n}", mean_std(per[n]["best_val_loss"]))
            for n in ("adam", "rmsprop", "sgd (lr 0.01)", "sgd (lr 0.1)")
        ]
        + [("test accuracy: Adam", f"{100 * per['adam']['test_acc'].mean():.1f}%")],
        claims=claims,
        settings={
            "model": MODEL.describe(),
            "epochs": epochs,
            "seeds": list(seeds),
            "batch_size": 64,
        },
    )
