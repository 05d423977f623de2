"""Experiment 7: batch normalization in a deep sigmoid MLP: speed, stable learning rates, and the
"smoother loss" claim measured with the Hessian's top eigenvalue."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxopt_lectures as jl
from jaxopt_lectures.experiments import figures
from jaxopt_lectures.experiments.base import Claim, Context, Result, fmt
from jaxopt_lectures.experiments.engine import (
    MLP,
    History,
    TrainRun,
    cross_entropy,
    first_reach,
    timed,
    train,
)

__all__ = ["RATES", "run"]

RATES = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
TARGET = 0.9
HESSIAN_RATE = 1.0
HESSIAN_BATCH = 512
CHECKPOINT_EVERY = 4  # evaluations (of 8 steps each)


def _top_eigenvalues(
    model: MLP, checkpoints: Any, x: jax.Array, y: jax.Array, num_iters: int
) -> np.ndarray:
    """The Hessian's top eigenvalue of the training-mode loss (batch statistics in batch norm) on
    the batch ``(x, y)``, at every checkpoint (leading axes: seeds, checkpoints)."""

    def top(params: Any, bn_state: Any) -> jax.Array:
        def loss(p: Any) -> jax.Array:
            logits, _ = jl.nn.mlp_apply(p, bn_state, x, activation=model.activation, training=True)
            return cross_entropy(logits, y)

        return jl.diagnostics.hessian_top_eigenvalue(
            loss, params, jax.random.key(0), num_iters=num_iters
        )

    return np.asarray(timed("hessian", jax.jit(jax.vmap(jax.vmap(top))), *checkpoints))


def _trains(h: History, chance: float) -> np.ndarray:
    """Per rate: every seed's final training loss is finite and below half of ln(classes)."""
    final = h.train_loss[..., -1]
    with np.errstate(invalid="ignore"):
        return np.all(np.isfinite(final) & (final < 0.5 * chance), axis=1)


def _at_loss(losses: np.ndarray, values: np.ndarray, level: float) -> float:
    """The value where a (mostly falling) loss curve first crosses ``level``, interpolated in
    log-loss between the two evaluations around it; NaN if it never does."""
    below = np.nonzero(losses <= level)[0]
    if not len(below) or below[0] == 0:
        return float("nan")
    j = below[0]
    a, b = np.log(losses[j - 1]), np.log(losses[j])
    t = (np.log(level) - a) / (b - a) if b != a else 1.0
    return float(values[j - 1] + t * (values[j] - values[j - 1]))


