r"""AdaGrad, RMSprop and Adam as approximations of Newton's curvature scaling, and Adam's bias
correction.

1. Newton's step :math:`-\eta H^{-1} g` gives each direction a step inversely proportional to its
   curvature: "a smaller curvature leads to a bigger update step". AdaGrad, RMSprop and Adam give
   each coordinate the step :math:`\eta / (G_i + \epsilon)` (G the root of the sum or moving
   average of squared gradients, Adam's bias-corrected). That *effective step* is compared with
   :math:`1 / H_{ii}`, the step Newton would take with a diagonal Hessian, on the lecture's
   quadratic :math:`\vartheta \cdot A \vartheta` (A diagonal, curvatures spread over two decades,
   random starts) and on a small tanh network on digits (the exact Hessian diagonal, by
   Hessian-vector products with basis vectors, at a random subset of the coordinates). Score:
   Spearman's rank correlation over the coordinates, and the slope of log(step) on
   log(1/H_ii) (Newton: 1).
2. Adam's bias correction divides the moments by :math:`1 - b^t`. At the default b2 = 0.999 the
   uncorrected second moment starts a thousand times too small, so the uncorrected first steps
   are larger by :math:`(1 - b_1^t) / \sqrt{1 - b_2^t}` (3.2 at t = 1, up to 6.6): Adam with and
   without it (a local transform, otherwise identical) trains the same network from the same
   start with the same batches; measured: the ratio of the update norms step by step, and the
   training loss.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

import jaxopt_lectures as jl
from jaxopt_lectures.experiments import figures
from jaxopt_lectures.experiments.api import Claim, Config, Experiment, Figure, Summary, numbers_of
from jaxopt_lectures.experiments.engine import (
    MLP,
    Timer,
    Timing,
    cross_entropy,
    fitted_exponent,
    init_carry,
    rank_correlation,
    select_optimizer,
    timed,
    train_step,
)
from jaxopt_lectures.experiments.formatting import fmt

__all__ = [
    "EXPERIMENT",
    "CurvatureResult",
    "CurvatureSettings",
    "adam_maybe_corrected",
    "claims",
    "compute",
    "effective_step",
    "figure",
    "summarize",
]

METHODS = ("adagrad", "rmsprop", "adam")


@dataclass(frozen=True)
class CurvatureSettings:
    """Quadratic: dimension, curvature range, starts, steps, rate. Network: hidden layers, steps,
    batch for the Hessian, coordinates probed. Bias correction: rates, steps, seeds."""

    dim: int = 40
    curvature_range: tuple[float, float] = (1.0, 100.0)
    num_starts: int = 8
    quad_steps: int = 100
    quad_rate: float = 0.01
    hidden: tuple[int, ...] = (16,)
    net_steps: int = 300
    net_rate: float = 0.01
    hessian_batch: int = 256
    num_coords: int = 300
    bias_rates: tuple[float, ...] = (1e-3, 1e-2, 3e-2)
    bias_steps: int = 1000
    num_seeds: int = 3


FULL = CurvatureSettings()
QUICK = CurvatureSettings(num_starts=4, net_steps=150, num_coords=150, bias_steps=300, num_seeds=2)


class AdamMaybeState(NamedTuple):
    """Step count and the two moving averages."""

    count: jax.Array  # type: ignore[assignment]
    mu: Any
    nu: Any


def adam_maybe_corrected(
    correct: Any, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
    r"""Adam's direction with the bias correction switched by ``correct`` (1 on, 0 off; may be
    traced, so both variants ``vmap`` as one program):

    .. math::
        x_t = \frac{m_t / c_1}{\sqrt{v_t / c_2} + \epsilon}, \quad
        c_i = 1 - b_i^t \text{ if correct else } 1

    With ``correct=1`` the numbers are :func:`jaxopt_lectures.scale_by_adam`'s.
    """

    def init_fn(params: Any) -> AdamMaybeState:
        zeros = jax.tree.map(jnp.zeros_like, params)
        return AdamMaybeState(jnp.zeros([], jnp.int32), zeros, zeros)

    def update_fn(updates: Any, state: AdamMaybeState, params: Any = None) -> tuple[Any, Any]:
        del params
        t = state.count + 1
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, updates)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, updates)
        on = jnp.asarray(correct, jnp.float32)
        c1 = on * (1 - b1 ** t.astype(jnp.float32)) + (1 - on)
        c2 = on * (1 - b2 ** t.astype(jnp.float32)) + (1 - on)
        out = jax.tree.map(lambda m, v: (m / c1) / (jnp.sqrt(v / c2) + eps), mu, nu)
        return out, AdamMaybeState(t, mu, nu)

    return optax.GradientTransformation(init_fn, update_fn)


def effective_step(method: str, state: Any, rate: float) -> Any:
    """The per-coordinate step eta / (G + eps) in the state of ``jl.<method>(rate)`` (default
    hyperparameters): AdaGrad's root of the sum of squared gradients, RMSprop's root of their
    moving average, Adam's bias-corrected one.

    Example:
      >>> import jax.numpy as jnp, jaxopt_lectures as jl
      >>> from jaxopt_lectures.experiments.lecture.adaptive import effective_step
      >>> tx = jl.adagrad(0.1)
      >>> _, state = tx.update(jnp.array([2.0, 0.5]), tx.init(jnp.zeros(2)))
      >>> [round(float(s), 4) for s in effective_step("adagrad", state, 0.1)]
      [0.05, 0.2]
    """
    inner = state[0]
    if method == "adagrad":
        return jax.tree.map(lambda s: rate / (jnp.sqrt(s) + 1e-10), inner.sum_of_squares)
    if method == "rmsprop":
        return jax.tree.map(lambda v: rate / (jnp.sqrt(v) + 1e-8), inner.nu)
    if method == "adam":
        c2 = 1 - 0.999 ** inner.count.astype(jnp.float32)
        return jax.tree.map(lambda v: rate / (jnp.sqrt(v / c2) + 1e-8), inner.nu)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


class CurvatureResult(NamedTuple):
    """Effective steps against inverse Hessian diagonals (quadratic and network), with rank
    correlations and log-log slopes; Adam with and without bias correction."""

    quad_inv_curvature: np.ndarray  # (dim,)
    quad_step: dict[str, np.ndarray]  # method -> (dim,) geometric mean over starts and steps
    quad_corr: dict[str, float]
    quad_slope: dict[str, float]
    net_inv_curvature: dict[str, np.ndarray]  # method -> (coords,) 1 / |H_ii|
    net_step: dict[str, np.ndarray]
    net_corr: dict[str, float]
    net_slope: dict[str, float]
    net_negative_share: dict[str, float]
    bias_rates: np.ndarray
    bias_ratio: np.ndarray  # (rates, steps): update norm without / with correction, seed mean
    bias_theory: np.ndarray  # (steps,): (1 - b1^t) / sqrt(1 - b2^t)
    bias_loss: np.ndarray  # (2, rates, seeds, steps): mini-batch loss, [with, without]
    settings: CurvatureSettings
    timings: tuple[Timing, ...]


class _Arrays(NamedTuple):
    """What the compiled program reads: the quadratic's diagonal, the training split, the batch
    the Hessian diagonal is taken on, the mini-batch indices of both network parts."""

    a: np.ndarray
    x: jax.Array
    y: jax.Array
    xh: jax.Array
    yh: jax.Array
    num_classes: int
    net_batches: jax.Array
    bias_batches: jax.Array


def _all_steps(state: Any, rate: float) -> jax.Array:
    """Every method's effective step from the combined state, stacked; lane i uses row i."""
    return jnp.stack(
        [ravel_pytree(effective_step(m, state[i], rate))[0] for i, m in enumerate(METHODS)]
    )


