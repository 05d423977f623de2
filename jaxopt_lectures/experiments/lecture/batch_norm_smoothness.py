r"""Batch normalization: does it make the loss smoother (measured as Santurkar et al. measured it),
and does it reduce the chances of getting stuck?

1. Smoothness along the training path (Santurkar, Tsipras, Ilyas and Madry, 2018, "How Does Batch
   Normalization Help Optimization?"). At checkpoints along training, on a fixed batch and with the
   training-mode loss (batch statistics), move from the parameters along the gradient,
   :math:`\vartheta - s\, g` for step sizes s in a range around the training rate, and measure

   - the *loss range*: :math:`\max_s L(\vartheta - s g) - \min_s L(\vartheta - s g)`;
   - the *gradient predictiveness*: :math:`\max_s \lVert g - \nabla L(\vartheta - s g) \rVert`
     (how much the gradient changes over the step; small = predictive);
   - the *effective beta-smoothness*:
     :math:`\max_s \lVert g - \nabla L(\vartheta - s g) \rVert / \lVert s g \rVert`;

   with and without batch norm, bands over seeds, next to the Hessian's top eigenvalue and that
   eigenvalue times the mean squared weight (batch norm makes the loss invariant to each layer's
   weight scale c, which divides the Hessian by c^2: the product is invariant to a global
   rescaling).
2. Getting stuck: the same network trained at several rates and seeds, with and without batch
   norm; the share of (rate, seed) runs that reach the target validation accuracy within the
   step budget (a run that does not is stuck on a plateau or diverged).
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
    TrainRun,
    cross_entropy,
    fit_mlps,
    timed,
)

__all__ = [
    "EXPERIMENT",
    "BnLandscapeResult",
    "BnLandscapeSettings",
    "claims",
    "compute",
    "figure",
    "summarize",
]

KINDS = ("without", "with")
METRICS = ("loss_range", "grad_change", "beta")


@dataclass(frozen=True)
class BnLandscapeSettings:
    """The network (with and without batch norm), the rates it is trained at (plain SGD), steps
    and seeds; the target accuracy; for the smoothness probes: the rate (one of ``rates``), the
    checkpoints probed (every ``probe_every``-th evaluation), the step sizes as multiples of the
    rate, the probe batch and the Hessian-vector products (Lanczos iterations) for the top
    eigenvalue (0: not measured)."""

    hidden: tuple[int, ...] = (100, 100, 100)
    rates: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0)
    smooth_rate: float = 1.0
    steps: int = 320
    probe_every: int = 2
    step_multiples: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    probe_batch: int = 256
    power_iters: int = 15
    target: float = 0.9
    num_seeds: int = 4


FULL = BnLandscapeSettings()
QUICK = BnLandscapeSettings(steps=160, power_iters=0, rates=(0.3, 1.0, 3.0), num_seeds=2)
EVERY = 16  # steps between evaluations (and checkpoints)


class BnLandscapeResult(NamedTuple):
    """Per kind (without / with batch norm): the smoothness metrics and eigenvalues at every
    checkpoint and seed, the training losses there; the stuck experiment's accuracies."""

    steps: np.ndarray
    metrics: dict[str, dict[str, np.ndarray]]  # kind -> metric -> (seeds, checkpoints)
    top_eigenvalue: dict[str, np.ndarray]
    normalized_eigenvalue: dict[str, np.ndarray]
    train_loss: dict[str, np.ndarray]
    stuck_rates: np.ndarray
    stuck_best_acc: dict[str, np.ndarray]  # kind -> (rates, seeds): best val acc on the way
    reached: dict[str, np.ndarray]  # kind -> (rates, seeds) bool
    target: float
    smooth_rate: float
    settings: BnLandscapeSettings
    timings: tuple[Timing, ...]


def _weights_mean_square(params: Any) -> jax.Array:
    ws = [layer["w"] for layer in params]
    return sum(jnp.sum(w * w) for w in ws) / sum(w.size for w in ws)


