"""Batch normalization in a deep sigmoid MLP: speed, stable learning rates, and the
"smoother loss" claim measured with the Hessian's top eigenvalue."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
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
    cross_entropy,
    first_reach,
    timed,
    train,
)
from jaxopt_lectures.experiments.formatting import fmt

__all__ = [
    "EXPERIMENT",
    "RATES",
    "BatchNormResult",
    "claims",
    "compute",
    "figure",
    "summarize",
]

RATES = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
TARGET = 0.9
HESSIAN_RATE = 1.0
HESSIAN_BATCH = 512
CHECKPOINT_EVERY = 4  # evaluations (of 8 steps each)
EVAL_EVERY = 8
KINDS = ("without", "with")  # batch norm
MODELS = {k: MLP((100, 100, 100), "sigmoid", batch_norm=k == "with") for k in KINDS}
COLORS = {"without": "#d62728", "with": "#1f77b4"}


def _top_eigenvalues(
    model: MLP,
    checkpoints: Any,
    x: jax.Array,
    y: jax.Array,
    num_iters: int,
    timer: Timer,
    short: bool = False,
) -> np.ndarray:
    """The Hessian's top eigenvalue of the training-mode loss (batch statistics in batch norm) on
    the batch ``(x, y)``, at every checkpoint (leading axes: seeds, checkpoints); ``short``
    for a quick run (a short program: compiling is most of its time)."""

    def top(params: Any, bn_state: Any) -> jax.Array:
        def loss(p: Any, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
            logits, _ = model.apply(p, bn_state, batch[0], training=True)
            return cross_entropy(logits, batch[1])

        values, _ = jl.curvature.hessian_eigenvalues(
            loss, params, (x, y), k=1, key=jax.random.key(0), num_iterations=num_iters
        )
        return values[0]

    program = jax.jit(jax.vmap(jax.vmap(top)))
    return np.asarray(timed("hessian", program, *checkpoints, timer=timer, short=short))


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


class BatchNormResult(NamedTuple):
    """The rate sweeps without and with batch norm, and the curvature along training at rate 1:
    ``lam[k]`` the top Hessian eigenvalue, ``train_loss[k]`` and ``param_norm[k]`` at the
    checkpoints (seeds x checkpoints), for ``k`` in ``KINDS``."""

    epochs: int
    seeds: tuple[int, ...]
    chance: float  # ln(classes), the loss of a uniform guess
    history: dict[str, History]
    checkpoint_steps: np.ndarray  # the steps of the checkpoints
    lam: dict[str, np.ndarray]
    train_loss: dict[str, np.ndarray]
    param_norm: dict[str, np.ndarray]
    timings: tuple[Timing, ...]

    @property
    def reach(self) -> dict[str, np.ndarray]:
        """Steps to the target validation accuracy, rates x seeds (inf where never reached)."""
        return {
            k: np.array(
                [
                    [first_reach(h.val_acc[i, s], TARGET, h.steps) for s in range(len(self.seeds))]
                    for i in range(len(RATES))
                ]
            )
            for k, h in self.history.items()
        }

    @property
    def mean_reach(self) -> dict[str, np.ndarray]:
        """:attr:`reach`, mean over seeds."""
        return {k: r.mean(axis=1) for k, r in self.reach.items()}


def compute(config: Config, seed: int) -> BatchNormResult:
    """Batch norm, the lecture's reparametrization that "1. makes the loss function smoother,
    2. allows higher learning rates" (and trains faster, Ioffe and Szegedy's MNIST figure).

    Settings: Ioffe and Szegedy's 3x100 sigmoid MLP (Glorot init) with and without batch norm
    before each sigmoid, plain SGD, mini-batches of 64; a sweep of 7 rates from 0.1 to 100, 24
    epochs = 384 steps (8 epochs quick), evaluated every 8 steps, 3 seeds (1 quick): rates,
    seeds and both models in one compiled program, which also keeps the parameters every 32
    steps. On those of rate 1: the Hessian's top eigenvalue (Lanczos, 20 Hessian-vector
    products, 10 quick) of the training-mode loss on a fixed batch of 512 training examples.

    Measured: the steps to 90% validation accuracy at every rate; the largest rate that trains
    (final training loss below half the chance-level loss ln(classes), every seed); the top
    eigenvalue and the parameter norm along training, compared at equal training loss.
    """
    timer = Timer()
    data = config.data(seed)
    epochs = config.pick(24, 8)
    run_seeds = seeds(config, seed, full=3, quick=1)
    histories = train(
        [TrainRun(jl.sgd, RATES, MODELS[k]) for k in KINDS],
        data,
        epochs=epochs,
        seeds=run_seeds,
        eval_every=EVAL_EVERY,
        checkpoint_every=CHECKPOINT_EVERY,  # every 32 steps, for the Hessian
        timer=timer,
    )
    history = dict(zip(KINDS, histories, strict=True))
    config.advance(1)
    i1 = RATES.index(HESSIAN_RATE)
    x, y = jnp.asarray(data.x_train[:HESSIAN_BATCH]), jnp.asarray(data.y_train[:HESSIAN_BATCH])
    iters = config.pick(20, 10)
    lam = {
        k: _top_eigenvalues(
            MODELS[k],
            jax.tree.map(lambda a: a[i1], h.checkpoints),
            x,
            y,
            iters,
            timer,
            config.quick,
        )
        for k, h in history.items()
    }
    every = CHECKPOINT_EVERY
    steps = history["without"].checkpoint_steps
    assert steps is not None  # checkpoint_every was given
    config.advance(1)
    return BatchNormResult(
        epochs=epochs,
        seeds=run_seeds,
        chance=float(np.log(data.num_classes)),
        history=history,
        checkpoint_steps=steps,
        lam=lam,
        train_loss={k: h.train_loss[i1][:, ::every] for k, h in history.items()},
        param_norm={k: h.probes["param_norm"][i1][:, ::every] for k, h in history.items()},
        timings=tuple(timer.timings),
    )


class _Smoothness(NamedTuple):
    levels: list[float]
    at_level: dict[str, np.ndarray]  # eigenvalue at each loss level, seeds x levels
    ratio_init: float
    ratios: np.ndarray  # with / without at each level

    @property
    def text(self) -> str:
        return ", ".join(f"{lv:g}: {r:.2f}" for lv, r in zip(self.levels, self.ratios, strict=True))


def _smoothness(r: BatchNormResult) -> _Smoothness:
    """The eigenvalue when each run's training loss first crosses a level both runs reach."""
    tl = r.train_loss
    floor = max(float(np.nanmax(np.nanmin(tl[k], axis=-1))) for k in tl)
    levels = [lv for lv in (1.5, 1.0, 0.5, 0.3, 0.2, 0.1) if lv > floor]
    at_level = {
        k: np.array(
            [[_at_loss(tl[k][s], r.lam[k][s], lv) for lv in levels] for s in range(len(r.seeds))]
        )
        for k in tl
    }
    ratio_init = float(np.mean(r.lam["with"][:, 0] / r.lam["without"][:, 0]))
    with np.errstate(invalid="ignore"):
        ratios = np.nanmean(at_level["with"] / at_level["without"], axis=0)
    return _Smoothness(levels, at_level, ratio_init, ratios)


