r"""Adaptive methods against plain SGD under Wilson et al.'s protocol: each method at its best rate
from a grid.

Wilson, Roelofs, Stern, Srebro and Recht (2017, "The Marginal Value of Adaptive Gradient Methods
in Machine Learning") tuned every method's learning rate on a grid and compared the methods at
their best rates; tuned SGD generalized as well as or better than Adam, RMSprop and AdaGrad. Here,
the optimizers experiment's network, data, epochs and batch size: plain SGD, Adam and RMSprop on a
grid of rates around each one's default (half-decade steps), each method at the rate with the
lowest mean best validation loss. The grid points the optimizers experiment trains already
(SGD 0.01 and 0.1, Adam 1e-3, RMSprop 0.01) are taken from its result for its first seeds; the
others are lanes of one ``vmap``-ed program with the same seeds, initializations and mini-batch
orders.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np

import jaxopt_lectures as jl
from jaxopt_lectures.experiments import figures
from jaxopt_lectures.experiments.api import Config, Figure, Numbers
from jaxopt_lectures.experiments.engine import (
    OptimizerFactory,
    Timer,
    Timing,
    TrainRun,
    select_optimizer,
    train,
)
from jaxopt_lectures.experiments.formatting import mean_std
from jaxopt_lectures.experiments.lecture import optimizers
from jaxopt_lectures.experiments.record import Measurement

__all__ = [
    "FULL",
    "TunedRatesResult",
    "TunedRatesSettings",
    "best_rates",
    "compute",
    "figure",
    "measurement",
]

PROTOCOL = (
    "Wilson et al. (2017): every method at its best learning rate from a grid (lowest mean best "
    "validation loss), same network, data and epochs"
)
METHODS: dict[str, OptimizerFactory] = {"sgd": jl.sgd, "adam": jl.adam, "rmsprop": jl.rmsprop}
# The optimizers experiment's lanes that are grid points: method -> {rate: its name there}.
SHARED = {
    "sgd": {0.01: "sgd (lr 0.01)", 0.1: "sgd (lr 0.1)"},
    "adam": {1e-3: "adam"},
    "rmsprop": {0.01: "rmsprop"},
}


@dataclass(frozen=True)
class TunedRatesSettings:
    """Each method's rate grid and the number of seeds (the optimizers experiment's first)."""

    grids: tuple[tuple[str, tuple[float, ...]], ...] = (
        ("sgd", (0.01, 0.03, 0.1, 0.3, 1.0)),
        ("adam", (3e-4, 1e-3, 3e-3)),
        ("rmsprop", (1e-3, 3e-3, 0.01)),
    )
    num_seeds: int = 3


FULL = TunedRatesSettings()


class TunedRatesResult(NamedTuple):
    """Per method and rate (in grid order): best validation loss, final training loss and test
    accuracy per seed."""

    rates: dict[str, np.ndarray]
    best_val_loss: dict[str, np.ndarray]  # method -> (rates, seeds)
    final_train_loss: dict[str, np.ndarray]
    test_acc: dict[str, np.ndarray]
    seeds: tuple[int, ...]
    epochs: int
    settings: TunedRatesSettings
    timings: tuple[Timing, ...]


def compute(config: Config, seed: int, base: optimizers.OptimizersResult) -> TunedRatesResult:
    """Train the grid points the optimizers experiment's result ``base`` lacks (one program), on
    its first ``FULL.num_seeds`` seeds and epochs, and gather the whole grid."""
    settings = FULL
    timer = Timer()
    run_seeds = base.seeds[: settings.num_seeds]
    names = list(METHODS)
    missing = [(m, rate) for m, grid in settings.grids for rate in grid if rate not in SHARED[m]]
    run = TrainRun(
        select_optimizer([METHODS[m] for m in names]),
        tuple((names.index(m), rate) for m, rate in missing),
        optimizers.MODEL,
    )
    (h,) = train([run], config.data(seed), epochs=base.epochs, seeds=run_seeds, timer=timer)
    k = settings.num_seeds
    val = np.where(np.isfinite(h.val_loss), h.val_loss, np.inf)  # a diverged run: inf
    trained = {
        pair: {
            "best_val_loss": val[i].min(axis=-1),
            "final_train_loss": h.train_loss[i, :, -1],
            "test_acc": h.test_acc[i],
        }
        for i, pair in enumerate(missing)
    }

    def lane(m: str, rate: float) -> dict[str, np.ndarray]:
        if rate in SHARED[m]:
            per = base.per[SHARED[m][rate]]
            return {key: np.asarray(per[key])[:k] for key in trained[missing[0]]}
        return trained[(m, rate)]

    grids = dict(settings.grids)
    table = {m: [lane(m, rate) for rate in grid] for m, grid in grids.items()}
    return TunedRatesResult(
        rates={m: np.asarray(g) for m, g in grids.items()},
        best_val_loss={m: np.stack([c["best_val_loss"] for c in t]) for m, t in table.items()},
        final_train_loss={
            m: np.stack([c["final_train_loss"] for c in t]) for m, t in table.items()
        },
        test_acc={m: np.stack([c["test_acc"] for c in t]) for m, t in table.items()},
        seeds=tuple(run_seeds),
        epochs=base.epochs,
        settings=settings,
        timings=tuple(timer.timings),
    )


def best_rates(r: TunedRatesResult) -> dict[str, int]:
    """Per method, the index of the rate with the lowest mean best validation loss (a rate at
    which some seed diverged, a non-finite loss, is never the best)."""
    out = {}
    for m, v in r.best_val_loss.items():
        mean = np.mean(v, axis=-1)
        out[m] = int(np.argmin(np.where(np.isfinite(mean), mean, np.inf)))
    return out


def measurement(r: TunedRatesResult) -> Measurement:
    """Adam and RMSprop against SGD, each at its best rate, beyond the seeds' spread."""
    best = best_rates(r)

    def at(m: str) -> np.ndarray:
        return r.best_val_loss[m][best[m]]

    def edge(m: str) -> str:
        return " (the grid's edge)" if best[m] in (0, len(r.rates[m]) - 1) else ""

    margins = {}
    for m in ("adam", "rmsprop"):
        spread = float(max(at(m).std(), at("sgd").std()))
        margins[m] = (float(at("sgd").mean() - at(m).mean()), spread)
    lines = "; ".join(
        f"{m} at {r.rates[m][best[m]]:g}{edge(m)}: best val loss {mean_std(at(m))}, test "
        f"accuracy {mean_std(100 * r.test_acc[m][best[m]])}%"
        for m in METHODS
    )
    return Measurement(
        protocol=PROTOCOL,
        held=all(gap > spread for gap, spread in margins.values()),
        measured=f"{lines} (mean +- std over {len(r.seeds)} seeds); margin over SGD: "
        + ", ".join(
            f"{m} {g:.3g} against a seed spread of {s:.2g}" for m, (g, s) in margins.items()
        ),
        rule="Adam's and RMSprop's mean best validation loss, each at its best rate, below SGD's "
        "at its best rate by more than the seed spread (the larger std of the two compared)",
    )