def run(ctx: Context) -> Result:
    """Batch norm, the lecture's reparametrization that "1. makes the loss function smoother,
    2. allows higher learning rates" (and trains faster, Ioffe and Szegedy's MNIST figure).

    Settings: Ioffe and Szegedy's 3x100 sigmoid MLP (Glorot init) with and without batch norm
    before each sigmoid, plain SGD, mini-batches of 64; a sweep of 7 rates from 0.1 to 100, 24
    epochs = 384 steps (8 epochs quick), evaluated every 8 steps, 3 seeds (1 quick): rates,
    seeds and both models in one compiled program, which also keeps the parameters every 32
    steps. On those of rate 1: the Hessian's top eigenvalue (power iteration, 20 Hessian-vector
    products, 10 quick) of the training-mode loss on a fixed batch of 512 training examples.

    Measured: the steps to 90% validation accuracy at every rate; the largest rate that trains
    (final training loss below half the chance-level loss ln(classes), every seed); the top
    eigenvalue and the parameter norm along training, compared at equal training loss.
    """
    data = ctx.data()
    epochs = ctx.pick(24, 8)
    seeds = ctx.seeds(full=3, quick=1)
    models = {b: MLP((100, 100, 100), "sigmoid", batch_norm=b) for b in (False, True)}
    plain, bn = train(
        [TrainRun(jl.sgd, RATES, models[False]), TrainRun(jl.sgd, RATES, models[True])],
        data,
        epochs=epochs,
        seeds=seeds,
        eval_every=8,
        checkpoint_every=CHECKPOINT_EVERY,  # every 32 steps, for the Hessian
    )
    ctx.advance(1)
    i1 = RATES.index(HESSIAN_RATE)
    x, y = jnp.asarray(data.x_train[:HESSIAN_BATCH]), jnp.asarray(data.y_train[:HESSIAN_BATCH])
    iters = ctx.pick(20, 10)
    lam = {
        k: _top_eigenvalues(models[b], jax.tree.map(lambda a: a[i1], h.checkpoints), x, y, iters)
        for k, b, h in (("without", False, plain), ("with", True, bn))
    }
    ckpt_steps = plain.checkpoint_steps
    assert ckpt_steps is not None
    every = CHECKPOINT_EVERY
    norm = {
        k: h.probes["param_norm"][i1][:, ::every] for k, h in (("without", plain), ("with", bn))
    }
    tl = {k: h.train_loss[i1][:, ::every] for k, h in (("without", plain), ("with", bn))}
    ctx.advance(1)

    rates = np.asarray(RATES)
    hist = {"without": plain, "with": bn}
    reach = {
        k: np.array(
            [
                [first_reach(h.val_acc[i, s], TARGET, h.steps) for s in range(len(seeds))]
                for i in range(len(rates))
            ]
        )
        for k, h in hist.items()
    }
    mean_reach = {k: r.mean(axis=1) for k, r in reach.items()}
    chance = float(np.log(data.num_classes))
    trains = {k: _trains(h, chance) for k, h in hist.items()}
    largest = {k: float(rates[t].max()) if t.any() else float("nan") for k, t in trains.items()}
    best = {k: float(np.min(m)) for k, m in mean_reach.items()}
    best_rate = {k: float(rates[int(np.argmin(m))]) for k, m in mean_reach.items()}
    # Equal-loss comparison: the eigenvalue when each run's training loss first crosses a level.
    floor = max(float(np.nanmax(np.nanmin(tl[k], axis=-1))) for k in tl)
    levels = [lv for lv in (1.5, 1.0, 0.5, 0.3, 0.2, 0.1) if lv > floor]
    at_level = {
        k: np.array(
            [[_at_loss(tl[k][s], lam[k][s], lv) for lv in levels] for s in range(len(seeds))]
        )
        for k in tl
    }
    ratio_init = float(np.mean(lam["with"][:, 0] / lam["without"][:, 0]))
    with np.errstate(invalid="ignore"):
        ratios = np.nanmean(at_level["with"] / at_level["without"], axis=0)
    smoother = bool(len(ratios) and np.all(ratios < 1.0))

    plt = figures.pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(15, 10))
    colors = {"without": "#d62728", "with": "#1f77b4"}
    ax = axes[0, 0]
    for k, h in hist.items():
        figures.band(ax, h.steps, h.val_acc[i1], label=f"{k} batch norm, rate 1", color=colors[k])
        j = int(np.argmin(mean_reach[k]))
        if j != i1:
            figures.band(
                ax,
                h.steps,
                h.val_acc[j],
                label=f"{k} batch norm, rate {rates[j]:g}",
                color=colors[k],
                linestyle="--",
            )
    ax.axhline(TARGET, color="grey", linestyle=":", label=f"{TARGET:.0%}")
    ax.set(title="Validation accuracy (3x100 sigmoid, SGD)", xlabel="step", ylabel="accuracy")
    ax.legend(loc="lower right")
    ax = axes[0, 1]
    for k in hist:
        shown = np.where(np.isfinite(mean_reach[k]), mean_reach[k], np.nan)
        ax.plot(rates, shown, "o-", color=colors[k], label=f"{k} batch norm", linewidth=2)
        never = ~np.isfinite(mean_reach[k])
        ax.plot(
            rates[never],
            np.full(never.sum(), epochs * plain.steps_per_epoch),
            "x",
            color=colors[k],
            markersize=10,
            markeredgewidth=2.5,
        )
    ax.plot([], [], "kx", label="never (drawn at the last step)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(
        title=f"Steps to {TARGET:.0%} validation accuracy per learning rate",
        xlabel="learning rate",
        ylabel="steps (mean over seeds)",
    )
    ax.legend()
    ax = axes[1, 0]
    for k in hist:
        for s in range(len(seeds)):
            ax.plot(
                tl[k][s],
                lam[k][s],
                "o-",
                color=colors[k],
                alpha=0.8,
                label=f"{k} batch norm" if s == 0 else None,
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.invert_xaxis()
    ax.set(
        title="Hessian top eigenvalue against training loss (rate 1)",
        xlabel="training loss (falls to the right)",
        ylabel=r"$\lambda_{max}$ (log scale)",
    )
    ax.legend()
    ax = axes[1, 1]
    for k in hist:
        figures.band(ax, ckpt_steps, norm[k], label=f"{k} batch norm", color=colors[k])
    ax.set(title="Parameter norm along training (rate 1)", xlabel="step", ylabel=r"$\|\theta\|_2$")
    ax.legend()
    fig.suptitle("Batch normalization: speed, stable rates, and curvature")
    fig.tight_layout()
    name = figures.save(fig, ctx.figure_path("batch_norm.png"))
    ctx.advance(1)

    level_text = ", ".join(f"{lv:g}: {r:.2f}" for lv, r in zip(levels, ratios, strict=True))
    claims = [
        Claim(
            claim="Batch norm reaches the target validation accuracy in fewer steps",
            held=bool(
                best["with"] < best["without"]
                and mean_reach["with"][i1] < mean_reach["without"][i1]
            ),
            measured=f"steps to {TARGET:.0%}: at rate 1 with BN {fmt(mean_reach['with'][i1])}, "
            f"without {fmt(mean_reach['without'][i1])}; at each one's best rate with BN "
            f"{fmt(best['with'])} (rate {best_rate['with']:g}), without {fmt(best['without'])} "
            f"(rate {best_rate['without']:g})",
            rule="fewer steps both at rate 1 and at each model's best rate",
        ),
        Claim(
            claim="Batch norm allows higher learning rates",
            held=bool(largest["with"] > largest["without"]),
            measured=f"largest rate that trains: with BN {largest['with']:g}, without "
            f"{largest['without']:g}",
            rule="largest rate whose final training loss is below half of ln(classes), every seed",
        ),
        Claim(
            claim="Batch norm makes the loss smoother (smaller top Hessian eigenvalue)",
            held=smoother,
            measured=f"lambda_max with BN / without: {ratio_init:.2f} at initialization; at equal "
            f"training loss ({level_text or 'no common loss level'}); parameter norm at the end "
            f"with BN {norm['with'][:, -1].mean():.3g} vs {norm['without'][:, -1].mean():.3g}",
            rule="the ratio is below 1 at every training-loss level both runs reach",
        ),
    ]
    return Result(
        numbers={
            "rates": rates,
            "target_val_acc": TARGET,
            "steps_to_target": {k: reach[k] for k in reach},
            "mean_steps_to_target": mean_reach,
            "best_steps_to_target": best,
            "best_rate": best_rate,
            "trains": trains,
            "largest_rate_that_trains": largest,
            "hessian": {
                "rate": HESSIAN_RATE,
                "steps": ckpt_steps,
                "top_eigenvalue": lam,
                "train_loss": tl,
                "param_norm": norm,
                "loss_levels": levels,
                "eigenvalue_at_loss_level": at_level,
                "ratio_with_over_without_at_init": ratio_init,
                "ratio_with_over_without_at_levels": ratios,
            },
        },
        figures=[name],
        headlines=[
            (
                "steps to 90% val acc at rate 1: BN / no BN",
                f"{fmt(mean_reach['with'][i1])} / {fmt(mean_reach['without'][i1])}",
            ),
            (
                "largest rate that trains: BN / no BN",
                f"{largest['with']:g} / {largest['without']:g}",
            ),
            ("lambda_max ratio BN / no BN at init", f"{ratio_init:.2f}"),
            ("lambda_max ratio BN / no BN at equal loss", level_text or "n/a"),
        ],
        claims=claims,
        settings={
            "model": "3x100 sigmoid",
            "optimizer": "sgd",
            "epochs": epochs,
            "seeds": list(seeds),
            "rates": list(RATES),
            "eval_every": 8,
            "checkpoint_every_steps": 32,
            "hessian_batch": HESSIAN_BATCH,
        },
    )