def _quad_run(
    settings: CurvatureSettings, arr: _Arrays, choose: Any, index: jax.Array, theta0: jax.Array
) -> jax.Array:
    """Method ``index`` on the quadratic from ``theta0``: the mean log effective step."""
    tx = choose(jnp.stack([index, jnp.float32(settings.quad_rate)]))

    def step(carry: tuple[jax.Array, Any], _: None) -> tuple[Any, jax.Array]:
        theta, state = carry
        g = 2.0 * jnp.asarray(arr.a) * theta
        updates, state = tx.update(g, state, theta)
        return (theta + updates, state), jnp.log(_all_steps(state, settings.quad_rate))

    _, log_steps = jax.lax.scan(step, (theta0, tx.init(theta0)), None, settings.quad_steps)
    return log_steps.mean(0)  # (methods, dim)


def _net_run(
    settings: CurvatureSettings,
    arr: _Arrays,
    choose: Any,
    index: jax.Array,
    k_init: jax.Array,
    k_coords: jax.Array,
) -> tuple[Any, Any]:
    """Method ``index`` trains the network; the Hessian diagonal and the effective steps at a
    random subset of the coordinates."""
    model = MLP(settings.hidden, "tanh")
    x, y = arr.x, arr.y
    tx = choose(jnp.stack([index, jnp.float32(settings.net_rate)]))
    carry = init_carry(model, tx, k_init, x.shape[1], arr.num_classes)
    carry, _ = jax.lax.scan(
        lambda c, i: train_step(model, tx, c, (x[i], y[i], k_init)), carry, arr.net_batches
    )
    flat, unravel = ravel_pytree(carry.params)
    coords = jax.random.choice(k_coords, flat.shape[0], (settings.num_coords,), replace=False)

    def loss(f: jax.Array, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
        logits, _ = jl.nn.mlp_apply(unravel(f), [], batch[0], activation="tanh", training=False)
        return cross_entropy(logits, batch[1])

    def diag(i: jax.Array) -> jax.Array:  # H_ii = e_i . H e_i
        e = jnp.zeros_like(flat).at[i].set(1.0)
        return jl.curvature.hvp(loss, flat, e, (arr.xh, arr.yh))[i]

    h = jax.lax.map(diag, coords)
    return h, _all_steps(carry.opt_state, settings.net_rate)[:, coords]


def _bias_run(
    settings: CurvatureSettings,
    arr: _Arrays,
    correct: jax.Array,
    rate: jax.Array,
    seed: jax.Array,
    idx: jax.Array,
) -> Any:
    """Adam with (``correct`` = 1) or without bias correction: mini-batch losses, update norms."""
    model = MLP(settings.hidden, "tanh")
    x, y = arr.x, arr.y
    k_init = jax.random.key(seed)
    tx = optax.chain(adam_maybe_corrected(correct), jl.scale_by_learning_rate(rate))
    carry = init_carry(model, tx, k_init, x.shape[1], arr.num_classes)

    def step(c: Any, i: jax.Array) -> tuple[Any, tuple[jax.Array, jax.Array]]:
        new, loss = train_step(model, tx, c, (x[i], y[i], k_init))
        delta = ravel_pytree(jax.tree.map(jnp.subtract, new.params, c.params))[0]
        return new, (loss, jnp.linalg.norm(delta))

    _, (losses, norms) = jax.lax.scan(step, carry, idx)
    return losses, norms


def _program(settings: CurvatureSettings, arr: _Arrays) -> Any:
    """All three parts as one jitted function of (key, bias-correction rates).

    The three methods are lanes of one vmap (``select_optimizer``): one training loop and one
    Hessian-diagonal graph to compile instead of three. Random draws happen inside the compiled
    program too (eager ones would compile one by one)."""
    choose = select_optimizer([jl.adagrad, jl.rmsprop, jl.adam])
    bias_seeds = jnp.arange(settings.num_seeds, dtype=jnp.uint32)

    @jax.jit
    def everything(key: jax.Array, rates: jax.Array) -> dict[str, Any]:
        k_start, k_init, k_coords = jax.random.split(key, 3)
        starts = jax.random.normal(k_start, (settings.num_starts, settings.dim))
        lanes = jnp.arange(len(METHODS), dtype=jnp.float32)
        quad = jax.vmap(
            lambda i: jax.vmap(lambda s: _quad_run(settings, arr, choose, i, s))(starts).mean(0)
        )(lanes)
        net = jax.vmap(lambda i: _net_run(settings, arr, choose, i, k_init, k_coords))(lanes)
        per_seed = jax.vmap(partial(_bias_run, settings, arr), in_axes=(None, None, 0, 0))
        per_rate = jax.vmap(per_seed, in_axes=(None, 0, None, None))
        both = jax.vmap(per_rate, in_axes=(0, None, None, None))
        bias = both(jnp.array([1.0, 0.0]), rates, bias_seeds, arr.bias_batches)
        return {"quad": quad, "net": net, "bias": bias}

    return everything


def compute(config: Config, seed: int) -> CurvatureResult:
    """All three parts as one compiled program, then the scores; ``FULL`` settings (in quick
    mode ``QUICK``), random numbers from ``seed``, the data split with ``seed``."""
    settings: CurvatureSettings = config.pick(FULL, QUICK)
    timer = Timer()
    key = jax.random.key(seed)
    data = config.data(seed)
    a = np.geomspace(*settings.curvature_range, settings.dim).astype(np.float32)
    n = len(data.x_train)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
    arr = _Arrays(
        a=a,
        x=jnp.asarray(data.x_train),
        y=jnp.asarray(data.y_train),
        xh=jnp.asarray(data.x_train[: settings.hessian_batch]),
        yh=jnp.asarray(data.y_train[: settings.hessian_batch]),
        num_classes=data.num_classes,
        net_batches=jnp.asarray(rng.integers(0, n, (settings.net_steps, 64))),
        bias_batches=jnp.asarray(rng.integers(0, n, (settings.num_seeds, settings.bias_steps, 64))),
    )
    rates = jnp.asarray(np.asarray(settings.bias_rates, np.float32))
    out = timed(
        "curvature",
        _program(settings, arr),
        key,
        rates,
        timer=timer,
        short=True,
    )
    config.advance(1)
    return _scores(settings, jax.tree.map(np.asarray, out), 1.0 / (2.0 * a), timer)


def _scores(
    settings: CurvatureSettings, out: dict[str, Any], inv_q: np.ndarray, timer: Timer
) -> CurvatureResult:
    """Rank correlations and log-log slopes of the effective steps against 1/H_ii."""
    quad = np.asarray(out["quad"], np.float64)  # (lanes, methods, dim): lane i runs method i
    quad_step = {m: np.exp(quad[i, i]) for i, m in enumerate(METHODS)}
    net_h, net_s = (np.asarray(v, np.float64) for v in out["net"])
    net_inv, net_step, neg = {}, {}, {}
    for i, m in enumerate(METHODS):
        h, s = net_h[i], net_s[i, i]
        keep = np.abs(h) > 1e-10
        neg[m] = float(np.mean(h[keep] < 0))
        net_inv[m], net_step[m] = 1.0 / np.abs(h[keep]), s[keep]
    losses, norms = (np.asarray(v, np.float64) for v in out["bias"])
    t = np.arange(1, settings.bias_steps + 1)
    return CurvatureResult(
        quad_inv_curvature=inv_q,
        quad_step=quad_step,
        quad_corr={m: rank_correlation(s, inv_q) for m, s in quad_step.items()},
        quad_slope={m: fitted_exponent(inv_q, s) for m, s in quad_step.items()},
        net_inv_curvature=net_inv,
        net_step=net_step,
        net_corr={m: rank_correlation(net_step[m], net_inv[m]) for m in METHODS},
        net_slope={m: fitted_exponent(net_inv[m], net_step[m]) for m in METHODS},
        net_negative_share=neg,
        bias_rates=np.asarray(settings.bias_rates),
        bias_ratio=(norms[1] / norms[0]).mean(axis=1),
        bias_theory=(1 - 0.9**t) / np.sqrt(1 - 0.999**t),
        bias_loss=losses,
        settings=settings,
        timings=tuple(timer.timings),
    )


def _step_against_curvature(
    ax: Any,
    inv: dict[str, np.ndarray],
    step: dict[str, np.ndarray],
    corr: dict[str, float],
    title: str,
) -> None:
    """One method per colour: the effective step of each parameter against Newton's 1/H_ii."""
    for m in METHODS:
        ax.loglog(
            inv[m],
            step[m],
            "o",
            markersize=3.5,
            alpha=0.7,
            color=figures.COLORS[m],
            label=f"{m}: Spearman {corr[m]:.2f}",
        )
    ax.set(
        title=f"Effective step against Newton's 1/H_ii: {title}",
        xlabel=r"$1 / |H_{ii}|$ (Newton's step with a diagonal Hessian)",
        ylabel=r"effective step $\eta / (G_i + \epsilon)$",
    )
    ax.legend()


def _bias_ratio_panel(ax: Any, result: CurvatureResult) -> None:
    """Adam's update norm without over with bias correction, measured per rate and in theory."""
    t = np.arange(1, result.bias_ratio.shape[1] + 1)
    for i, r in enumerate(result.bias_rates):
        ax.semilogx(t, result.bias_ratio[i], label=f"measured, rate {r:g}")
    ax.semilogx(t, result.bias_theory, "k--", label=r"$(1 - b_1^t) / \sqrt{1 - b_2^t}$")
    ax.axhline(1.0, color="grey", linestyle=":")
    ax.set(
        title="Adam update norm: without / with bias correction (b2 = 0.999)",
        xlabel="step t",
        ylabel="ratio",
    )
    ax.legend()


def _bias_loss_panel(ax: Any, result: CurvatureResult, cmap: Any) -> None:
    """The mini-batch loss (10-step mean) with and without bias correction, one colour a rate."""
    for i, r in enumerate(result.bias_rates):
        for k, style, name in ((0, "-", "with"), (1, "--", "without")):
            c = cmap(i)
            curve = result.bias_loss[k, i].mean(0)
            smooth = np.convolve(curve, np.ones(10) / 10, mode="valid")
            ax.semilogy(
                np.arange(len(smooth)) + 10,
                smooth,
                style,
                color=c,
                label=f"rate {r:g}, {name} correction",
            )
    ax.set(title="Mini-batch loss (10-step mean)", xlabel="step", ylabel="cross-entropy")
    ax.legend(fontsize=7)


def figure(result: CurvatureResult) -> Figure:
    """Effective step against 1/H_ii (quadratic, network); Adam's update-norm ratio and losses."""
    plt = figures.pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(23, 5))
    _step_against_curvature(
        axes[0],
        {m: result.quad_inv_curvature for m in METHODS},
        result.quad_step,
        result.quad_corr,
        r"quadratic $\theta \cdot A \theta$",
    )
    _step_against_curvature(
        axes[1],
        result.net_inv_curvature,
        result.net_step,
        result.net_corr,
        "tanh network on digits",
    )
    _bias_ratio_panel(axes[2], result)
    _bias_loss_panel(axes[3], result, plt.get_cmap("tab10"))
    fig.suptitle(
        "AdaGrad, RMSprop, Adam as approximations of Newton's curvature scaling; Adam's "
        "bias correction"
    )
    fig.tight_layout()
    return Figure("curvature.png", fig)