def numbers(r: TunedRatesResult) -> dict[str, Numbers]:
    """The grid's numbers, the best rates and the settings."""
    best = best_rates(r)
    return {
        "rates": r.rates,
        "best_val_loss": r.best_val_loss,
        "final_train_loss": r.final_train_loss,
        "test_acc": r.test_acc,
        "best_rate": {m: float(r.rates[m][i]) for m, i in best.items()},
        "seeds": list(r.seeds),
        "epochs": r.epochs,
        "settings": asdict(r.settings),
    }


COLORS = {"sgd": "#1f77b4", "adam": "#d62728", "rmsprop": "#9467bd"}


def figure(r: TunedRatesResult) -> Figure:
    """Best validation loss against the rate per method (seed mean, min-max bars; the best rate
    circled), and the test accuracy at each method's best rate."""
    plt = figures.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [1.4, 1]})
    best = best_rates(r)
    ax = axes[0]
    for m, v in r.best_val_loss.items():
        mean = v.mean(-1)
        err = np.stack([mean - v.min(-1), v.max(-1) - mean])
        ax.errorbar(r.rates[m], mean, yerr=err, fmt="o-", capsize=4, color=COLORS[m], label=m)
        ax.plot(r.rates[m][best[m]], mean[best[m]], "o", ms=16, mfc="none", mec=COLORS[m], mew=2)
    ax.set_xscale("log")
    ax.set(
        title="Best validation loss per learning rate (circled: each method's best)",
        xlabel="learning rate",
        ylabel="best validation loss (early stopping)",
    )
    ax.legend()
    ax = axes[1]
    names = list(r.best_val_loss)
    accs = [100 * r.test_acc[m][best[m]] for m in names]
    means = [a.mean() for a in accs]
    ax.bar(
        [f"{m}\n(lr {r.rates[m][best[m]]:g})" for m in names],
        means,
        yerr=[[a.mean() - a.min() for a in accs], [a.max() - a.mean() for a in accs]],
        capsize=5,
        color=[COLORS[m] for m in names],
    )
    ax.set_ylim(min(a.min() for a in accs) - 2, 100)
    for i, v in enumerate(means):
        ax.text(i, v - 0.15, f"{v:.1f}", ha="center", va="top", color="white", fontsize=12)
    ax.set(title="Test accuracy at each method's best rate", ylabel="accuracy (%)")
    fig.suptitle(
        f"Wilson et al.'s protocol: each method at its best rate "
        f"({optimizers.MODEL.describe()} MLP, {r.epochs} epochs, {len(r.seeds)} seeds)"
    )
    fig.tight_layout()
    return Figure("optimizers_tuned.png", fig)