def _largest(r: BatchNormResult) -> dict[str, float]:
    """The largest rate that trains, per model (NaN if none does)."""
    rates = np.asarray(RATES)
    trains = {k: _trains(h, r.chance) for k, h in r.history.items()}
    return {k: float(rates[t].max()) if t.any() else float("nan") for k, t in trains.items()}


def _best(r: BatchNormResult) -> dict[str, tuple[float, float]]:
    """Per model: the fewest mean steps to the target (over rates) and that rate."""
    return {k: (float(np.min(m)), float(RATES[int(np.argmin(m))])) for k, m in r.mean_reach.items()}


def _accuracy_panel(ax: Any, r: BatchNormResult) -> None:
    i1 = RATES.index(HESSIAN_RATE)
    for k, h in r.history.items():
        figures.band(ax, h.steps, h.val_acc[i1], label=f"{k} batch norm, rate 1", color=COLORS[k])
        j = int(np.argmin(r.mean_reach[k]))
        if j != i1:
            label = f"{k} batch norm, rate {RATES[j]:g}"
            figures.band(ax, h.steps, h.val_acc[j], label=label, color=COLORS[k], linestyle="--")
    ax.axhline(TARGET, color="grey", linestyle=":", label=f"{TARGET:.0%}")
    ax.set(title="Validation accuracy (3x100 sigmoid, SGD)", xlabel="step", ylabel="accuracy")
    ax.legend(loc="lower right")


def _rates_panel(ax: Any, r: BatchNormResult) -> None:
    rates = np.asarray(RATES)
    last_step = r.epochs * r.history["without"].steps_per_epoch
    for k, mean in r.mean_reach.items():
        figures.per_rate(
            ax,
            rates,
            mean,
            color=COLORS[k],
            label=f"{k} batch norm",
            crosses=~np.isfinite(mean),
            cross_at=last_step,
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


def _curvature_panels(eig_ax: Any, norm_ax: Any, r: BatchNormResult) -> None:
    for k in KINDS:
        for s in range(len(r.seeds)):
            label = f"{k} batch norm" if s == 0 else None
            eig_ax.plot(
                r.train_loss[k][s], r.lam[k][s], "o-", color=COLORS[k], alpha=0.8, label=label
            )
    eig_ax.set_xscale("log")
    eig_ax.set_yscale("log")
    eig_ax.invert_xaxis()
    eig_ax.set(
        title="Hessian top eigenvalue against training loss (rate 1)",
        xlabel="training loss (falls to the right)",
        ylabel=r"$\lambda_{max}$ (log scale)",
    )
    eig_ax.legend()
    for k in KINDS:
        figures.band(
            norm_ax, r.checkpoint_steps, r.param_norm[k], label=f"{k} batch norm", color=COLORS[k]
        )
    norm_ax.set(
        title="Parameter norm along training (rate 1)", xlabel="step", ylabel=r"$\|\theta\|_2$"
    )
    norm_ax.legend()


def figure(r: BatchNormResult) -> Figure:
    """Validation accuracy; steps to the target per rate; curvature and parameter norm."""
    plt = figures.pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(15, 10))
    _accuracy_panel(axes[0, 0], r)
    _rates_panel(axes[0, 1], r)
    _curvature_panels(axes[1, 0], axes[1, 1], r)
    fig.suptitle("Batch normalization: speed, stable rates, and curvature")
    fig.tight_layout()
    return Figure("batch_norm.png", fig)


