r"""SGD with a constant and a decaying learning rate: the noise floor.

With a constant rate :math:`\eta`, mini-batch SGD on a least-squares problem does not converge: it
settles where the pull of the mean gradient balances the mini-batch noise, at an excess loss that
for small rates grows like :math:`\eta` and shrinks like :math:`1/|B|` (the gradient noise's
variance is that of one example over the batch size). A rate decaying like
:math:`\eta_t = \eta_0 / (1 + t / s)` (:func:`jaxopt_lectures.inverse_time_decay`) meets Robbins and
Monro's conditions and keeps going down.

The problem: linear regression :math:`L(w) = \frac{1}{2n} \lVert X w - y \rVert^2` on synthetic
data (Gaussian features, a random true w, Gaussian label noise), whose minimizer :math:`w^*` is
known, so the excess loss :math:`L(w_t) - L(w^*)` is exact. Mini-batches are drawn with
replacement; the whole (rate, batch size, decayed or not, seed) grid is one ``vmap``-ed
``lax.scan``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxopt_lectures as jl
from jaxopt_lectures.experiments import figures
from jaxopt_lectures.experiments.api import Claim, Config, Experiment, Figure, Summary, numbers_of
from jaxopt_lectures.experiments.engine import (
    Timer,
    Timing,
    fitted_exponent,
    timed,
)
from jaxopt_lectures.experiments.formatting import fmt

__all__ = [
    "EXPERIMENT",
    "SgdDecayResult",
    "SgdDecaySettings",
    "claims",
    "compute",
    "figure",
    "summarize",
]


@dataclass(frozen=True)
class SgdDecaySettings:
    """Data size and dimension, the label noise, the grids, the decay (on the largest rate), the
    steps, the seeds, and the share of the last steps the floor is averaged over."""

    num_examples: int = 1024
    dim: int = 10
    noise: float = 1.0
    rates: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1)
    batch_sizes: tuple[int, ...] = (1, 4, 16, 64)
    decay_steps: float = 50.0
    num_steps: int = 4000
    num_seeds: int = 4
    tail: float = 0.25


FULL = SgdDecaySettings()
QUICK = SgdDecaySettings(num_steps=2000, num_seeds=2)


class SgdDecayResult(NamedTuple):
    """Floors (mean excess loss over the last steps) per (rate, batch), per seed; the decayed runs'
    final excess per batch; the curves; fitted exponents of the floor in the rate and batch."""

    rates: np.ndarray
    batch_sizes: np.ndarray
    floor: np.ndarray  # (rates, batches, seeds)
    decayed_final: np.ndarray  # (batches, seeds): mean excess over the last 5% of the steps
    decay_rate0: float
    decay_steps: float
    rate_exponent: float
    batch_exponent: float
    curves_constant: np.ndarray  # (batches, steps // stride): excess, mean over seeds, at rate0
    curves_decayed: np.ndarray  # (batches, steps // stride)
    curve_steps: np.ndarray
    settings: SgdDecaySettings
    timings: tuple[Timing, ...]


def _problem(settings: SgdDecaySettings, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Features, labels, the Hessian X^T X / n and the least-squares minimizer w* (float64)."""
    x = rng.standard_normal((settings.num_examples, settings.dim))
    y = x @ rng.standard_normal(settings.dim) + settings.noise * rng.standard_normal(len(x))
    hess = x.T @ x / len(x)
    return x, y, hess, np.linalg.solve(hess, x.T @ y / len(x))


def _excess_curve(
    settings: SgdDecaySettings, h: jax.Array, batches: jax.Array, problem: tuple[jax.Array, ...]
) -> jax.Array:
    """The excess loss after every step of one lane ``h = (rate, batch size, decayed)``, with
    the mini-batch indices ``batches`` (steps, largest batch)."""
    b_max = max(settings.batch_sizes)
    x, y, hess, w_opt = problem

    def excess(w: jax.Array) -> jax.Array:  # L(w) - L(w*) = (w - w*) . H (w - w*) / 2
        e = w - w_opt
        return 0.5 * e @ hess @ e

    rate, batch, decayed = h[0], h[1], h[2]
    # traced rate and decay (jax arrays pass the construction checks)
    schedule = jl.inverse_time_decay(
        rate,  # type: ignore[arg-type]
        decay_rate=decayed,  # type: ignore[arg-type]
        decay_steps=settings.decay_steps,
    )
    tx = jl.sgd(schedule)
    w0 = jnp.zeros(settings.dim, jnp.float32)

    def step(carry: tuple[jax.Array, Any], idx: jax.Array) -> tuple[Any, jax.Array]:
        w, state = carry
        mask = (jnp.arange(b_max) < batch).astype(jnp.float32)
        residual = (x[idx] @ w - y[idx]) * mask
        grad = x[idx].T @ residual / batch  # mini-batch of `batch` examples, with replacement
        updates, state = tx.update(grad, state, w)
        w = optax.apply_updates(w, updates)
        return (w, state), excess(w)

    _, losses = jax.lax.scan(step, (w0, tx.init(w0)), batches)
    return losses


