"""Input normalization: training on raw against standardized inputs."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

import jaxopt_lectures as jl
from jaxopt_lectures.experiments import figures
from jaxopt_lectures.experiments.api import Claim, Config, Experiment, Figure, Summary, seeds
from jaxopt_lectures.experiments.engine import (
    MLP,
    History,
    Timer,
    Timing,
    TrainRun,
    first_reach,
    train,
)
from jaxopt_lectures.experiments.formatting import fmt

__all__ = [
    "EXPERIMENT",
    "RATES",
    "NormalizationResult",
    "claims",
    "compute",
    "figure",
    "summarize",
]

MODEL = MLP((128, 128))
INPUTS = ("raw", "standardized")

RATES = (1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
TARGET = 0.9


def _summary(h: History, chance: float) -> dict[str, np.ndarray]:
    """Per rate: does it train, the epochs to the target validation accuracy, the final loss."""
    final = h.train_loss[..., -1]
    with np.errstate(invalid="ignore"):  # below half the chance-level loss ln(classes)
        trains = np.all(np.isfinite(final) & (final < 0.5 * chance), axis=1)
    reach = np.array(
        [
            [first_reach(h.val_acc[i, s], TARGET, h.epochs) for s in range(h.val_acc.shape[1])]
            for i in range(len(h.learning_rates))
        ]
    )
    return {"trains": trains, "epochs_to_target": reach, "final_train_loss": final}


class NormalizationResult(NamedTuple):
    """The SGD rate sweeps on raw and standardized inputs and their per-rate summaries."""

    epochs: int
    seeds: tuple[int, ...]
    history: dict[str, History]  # "raw", "standardized"
    per_input: dict[str, dict[str, np.ndarray]]
    timings: tuple[Timing, ...]

    @property
    def largest(self) -> dict[str, float]:
        """The largest rate that trains, per input (NaN if none does)."""
        rates = np.asarray(RATES)
        return {
            k: float(rates[v["trains"]].max()) if v["trains"].any() else float("nan")
            for k, v in self.per_input.items()
        }

    @property
    def mean_reach(self) -> dict[str, np.ndarray]:
        """Epochs to the target per rate, mean over seeds."""
        return {k: v["epochs_to_target"].mean(axis=1) for k, v in self.per_input.items()}

    @property
    def best(self) -> dict[str, tuple[float, float]]:
        """For each input, the fewest epochs to the target (over rates) and the rate."""
        return {
            k: (float(np.min(m)), float(RATES[int(np.argmin(m))]))
            for k, m in self.mean_reach.items()
        }


def compute(config: Config, seed: int) -> NormalizationResult:
    """Raw against standardized inputs: the lecture's "training becomes faster and more stable
    (also allowing higher learning rates)".

    Settings: a 2x128 ReLU MLP trained with plain SGD at 8 rates from 0.001 to 3, mini-batches
    of 64, 20 epochs (8 quick), 3 seeds (2 quick), on the raw digits (gray levels 0-16) and on the
    digits standardized per pixel with the training statistics (std floored at 1 gray level). The
    rates, the seeds and both inputs are one compiled program (rates and seeds ``vmap``-ed).

    Measured: whether each rate trains (final training loss finite and below half the
    chance-level loss ln(classes), every seed); the largest such rate; the epochs to 90%
    validation accuracy at each input's best rate (the fewest epochs) and at each common rate.
    """
    timer = Timer()
    std = config.data(seed, standardize=True)
    raw = config.data(seed, standardize=False)
    epochs = config.pick(20, 8)
    run_seeds = seeds(config, seed, full=3, quick=2)
    h_raw, h_std = train(
        [TrainRun(jl.sgd, RATES, MODEL, data=raw), TrainRun(jl.sgd, RATES, MODEL, data=std)],
        std,
        epochs=epochs,
        seeds=run_seeds,
        timer=timer,
    )
    config.advance(1)
    chance = float(np.log(std.num_classes))
    history = {"raw": h_raw, "standardized": h_std}
    per_input = {k: _summary(h, chance) for k, h in history.items()}
    return NormalizationResult(epochs, run_seeds, history, per_input, tuple(timer.timings))


COLORS = {"raw": "#d62728", "standardized": "#1f77b4"}


def _final_loss_panel(ax: Any, r: NormalizationResult) -> None:
    rates = np.asarray(RATES)
    for k, h in r.history.items():
        final = np.where(np.isfinite(h.train_loss[..., -1]), h.train_loss[..., -1], np.nan)
        trains = r.per_input[k]["trains"]
        figures.per_rate(
            ax,
            rates,
            np.mean(final, axis=1),
            color=COLORS[k],
            label=k,
            crosses=~trains,
            cross_at=10,
        )
    ax.plot([], [], "kx", label="does not train (drawn at 10)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(
        title=f"Final training loss after {r.epochs} epochs",
        xlabel="learning rate (SGD)",
        ylabel="cross-entropy (log scale)",
    )
    ax.legend()


def figure(r: NormalizationResult) -> Figure:
    """Final loss and epochs to the target per rate; validation accuracy at each best rate."""
    plt = figures.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    _final_loss_panel(axes[0], r)
    rates = np.asarray(RATES)
    ax = axes[1]
    for k in INPUTS:
        figures.per_rate(ax, rates, r.mean_reach[k], color=COLORS[k], label=k)
    ax.set_xscale("log")
    ax.set(
        title=f"Epochs to {TARGET:.0%} validation accuracy (missing: never)",
        xlabel="learning rate (SGD)",
        ylabel="epochs (mean over seeds)",
    )
    ax.legend()
    ax = axes[2]
    for k, h in r.history.items():
        i = int(np.argmin(r.mean_reach[k]))
        figures.band(
            ax, h.epochs, h.val_acc[i], label=f"{k}, best rate {rates[i]:g}", color=COLORS[k]
        )
    ax.set(title="Validation accuracy at each input's best rate", xlabel="epoch", ylabel="accuracy")
    ax.legend(loc="lower right")
    fig.suptitle("Input normalization: raw gray levels (0-16) vs standardized pixels, 2x128 ReLU")
    fig.tight_layout()
    return Figure("input_normalization.png", fig)


def claims(r: NormalizationResult) -> list[Claim]:
    """Standardized inputs allow higher rates and train faster."""
    largest, best, mean_reach = r.largest, r.best, r.mean_reach
    return [
        Claim(
            claim="Standardized inputs allow higher learning rates",
            held=bool(largest["standardized"] > largest["raw"]),
            measured=f"largest rate that trains: raw {largest['raw']:g}, standardized "
            f"{largest['standardized']:g}",
            rule="the largest rate whose final training loss is below half of ln(classes) "
            "(every seed) is larger when standardized",
        ),
        Claim(
            claim="Standardized inputs train faster (each at its best rate)",
            held=bool(best["standardized"][0] < best["raw"][0]),
            measured=f"epochs to {TARGET:.0%} val accuracy: raw {fmt(best['raw'][0])} at "
            f"rate {best['raw'][1]:g}, standardized {fmt(best['standardized'][0])} at "
            f"{best['standardized'][1]:g}; at the same small rate {RATES[0]:g}: raw "
            f"{fmt(mean_reach['raw'][0])}, standardized {fmt(mean_reach['standardized'][0])}",
            rule="fewer epochs at the best rate of each input",
        ),
    ]


def summarize(r: NormalizationResult) -> Summary:
    """Headlines, the numbers behind the figure, the settings."""
    largest, best, mean_reach = r.largest, r.best, r.mean_reach
    return Summary(
        headlines=[
            (
                "largest rate that trains: raw / standardized",
                f"{largest['raw']:g} / {largest['standardized']:g}",
            ),
            (
                f"epochs to {TARGET:.0%} val acc at best rate: raw / standardized",
                f"{fmt(best['raw'][0])} / {fmt(best['standardized'][0])}",
            ),
        ],
        numbers={
            "rates": np.asarray(RATES),
            "largest_rate_that_trains": largest,
            "best_rate": {k: b[1] for k, b in best.items()},
            "epochs_to_target_at_best_rate": {k: b[0] for k, b in best.items()},
            "target_val_acc": TARGET,
            "per_input": {
                k: {**v, "mean_epochs_to_target": mean_reach[k]} for k, v in r.per_input.items()
            },
        },
        settings={
            "model": MODEL.describe(),
            "epochs": r.epochs,
            "seeds": list(r.seeds),
            "rates": list(RATES),
        },
    )


EXPERIMENT = Experiment(
    name="input-normalization",
    title="Input normalization",
    section="Input normalization",
    summary="raw vs standardized inputs: the largest rate that trains and the speed",
    stages=1,
    compute=compute,
    figure=figure,
    claims=claims,
    summarize=summarize,
)