def claims(r: BatchNormResult) -> list[Claim]:
    """Faster to the target; higher stable rates; a smaller top eigenvalue at equal loss."""
    i1 = RATES.index(HESSIAN_RATE)
    mean_reach, best, largest, smooth = r.mean_reach, _best(r), _largest(r), _smoothness(r)
    norm = r.param_norm
    return [
        Claim(
            claim="Batch norm reaches the target validation accuracy in fewer steps",
            held=bool(
                best["with"][0] < best["without"][0]
                and mean_reach["with"][i1] < mean_reach["without"][i1]
            ),
            measured=f"steps to {TARGET:.0%}: at rate 1 with BN {fmt(mean_reach['with'][i1])}, "
            f"without {fmt(mean_reach['without'][i1])}; at each one's best rate with BN "
            f"{fmt(best['with'][0])} (rate {best['with'][1]:g}), without "
            f"{fmt(best['without'][0])} (rate {best['without'][1]:g})",
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
            held=bool(len(smooth.ratios) and np.all(smooth.ratios < 1.0)),
            measured=f"lambda_max with BN / without: {smooth.ratio_init:.2f} at initialization; "
            f"at equal training loss ({smooth.text or 'no common loss level'}); parameter norm "
            f"at the end with BN {norm['with'][:, -1].mean():.3g} vs "
            f"{norm['without'][:, -1].mean():.3g}",
            rule="the ratio is below 1 at every training-loss level both runs reach",
        ),
    ]


def summarize(r: BatchNormResult) -> Summary:
    """Headlines, the numbers behind the figure, the settings."""
    i1 = RATES.index(HESSIAN_RATE)
    mean_reach, best, largest, smooth = r.mean_reach, _best(r), _largest(r), _smoothness(r)
    return Summary(
        headlines=[
            (
                "steps to 90% val acc at rate 1: BN / no BN",
                f"{fmt(mean_reach['with'][i1])} / {fmt(mean_reach['without'][i1])}",
            ),
            (
                "largest rate that trains: BN / no BN",
                f"{largest['with']:g} / {largest['without']:g}",
            ),
            ("lambda_max ratio BN / no BN at init", f"{smooth.ratio_init:.2f}"),
            ("lambda_max ratio BN / no BN at equal loss", smooth.text or "n/a"),
        ],
        numbers={
            "rates": np.asarray(RATES),
            "target_val_acc": TARGET,
            "steps_to_target": r.reach,
            "mean_steps_to_target": mean_reach,
            "best_steps_to_target": {k: b[0] for k, b in best.items()},
            "best_rate": {k: b[1] for k, b in best.items()},
            "trains": {k: _trains(h, r.chance) for k, h in r.history.items()},
            "largest_rate_that_trains": largest,
            "hessian": {
                "rate": HESSIAN_RATE,
                "steps": r.checkpoint_steps,
                "top_eigenvalue": r.lam,
                "train_loss": r.train_loss,
                "param_norm": r.param_norm,
                "loss_levels": smooth.levels,
                "eigenvalue_at_loss_level": smooth.at_level,
                "ratio_with_over_without_at_init": smooth.ratio_init,
                "ratio_with_over_without_at_levels": smooth.ratios,
            },
        },
        settings={
            "model": "3x100 sigmoid",
            "optimizer": "sgd",
            "epochs": r.epochs,
            "seeds": list(r.seeds),
            "rates": list(RATES),
            "eval_every": EVAL_EVERY,
            "checkpoint_every_steps": CHECKPOINT_EVERY * EVAL_EVERY,
            "hessian_batch": HESSIAN_BATCH,
        },
    )


EXPERIMENT = Experiment(
    name="batch-norm",
    title="Batch normalization",
    section="Normalizing in between layers (batch normalization)",
    summary="3x100 sigmoid with and without BN: steps to 90%, stable rates, Hessian top eigenvalue",
    stages=2,
    compute=compute,
    figure=figure,
    claims=claims,
    summarize=summarize,
)