def _lanes(settings: SgdDecaySettings, rate0: float) -> np.ndarray:
    """The lanes ``(rate, batch size, decayed)`` of the program: every (rate, batch, constant),
    then every (``rate0``, batch, decayed)."""
    lanes = [(r, b, 0.0) for r in settings.rates for b in settings.batch_sizes]
    lanes += [(rate0, b, 1.0) for b in settings.batch_sizes]
    return np.array(lanes, np.float32)


def compute(config: Config, seed: int) -> SgdDecayResult:
    """Run the grid and the decayed runs as one compiled program; measure the floors; ``FULL``
    settings (in quick mode ``QUICK``), random numbers from ``seed``."""
    settings: SgdDecaySettings = config.pick(FULL, QUICK)
    timer = Timer()
    key = jax.random.key(seed)
    b_max = max(settings.batch_sizes)
    stride = max(1, settings.num_steps // 400)
    rate0 = max(settings.rates)
    hyper = _lanes(settings, rate0)

    # NumPy draws the data and the mini-batches (the same batches for every lane of a seed):
    # random-number kernels would dominate this small program's compile time.
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)))
    # Cast on the host: a float32 conversion on the device compiles a program per shape.
    problem = tuple(jax.device_put(a.astype(np.float32)) for a in _problem(settings, rng))
    batches = rng.integers(
        0, settings.num_examples, (settings.num_seeds, settings.num_steps, b_max)
    )

    @jax.jit
    def grid(hyper: jax.Array, batches: jax.Array, problem: tuple[jax.Array, ...]) -> jax.Array:
        return jax.vmap(
            lambda h: jax.vmap(lambda b: _excess_curve(settings, h, b, problem))(batches)
        )(hyper)

    losses = timed(
        "sgd noise floor",
        grid,
        hyper,
        jax.device_put(batches.astype(np.int32)),
        problem,
        timer=timer,
        short=True,
    )
    losses = np.asarray(losses, np.float64)  # (lanes, seeds, steps)
    nr, nb = len(settings.rates), len(settings.batch_sizes)
    tail = int(settings.num_steps * settings.tail)
    floor = losses[: nr * nb, :, -tail:].mean(axis=-1).reshape(nr, nb, -1)
    decayed = losses[nr * nb :]
    last = max(1, settings.num_steps // 20)
    mean_floor = floor.mean(axis=-1)
    rates = np.asarray(settings.rates, np.float64)
    batches = np.asarray(settings.batch_sizes, np.float64)
    i0 = int(np.argmax(rates))
    config.advance(1)
    return SgdDecayResult(
        rates=rates,
        batch_sizes=batches,
        floor=floor,
        decayed_final=decayed[:, :, -last:].mean(axis=-1),
        decay_rate0=float(rate0),
        decay_steps=settings.decay_steps,
        rate_exponent=float(np.mean([fitted_exponent(rates, c) for c in mean_floor.T])),
        batch_exponent=float(np.mean([fitted_exponent(batches, r) for r in mean_floor])),
        curves_constant=losses[i0 * nb : (i0 + 1) * nb].mean(axis=1)[:, ::stride],
        curves_decayed=decayed.mean(axis=1)[:, ::stride],
        curve_steps=np.arange(1, settings.num_steps + 1)[::stride],
        settings=settings,
        timings=tuple(timer.timings),
    )


def _floor_panel(ax: Any, result: SgdDecayResult, cmap: Any) -> None:
    """The floor against the rate per batch size (log-log), with the decayed runs' final loss."""
    nb = len(result.batch_sizes)
    for j, b in enumerate(result.batch_sizes):
        c = cmap(j / max(nb - 1, 1))
        f = result.floor[:, j]
        ax.errorbar(
            result.rates,
            f.mean(axis=-1),
            yerr=[f.mean(-1) - f.min(-1), f.max(-1) - f.mean(-1)],
            fmt="o-",
            color=c,
            capsize=3,
            label=f"constant rate, batch {b:g}",
        )
        ax.plot(
            result.decay_rate0,
            result.decayed_final[j].mean(),
            "*",
            color=c,
            markersize=14,
            markeredgecolor="k",
        )
    ax.plot([], [], "k*", markersize=12, label=r"inverse-time decay from $\eta_0$ (final)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(
        title=f"Noise floor: excess loss ~ rate^{result.rate_exponent:.2f} x "
        f"batch^{result.batch_exponent:.2f}",
        xlabel=r"learning rate $\eta$",
        ylabel=r"excess loss $L(w) - L(w^*)$ (mean of the last steps)",
    )
    ax.legend(fontsize=8)


def _curves_panel(ax: Any, result: SgdDecayResult, cmap: Any) -> None:
    """The excess loss along training at a constant rate against the decayed rate, per batch."""
    nb = len(result.batch_sizes)
    for j, b in enumerate(result.batch_sizes):
        c = cmap(j / max(nb - 1, 1))
        ax.loglog(
            result.curve_steps,
            result.curves_constant[j],
            color=c,
            alpha=0.8,
            label=rf"constant $\eta$={result.decay_rate0:g}, batch {b:g}",
        )
        ax.loglog(
            result.curve_steps,
            result.curves_decayed[j],
            color=c,
            linestyle="--",
            label=rf"$\eta_0/(1 + t/{result.decay_steps:g})$, batch {b:g}",
        )
    ax.set(
        title="Excess loss along training (mean over seeds)", xlabel="step", ylabel="excess loss"
    )
    ax.legend(fontsize=7, ncol=2)


def figure(result: SgdDecayResult) -> Figure:
    """The floor against the rate per batch size (log-log); constant against decayed curves."""
    plt = figures.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    cmap = plt.get_cmap("viridis")
    _floor_panel(axes[0], result, cmap)
    _curves_panel(axes[1], result, cmap)
    fig.suptitle("SGD: a constant rate stalls at a noise floor, a decaying rate goes below it")
    fig.tight_layout()
    return Figure("sgd_decay.png", fig)


def claims(result: SgdDecayResult) -> list[Claim]:
    """The floor's dependence on rate and batch size; the decayed rate going below it."""
    i0 = int(np.argmax(result.rates))
    constant = result.floor[i0].mean(axis=-1)
    decayed = result.decayed_final.mean(axis=-1)
    ratio = decayed / constant
    return [
        Claim(
            claim='SGD (or MBGD), "mini-batch, possibly a singleton", standard (constant) '
            "learning rate: it stalls at a noise floor that grows with the rate and shrinks with "
            "the batch size",
            held=bool(result.rate_exponent > 0.5 and result.batch_exponent < -0.5),
            measured=f"excess loss of the floor ~ rate^{result.rate_exponent:.2f} x "
            f"batch^{result.batch_exponent:.2f} (fitted on a {len(result.rates)} x "
            f"{len(result.batch_sizes)} grid, {result.floor.shape[-1]} seeds); small-rate theory: "
            "rate^1 x batch^-1",
            rule="fitted exponent of the floor in the rate > 0.5 and in the batch size < -0.5",
        ),
        Claim(
            claim='"Decaying learning rate": the decayed rate goes below the constant rate\'s '
            "noise floor",
            held=bool(np.all(ratio < 1.0)),
            measured=f"final excess loss with eta_0 / (1 + t / {result.decay_steps:g}), "
            f"eta_0 = {result.decay_rate0:g}, over the floor at the constant eta_0, per batch "
            + ", ".join(
                f"{b:g}: {fmt(d)} / {fmt(c)}"
                for b, d, c in zip(result.batch_sizes, decayed, constant, strict=True)
            ),
            rule="below the constant rate's floor at every batch size (means over seeds)",
        ),
    ]


def summarize(result: SgdDecayResult) -> Summary:
    """Headlines, every field of the result (the numbers behind the figure), the settings."""
    i0 = int(np.argmax(result.rates))
    return Summary(
        headlines=[
            (
                "noise floor ~ rate^p x batch^q: p, q",
                f"{result.rate_exponent:.2f}, {result.batch_exponent:.2f}",
            ),
            (
                f"batch 1, eta {result.decay_rate0:g}: floor / decayed final",
                f"{fmt(result.floor[i0, 0].mean())} / {fmt(result.decayed_final[0].mean())}",
            ),
        ],
        numbers=numbers_of(result),
        settings=asdict(result.settings),
    )


EXPERIMENT = Experiment(
    name="sgd-decay",
    title="SGD with a constant and a decaying learning rate",
    section="SGD (or MBGD): standard, decaying learning rate",
    summary="the noise floor against rate and batch size (vmap-ed grid); inverse-time decay "
    "going below it",
    stages=1,
    compute=compute,
    figure=figure,
    claims=claims,
    summarize=summarize,
)
