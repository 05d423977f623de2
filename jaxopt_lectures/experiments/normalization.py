"""Experiment 6: input normalization, training on raw against standardized inputs."""

from __future__ import annotations

import numpy as np

import jaxopt_lectures as jl
from jaxopt_lectures.experiments import figures
from jaxopt_lectures.experiments.base import Claim, Context, Result, fmt
from jaxopt_lectures.experiments.engine import MLP, History, TrainRun, first_reach, train

__all__ = ["RATES", "run"]

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


def run(ctx: Context) -> Result:
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
    std = ctx.data(standardize=True)
    raw = ctx.data(standardize=False)
    epochs = ctx.pick(20, 8)
    seeds = ctx.seeds(full=3, quick=2)
    model = MLP((128, 128))
    h_raw, h_std = train(
        [TrainRun(jl.sgd, RATES, model, data=raw), TrainRun(jl.sgd, RATES, model, data=std)],
        std,
        epochs=epochs,
        seeds=seeds,
    )
    ctx.advance(1)
    chance = float(np.log(std.num_classes))
    s = {"raw": _summary(h_raw, chance), "standardized": _summary(h_std, chance)}
    rates = np.asarray(RATES)
    largest = {
        k: float(rates[v["trains"]].max()) if v["trains"].any() else float("nan")
        for k, v in s.items()
    }
    mean_reach = {k: v["epochs_to_target"].mean(axis=1) for k, v in s.items()}
    best_rate = {k: float(rates[int(np.argmin(m))]) for k, m in mean_reach.items()}
    best_reach = {k: float(np.min(m)) for k, m in mean_reach.items()}

    plt = figures.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    colors = {"raw": "#d62728", "standardized": "#1f77b4"}
    ax = axes[0]
    for k, h in (("raw", h_raw), ("standardized", h_std)):
        final = np.where(np.isfinite(h.train_loss[..., -1]), h.train_loss[..., -1], np.nan)
        ax.plot(rates, np.mean(final, axis=1), "o-", color=colors[k], label=k, linewidth=2)
        bad = ~s[k]["trains"]
        ax.plot(
            rates[bad],
            np.full(bad.sum(), 10.0),
            "x",
            color=colors[k],
            markersize=10,
            markeredgewidth=2.5,
        )
    ax.plot([], [], "kx", label="does not train (drawn at 10)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(
        title=f"Final training loss after {epochs} epochs",
        xlabel="learning rate (SGD)",
        ylabel="cross-entropy (log scale)",
    )
    ax.legend()
    ax = axes[1]
    for k in ("raw", "standardized"):
        reach = np.where(np.isfinite(mean_reach[k]), mean_reach[k], np.nan)
        ax.plot(rates, reach, "o-", color=colors[k], label=k, linewidth=2)
    ax.set_xscale("log")
    ax.set(
        title=f"Epochs to {TARGET:.0%} validation accuracy (missing: never)",
        xlabel="learning rate (SGD)",
        ylabel="epochs (mean over seeds)",
    )
    ax.legend()
    ax = axes[2]
    for k, h in (("raw", h_raw), ("standardized", h_std)):
        i = int(np.argmin(mean_reach[k]))
        figures.band(
            ax, h.epochs, h.val_acc[i], label=f"{k}, best rate {rates[i]:g}", color=colors[k]
        )
    ax.set(title="Validation accuracy at each input's best rate", xlabel="epoch", ylabel="accuracy")
    ax.legend(loc="lower right")
    fig.suptitle("Input normalization: raw gray levels (0-16) vs standardized pixels, 2x128 ReLU")
    fig.tight_layout()
    name = figures.save(fig, ctx.figure_path("input_normalization.png"))
    ctx.advance(1)

    small = rates[0]
    claims = [
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
            held=bool(best_reach["standardized"] < best_reach["raw"]),
            measured=f"epochs to {TARGET:.0%} val accuracy: raw {fmt(best_reach['raw'])} at "
            f"rate {best_rate['raw']:g}, standardized {fmt(best_reach['standardized'])} at "
            f"{best_rate['standardized']:g}; at the same small rate {small:g}: raw "
            f"{fmt(mean_reach['raw'][0])}, standardized {fmt(mean_reach['standardized'][0])}",
            rule="fewer epochs at the best rate of each input",
        ),
    ]
    return Result(
        numbers={
            "rates": rates,
            "largest_rate_that_trains": largest,
            "best_rate": best_rate,
            "epochs_to_target_at_best_rate": best_reach,
            "target_val_acc": TARGET,
            "per_input": {k: {**v, "mean_epochs_to_target": mean_reach[k]} for k, v in s.items()},
        },
        figures=[name],
        headlines=[
            (
                "largest rate that trains: raw / standardized",
                f"{largest['raw']:g} / {largest['standardized']:g}",
            ),
            (
                f"epochs to {TARGET:.0%} val acc at best rate: raw / standardized",
                f"{fmt(best_reach['raw'])} / {fmt(best_reach['standardized'])}",
            ),
        ],
        claims=claims,
        settings={
            "model": model.describe(),
            "epochs": epochs,
            "seeds": list(seeds),
            "rates": list(RATES),
        },
    )
