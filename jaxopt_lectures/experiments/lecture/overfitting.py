"""Overfitting on a small training split, early stopping, and dropout."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

import jaxopt_lectures as jl
from jaxopt_lectures.experiments import figures
from jaxopt_lectures.experiments.api import Claim, Config, Experiment, Figure, Summary, seeds
from jaxopt_lectures.experiments.engine import MLP, History, Timer, Timing, TrainRun, train
from jaxopt_lectures.experiments.formatting import mean_std

__all__ = ["EXPERIMENT", "OverfittingResult", "claims", "compute", "figure", "summarize"]

NUM_TRAIN = 200
DROPOUT = 0.5


class OverfittingResult(NamedTuple):
    """The runs without and with dropout and their per-seed statistics."""

    epochs: int
    seeds: tuple[int, ...]
    num_train: int
    plain: History
    drop: History
    timings: tuple[Timing, ...]

    @property
    def stats(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The per-seed statistics of the run without and of the run with dropout."""
        return _stats(self.plain), _stats(self.drop)

    @property
    def smaller_gap_epochs(self) -> np.ndarray:
        """The epochs (> 0) where the mean gap is smaller with dropout."""
        s0, s1 = self.stats
        smaller = self.plain.epochs[s1["gap"].mean(0) < s0["gap"].mean(0)]
        return smaller[smaller > 0]


def _stats(h: History) -> dict[str, np.ndarray]:
    """Per seed: the early-stopping epoch and losses there and at the end, the gaps, accuracies."""
    gap = h.val_loss[0] - h.train_loss[0]
    best = h.best_index[0]
    rows = np.arange(len(best))
    return {
        "best_epoch": h.epochs[best],
        "best_val_loss": h.val_loss[0][rows, best],
        "final_val_loss": h.val_loss[0, :, -1],
        "train_loss_at_best": h.train_loss[0][rows, best],
        "final_train_loss": h.train_loss[0, :, -1],
        "gap": gap,
        "final_gap": gap[:, -1],
        "final_acc_gap": (h.train_acc[0] - h.val_acc[0])[:, -1],
        "test_acc_early_stopping": h.test_acc[0],
        "test_acc_final": h.final_test_acc[0],
    }


def compute(config: Config, seed: int) -> OverfittingResult:
    """A large MLP memorizes a small training set: "when the training process becomes too specific
    to the training set", validation loss turns up while training loss keeps falling; early
    stopping keeps the best-validation parameters; dropout ("knocking out at random") is the cure
    the lecture proposes: "initially, the performance on D_val improves slowly, then it becomes
    better and more resilient to overfitting".

    Settings: a 2x512 ReLU MLP trained with Adam (1e-3) on the first 200 training digits,
    mini-batches of 50, 150 epochs (40 quick), 5 seeds (2 quick), without and with dropout 0.5
    after each hidden layer; the same seeds give both the same initialization and batch order.

    Measured per epoch, in inference mode on the whole splits: training and validation loss, their
    gap (validation - training) and the accuracies; the epoch of the lowest validation loss, the
    test accuracy of those parameters (early stopping) and of the last ones.
    """
    timer = Timer()
    full = config.data(seed)
    n = min(NUM_TRAIN, len(full.x_train))
    data = full._replace(x_train=full.x_train[:n], y_train=full.y_train[:n])
    epochs = config.pick(150, 40)
    run_seeds = seeds(config, seed, full=5, quick=2)
    runs = [TrainRun(jl.adam, (1e-3,), MLP((512, 512), dropout_rate=r)) for r in (0.0, DROPOUT)]
    plain, drop = train(
        runs, data, epochs=epochs, seeds=run_seeds, batch_size=min(50, n), timer=timer
    )
    config.advance(1)
    return OverfittingResult(epochs, run_seeds, n, plain, drop, tuple(timer.timings))


def _loss_panels(axes: list[Any], r: OverfittingResult) -> None:
    """Training and validation loss without and with dropout, early-stopping marks per seed."""
    s0, s1 = r.stats
    ep = r.plain.epochs
    for ax, h, s, title in (
        (axes[0], r.plain, s0, "without dropout"),
        (axes[1], r.drop, s1, f"with dropout {DROPOUT:g}"),
    ):
        figures.band(ax, ep, h.train_loss[0], label="training loss", color="#1f77b4")
        figures.band(ax, ep, h.val_loss[0], label="validation loss", color="#d62728")
        for i, (e, v) in enumerate(zip(s["best_epoch"], s["best_val_loss"], strict=True)):
            label = "early stopping (lowest val loss, per seed)" if i == 0 else None
            ax.plot(e, v, "v", color="k", markersize=9, label=label)
        ax.set_yscale("log")
        ax.set(
            title=f"{title}: {r.num_train} training examples",
            xlabel="epoch",
            ylabel="cross-entropy (log scale)",
        )
        ax.legend(loc="lower left")
    lo = min(axes[0].get_ylim()[0], axes[1].get_ylim()[0])
    hi = max(axes[0].get_ylim()[1], axes[1].get_ylim()[1])
    for ax in axes[:2]:
        ax.set_ylim(lo, hi)