def _probe(
    model: MLP, params: Any, bn_state: Any, x: jax.Array, y: jax.Array, settings: Any
) -> Any:
    """Santurkar et al.'s three quantities and the top eigenvalue at one point (traceable)."""

    def loss(p: Any, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
        logits, _ = jl.nn.mlp_apply(
            p, bn_state, batch[0], activation=model.activation, training=True
        )
        return cross_entropy(logits, batch[1])

    sizes = settings.smooth_rate * jnp.asarray(settings.step_multiples, jnp.float32)
    measures = jl.curvature.smoothness_along_gradient(loss, params, (x, y), sizes)
    lam = (
        jl.curvature.hessian_eigenvalues(
            loss, params, (x, y), k=1, key=jax.random.key(0), num_iterations=settings.power_iters
        )[0][0]
        if settings.power_iters
        else jnp.float32(jnp.nan)  # not measured: the Hessian-vector products cost compile time
    )
    return {
        "loss_range": measures.loss_range,
        "grad_change": measures.gradient_change,
        "beta": measures.beta_smoothness,
        "lambda": lam,
        "lambda_normalized": lam * _weights_mean_square(params),
    }


def compute(config: Config, seed: int) -> BnLandscapeResult:
    """Both trainings in one program, then the probes at the checkpoints in another; ``FULL``
    settings (in quick mode ``QUICK``), random numbers from ``seed``, the data split with
    ``seed``."""
    settings: BnLandscapeSettings = config.pick(FULL, QUICK)
    timer = Timer()
    key = jax.random.key(seed)
    data = config.data(seed)
    seed0 = int(np.asarray(jax.random.key_data(key)).ravel()[-1]) % (2**31)
    seeds = tuple(seed0 + i for i in range(settings.num_seeds))
    models = {k: MLP(settings.hidden, "sigmoid", batch_norm=k == "with") for k in KINDS}
    fitted = fit_mlps(  # both in one program, evaluated every EVERY steps
        {k: TrainRun(jl.sgd, settings.rates, m) for k, m in models.items()},
        data,
        steps=settings.steps,
        seeds=seeds,
        checkpoints=settings.steps // EVERY,
        short=True,
    )
    i = settings.rates.index(settings.smooth_rate)
    x = jnp.asarray(data.x_train[: settings.probe_batch])
    y = jnp.asarray(data.y_train[: settings.probe_batch])

    @jax.jit
    def probe_all(ckpts: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for k in KINDS:
            params, bn_state = ckpts[k]
            f = jax.vmap(jax.vmap(lambda p, s, m=models[k]: _probe(m, p, s, x, y, settings)))
            out[k] = f(params, bn_state)
        return out

    skip = settings.probe_every

    def at_probes(a: Any) -> Any:  # the smoothness rate, every probe_every-th checkpoint
        return a[i, :, skip - 1 :: skip]

    ckpts = {k: jax.tree.map(at_probes, (fitted[k].params, fitted[k].bn_state)) for k in KINDS}
    probes = timed("bn smoothness probes", probe_all, ckpts, timer=timer, short=True)
    probes = jax.tree.map(np.asarray, probes)
    best = {k: fitted[k].val_acc.max(axis=-1) for k in KINDS}
    config.advance(1)
    return BnLandscapeResult(
        steps=fitted["with"].steps[skip - 1 :: skip],
        metrics={k: {m: np.asarray(probes[k][m], np.float64) for m in METRICS} for k in KINDS},
        top_eigenvalue={k: np.asarray(probes[k]["lambda"], np.float64) for k in KINDS},
        normalized_eigenvalue={
            k: np.asarray(probes[k]["lambda_normalized"], np.float64) for k in KINDS
        },
        train_loss={k: fitted[k].train_loss[i, :, skip - 1 :: skip] for k in KINDS},
        stuck_rates=np.asarray(settings.rates),
        stuck_best_acc=best,
        reached={k: b >= settings.target for k, b in best.items()},
        target=settings.target,
        smooth_rate=settings.smooth_rate,
        settings=settings,
        timings=tuple(timer.timings),
    )


KIND_COLORS = {"without": "#d62728", "with": "#1f77b4"}


def _smoothness_row(axes: Any, result: BnLandscapeResult) -> None:
    """One panel per smoothness measure: its band over seeds along training, per kind."""
    titles = {
        "loss_range": "Loss range along the gradient (step sizes "
        f"{result.smooth_rate:g} x [1/4, 4])",
        "grad_change": "Gradient predictiveness: max ||g - g(step)||",
        "beta": "Effective beta-smoothness: max ||g - g(step)|| / ||step||",
    }
    for ax, m in zip(axes, METRICS, strict=True):
        for k in KINDS:
            figures.band(
                ax,
                result.steps,
                result.metrics[k][m],
                label=f"{k} batch norm",
                color=KIND_COLORS[k],
            )
        ax.set_yscale("log")
        ax.set(title=titles[m], xlabel="training step")
        ax.legend()


def _eigenvalue_panel(
    ax: Any, result: BnLandscapeResult, values: dict[str, np.ndarray], title: str
) -> None:
    """An eigenvalue's band over seeds along training, per kind (a note where not measured)."""
    ax.set(title=title, xlabel="training step")
    if all(np.all(np.isnan(v)) for v in values.values()):
        ax.text(0.5, 0.5, "measured in the full run", ha="center", transform=ax.transAxes)
        return
    for k in KINDS:
        figures.band(ax, result.steps, values[k], label=f"{k} batch norm", color=KIND_COLORS[k])
    ax.set_yscale("log")
    ax.legend()


def _stuck_panel(ax: Any, result: BnLandscapeResult) -> None:
    """The best validation accuracy per rate (mean, min and max over seeds), per kind."""
    for k in KINDS:
        acc = result.stuck_best_acc[k]
        ax.errorbar(
            result.stuck_rates,
            acc.mean(1),
            yerr=[acc.mean(1) - acc.min(1), acc.max(1) - acc.mean(1)],
            fmt="o-",
            color=KIND_COLORS[k],
            capsize=3,
            label=f"{k} batch norm: {result.reached[k].mean():.0%} reach {result.target:.0%}",
        )
    ax.axhline(result.target, color="grey", linestyle=":")
    ax.set_xscale("log")
    ax.set(
        title="Best validation accuracy per rate (seeds)",
        xlabel="learning rate",
        ylabel="accuracy",
    )
    ax.legend()


def figure(result: BnLandscapeResult) -> Figure:
    """The three smoothness measures and the eigenvalues along training (bands over seeds); the
    stuck experiment's best validation accuracy per rate."""
    plt = figures.pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(18, 10))
    _smoothness_row(axes[0], result)
    _eigenvalue_panel(
        axes[1, 0], result, result.top_eigenvalue, r"Hessian top eigenvalue $\lambda_{max}$"
    )
    _eigenvalue_panel(
        axes[1, 1],
        result,
        result.normalized_eigenvalue,
        r"$\lambda_{max}$ x mean squared weight (scale-invariant)",
    )
    _stuck_panel(axes[1, 2], result)
    fig.suptitle(
        "Batch normalization: smoothness along the training path (Santurkar et al. 2018) "
        "and getting stuck"
    )
    fig.tight_layout()
    return Figure("bn_landscape.png", fig)


def claims(result: BnLandscapeResult) -> list[Claim]:
    """Smoother loss by all three of Santurkar et al.'s measures; fewer stuck runs."""
    mean = {k: {m: float(np.mean(result.metrics[k][m])) for m in METRICS} for k in KINDS}
    lam = {k: float(np.mean(result.top_eigenvalue[k])) for k in KINDS}
    lam_n = {k: float(np.mean(result.normalized_eigenvalue[k])) for k in KINDS}
    share = {k: float(np.mean(result.reached[k])) for k in KINDS}
    smoother = all(mean["with"][m] < mean["without"][m] for m in METRICS)
    return [
        Claim(
            claim="Batch normalization acts as a reparametrization of the optimization process "
            "that makes the loss function smoother",
            held=bool(smoother),
            measured="mean along the path and seeds, with / without BN: "
            + ", ".join(f"{m} {mean['with'][m]:.3g} / {mean['without'][m]:.3g}" for m in METRICS)
            + (
                f"; top Hessian eigenvalue {lam['with']:.3g} / {lam['without']:.3g}, times the "
                f"mean squared weight {lam_n['with']:.3g} / {lam_n['without']:.3g}"
                if np.isfinite(lam["with"])
                else "; top Hessian eigenvalue: measured in the full run"
            ),
            rule="all three of Santurkar et al.'s measures (loss range along the gradient, "
            "gradient change, effective beta-smoothness) lower with batch norm, averaged over "
            f"the training path, at the same rate {result.smooth_rate:g}",
        ),
        Claim(
            claim="Batch normalization reduces chances to getting stuck into local minima",
            held=bool(share["with"] > share["without"]),
            measured=f"runs reaching {result.target:.0%} validation accuracy: with BN "
            f"{share['with']:.0%}, without {share['without']:.0%} of "
            f"{result.reached['with'].size} (rate, seed) pairs; rates "
            + ", ".join(f"{r:g}" for r in result.stuck_rates),
            rule="a larger share of (rate, seed) runs reaches the target with batch norm",
        ),
    ]


def summarize(result: BnLandscapeResult) -> Summary:
    """Headlines, every field of the result (the numbers behind the figure), the settings."""
    share = {k: float(np.mean(result.reached[k])) for k in KINDS}
    beta = {k: float(np.mean(result.metrics[k]["beta"])) for k in KINDS}
    return Summary(
        headlines=[
            (
                "effective beta-smoothness with / without BN",
                f"{beta['with']:.3g} / {beta['without']:.3g}",
            ),
            (
                "runs reaching the target with / without BN",
                f"{share['with']:.0%} / {share['without']:.0%}",
            ),
        ],
        numbers=numbers_of(result),
        settings=asdict(result.settings),
    )


EXPERIMENT = Experiment(
    name="bn-landscape",
    title="Batch norm: smoothness along the training path, and getting stuck",
    section="Normalizing in between layers (batch normalization)",
    summary="Santurkar et al.'s loss range, gradient predictiveness and beta-smoothness with "
    "and without BN; share of runs reaching the target",
    stages=1,
    compute=compute,
    figure=figure,
    claims=claims,
    summarize=summarize,
)