def claims(result: CurvatureResult) -> list[Claim]:
    """Rank correlations of effective step and 1/H_ii; the bias correction's decay."""
    peak = float(result.bias_ratio[0].max())
    last = float(result.bias_ratio[0, -1])
    first = float(result.bias_ratio[0, 0])

    def corr_text(corr: dict[str, float], slope: dict[str, float]) -> str:
        return ", ".join(f"{m} {corr[m]:.2f} (slope {slope[m]:.2f})" for m in METHODS)

    return [
        Claim(
            claim="AdaGrad approximation (and RMSprop, Adam) of the Newton-Raphson method: a "
            "smaller curvature leads to a bigger update step, on the lecture's quadratic",
            held=bool(min(result.quad_corr.values()) > 0.5),
            measured="Spearman correlation of the effective step with 1/H_ii over "
            f"{len(result.quad_inv_curvature)} coordinates (log-log slope; Newton: 1): "
            + corr_text(result.quad_corr, result.quad_slope),
            rule="rank correlation > 0.5 for each of the three methods",
        ),
        Claim(
            claim="AdaGrad approximation (and RMSprop, Adam) of the Newton-Raphson method: a "
            "smaller curvature leads to a bigger update step, in a network",
            held=bool(min(result.net_corr.values()) > 0.5),
            measured="Spearman correlation of the effective step with 1/|H_ii| at "
            f"{len(result.net_step['adam'])} coordinates of a tanh network: "
            + corr_text(result.net_corr, result.net_slope)
            + "; share of negative H_ii: "
            + ", ".join(f"{m} {result.net_negative_share[m]:.0%}" for m in METHODS),
            rule="rank correlation > 0.5 for each of the three methods",
        ),
        Claim(
            claim="Adam's bias corrections (decay with time): without them the first steps at "
            "the default b2 are several times too large",
            held=bool(peak > 2.0 and (last - 1.0) < 0.5 * (peak - 1.0)),
            measured=f"update norm without / with correction at rate "
            f"{result.bias_rates[0]:g}: step 1 {first:.2f}, peak {peak:.2f}, step "
            f"{result.bias_ratio.shape[1]} {last:.2f} (theory "
            f"{result.bias_theory[0]:.2f}, {result.bias_theory.max():.2f}, "
            f"{result.bias_theory[-1]:.2f}); mean loss over the first 50 steps with / without, "
            "per rate: "
            + ", ".join(
                f"{r:g}: {fmt(result.bias_loss[0, i, :, :50].mean())} / "
                f"{fmt(result.bias_loss[1, i, :, :50].mean())}"
                for i, r in enumerate(result.bias_rates)
            ),
            rule="the ratio peaks above 2 and by the last step has lost more than half of its "
            "excess over 1",
        ),
    ]


def summarize(result: CurvatureResult) -> Summary:
    """Headlines, every field of the result (the numbers behind the figure), the settings."""
    return Summary(
        headlines=[
            (
                "Spearman(step, 1/H_ii), quadratic / network, Adam",
                f"{result.quad_corr['adam']:.2f} / {result.net_corr['adam']:.2f}",
            ),
            (
                "Adam update ratio without/with correction, peak",
                f"{result.bias_ratio[0].max():.2f}",
            ),
        ],
        numbers=numbers_of(result),
        settings=asdict(result.settings),
    )


EXPERIMENT = Experiment(
    name="curvature",
    title="Adaptive methods as curvature scaling; Adam's bias correction",
    section="AdaGrad, RMSprop, Adam",
    summary="per-coordinate effective step against 1/H_ii on the quadratic and a network; "
    "Adam with and without bias correction",
    stages=1,
    compute=compute,
    figure=figure,
    claims=claims,
    summarize=summarize,
)