def _comparison_panels(val_ax: Any, gap_ax: Any, r: OverfittingResult) -> None:
    """The validation loss on a linear scale (where its upturn shows) and the gap, both runs."""
    s0, s1 = r.stats
    ep = r.plain.epochs
    ax = val_ax
    figures.band(ax, ep, r.plain.val_loss[0], label="without dropout", color="#1f77b4")
    figures.band(ax, ep, r.drop.val_loss[0], label=f"dropout {DROPOUT:g}", color="#ff7f0e")
    for s, color, label in (
        (s0, "#1f77b4", "lowest val loss (per seed)"),
        (s1, "#ff7f0e", None),  # one legend entry for both
    ):
        ax.plot(
            s["best_epoch"],
            s["best_val_loss"],
            "v",
            color=color,
            markersize=9,
            markeredgecolor="k",
            label=label,
        )
    top = float(
        np.nanmax([np.nanmax(r.plain.val_loss[0, :, 3:]), np.nanmax(r.drop.val_loss[0, :, 3:])])
    )
    ax.set_ylim(0.8 * float(min(s0["best_val_loss"].min(), s1["best_val_loss"].min())), 1.1 * top)
    ax.set(title="Validation loss (linear scale)", xlabel="epoch", ylabel="cross-entropy")
    ax.legend()
    ax = gap_ax
    figures.band(ax, ep, s0["gap"], label="without dropout", color="#1f77b4")
    figures.band(ax, ep, s1["gap"], label=f"dropout {DROPOUT:g}", color="#ff7f0e")
    ax.set(title="Generalization gap: val loss - train loss", xlabel="epoch", ylabel="loss gap")
    ax.legend()


def figure(r: OverfittingResult) -> Figure:
    """Losses without and with dropout; the validation loss on a linear scale; the gap."""
    plt = figures.pyplot()
    fig, grid = plt.subplots(2, 2, figsize=(15, 10))
    _loss_panels([grid[0, 0], grid[0, 1]], r)
    _comparison_panels(grid[1, 0], grid[1, 1], r)
    fig.suptitle(
        f"Overfitting: 2x512 ReLU MLP, Adam 1e-3, {len(r.seeds)} seeds (mean and min-max band)"
    )
    fig.tight_layout()
    return Figure("overfitting.png", fig)


def claims(r: OverfittingResult) -> list[Claim]:
    """Validation loss turns up; dropout lowers the final gap; dropout improves the best model."""
    s0, s1 = r.stats
    smaller = r.smaller_gap_epochs
    overfit = bool(
        np.all(s0["best_epoch"] <= 0.75 * r.epochs)
        and np.all(s0["final_val_loss"] > s0["best_val_loss"])
        and np.all(s0["final_train_loss"] < s0["train_loss_at_best"])
    )
    span = f"epochs {smaller.min():g}-{smaller.max():g}" if len(smaller) else "no epoch"
    return [
        Claim(
            claim="Overfitting: validation loss turns up while training loss keeps falling",
            held=overfit,
            measured="lowest validation loss at epoch "
            + ", ".join(f"{e:g}" for e in s0["best_epoch"])
            + f" of {r.epochs}; from there to the end validation loss "
            f"{mean_std(s0['best_val_loss'])} -> {mean_std(s0['final_val_loss'])} while training "
            f"loss {mean_std(s0['train_loss_at_best'])} -> {mean_std(s0['final_train_loss'])}",
            rule="every seed: the lowest val loss at least a quarter of the run before the end, "
            "the final val loss above it, the final train loss below the one at that epoch",
        ),
        Claim(
            claim="Dropout lowers the final train/validation gap",
            held=bool(s1["final_gap"].mean() < s0["final_gap"].mean()),
            measured=f"final gap (val - train loss): {mean_std(s1['final_gap'])} with dropout vs "
            f"{mean_std(s0['final_gap'])} without; the mean gap is smaller with dropout at "
            f"{len(smaller)} of {r.epochs} epochs ({span})",
            rule="mean over seeds of the last epoch's gap is lower with dropout",
        ),
        Claim(
            claim="Dropout makes the best (early-stopped) model better",
            held=bool(s1["best_val_loss"].mean() < s0["best_val_loss"].mean()),
            measured=f"best validation loss {mean_std(s1['best_val_loss'])} with dropout vs "
            f"{mean_std(s0['best_val_loss'])}; test accuracy of the final parameters "
            f"{100 * s1['test_acc_final'].mean():.1f}% vs {100 * s0['test_acc_final'].mean():.1f}%",
            rule="mean best validation loss lower with dropout",
        ),
    ]


def summarize(r: OverfittingResult) -> Summary:
    """Headlines, the numbers behind the figure, the settings."""
    s0, s1 = r.stats
    keep = {k: v for k, v in s0.items() if k != "gap"}
    keep_d = {k: v for k, v in s1.items() if k != "gap"}
    return Summary(
        headlines=[
            (
                "epoch of lowest val loss (no dropout)",
                ", ".join(f"{e:g}" for e in s0["best_epoch"]),
            ),
            (
                "final gap: no dropout / dropout",
                f"{mean_std(s0['final_gap'])} / {mean_std(s1['final_gap'])}",
            ),
            (
                "best val loss: no dropout / dropout",
                f"{mean_std(s0['best_val_loss'])} / {mean_std(s1['best_val_loss'])}",
            ),
        ],
        numbers={
            "epochs": r.plain.epochs,
            "num_train": r.num_train,
            "without_dropout": keep | {"mean_gap": s0["gap"].mean(0)},
            "with_dropout": keep_d | {"mean_gap": s1["gap"].mean(0), "rate": DROPOUT},
            "epochs_where_dropout_gap_smaller": r.smaller_gap_epochs,
        },
        settings={
            "model": "2x512 relu",
            "optimizer": "adam 1e-3",
            "epochs": r.epochs,
            "batch_size": min(50, r.num_train),
            "seeds": list(r.seeds),
            "dropout": DROPOUT,
        },
    )


EXPERIMENT = Experiment(
    name="overfitting",
    title="Overfitting, early stopping and dropout",
    section="Overfitting; Dropout",
    summary="a 2x512 MLP on 200 examples: validation loss turns up; early stopping; "
    "dropout and the generalization gap",
    stages=1,
    compute=compute,
    figure=figure,
    claims=claims,
    summarize=summarize,
)
