r"""Momentum as friction: the steps heavy ball needs on the lecture's narrow valley, against the
coefficient gamma, next to what the theory of the quadratic predicts.

Heavy ball on :math:`L(\vartheta) = \vartheta \cdot A \vartheta` (Hessian :math:`H = 2A`) is, per
eigen-direction of curvature :math:`h`,

.. math::
    \vartheta_t = (1 + \gamma - \eta h)\, \vartheta_{t-1} - \gamma\, \vartheta_{t-2},

a linear recursion with characteristic polynomial :math:`z^2 - (1 + \gamma - \eta h) z + \gamma`.
The error shrinks like :math:`\rho^t`, :math:`\rho` the largest root modulus over the curvatures.
Where the roots are complex, :math:`|z| = \sqrt\gamma`; they are complex iff
:math:`(1 - \sqrt\gamma)^2 \le \eta h \le (1 + \sqrt\gamma)^2`. So at a fixed rate the best
friction is the smallest gamma that makes every direction complex (critically damped):

.. math::
    \gamma^*(\eta) = \max_h \big(1 - \sqrt{\eta h}\big)^2, \qquad \rho = \sqrt{\gamma^*(\eta)},

and with the rate free as well (Polyak, 1964), with :math:`\mu = 2 a_1`, :math:`L = 2 a_2`,
:math:`\kappa = a_2 / a_1`:

.. math::
    \eta^* = \frac{4}{(\sqrt L + \sqrt\mu)^2}, \qquad
    \gamma^* = \Big(\frac{1 - \sqrt{\kappa^{-1}}}{1 + \sqrt{\kappa^{-1}}}\Big)^2, \qquad
    \rho^* = \frac{\sqrt\kappa - 1}{\sqrt\kappa + 1},

against :math:`(\kappa - 1)/(\kappa + 1)` for gradient descent at its best rate
:math:`2 / (\mu + L)`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np

import jaxopt_lectures as jl
from jaxopt_lectures.experiments import figures
from jaxopt_lectures.experiments.api import (
    Claim,
    Config,
    Experiment,
    Figure,
    Summary,
    numbers_of,
)
from jaxopt_lectures.experiments.engine import Timer, Timing, sweep_trajectories
from jaxopt_lectures.experiments.formatting import fmt
from jaxopt_lectures.problems import quadratic

__all__ = [
    "EXPERIMENT",
    "FrictionResult",
    "FrictionSettings",
    "best_friction",
    "claims",
    "compute",
    "figure",
    "heavy_ball_rate",
    "polyak_optimum",
    "summarize",
]


@dataclass(frozen=True)
class FrictionSettings:
    """The quadratic diag(a1, a2), the start, the friction grid, the steps, the tolerance (a
    fraction of the starting loss) and the extra rates swept besides Polyak's optimal one."""

    a1: float = 1.0
    a2: float = 20.0
    x0: tuple[float, float] = (-1.0, 0.8)
    num_gammas: int = 50
    max_gamma: float = 0.98
    other_rates: tuple[float, ...] = (0.01,)
    num_steps: int = 1500
    tolerance: float = 1e-8


FULL = FrictionSettings()
QUICK = FrictionSettings(num_gammas=50, num_steps=1200)


class FrictionResult(NamedTuple):
    """Steps to the tolerance per (rate, gamma), the theory's predicted steps and optima, and the
    gradient-descent reference at its best rate."""

    gammas: np.ndarray
    rates: np.ndarray
    steps: np.ndarray  # (rates, gammas); inf = not within num_steps (or diverged)
    predicted_steps: np.ndarray  # (rates, gammas), from the spectral radius
    theory_best_gamma: np.ndarray  # (rates,)
    measured_best_gamma: np.ndarray  # (rates,)
    polyak_rate: float
    polyak_gamma: float
    gd_rate: float
    gd_steps: float
    gd_predicted_steps: float
    losses_best: np.ndarray  # (rates, num_steps + 1) at the measured best gamma
    losses_gd: np.ndarray
    kappa: float
    tolerance: float
    settings: FrictionSettings
    timings: tuple[Timing, ...]


def heavy_ball_rate(gamma: float, rate: float, curvatures: Any) -> float:
    """The heavy ball's asymptotic contraction per step: the largest root modulus of
    ``z^2 - (1 + gamma - rate h) z + gamma`` over the curvatures h (Hessian eigenvalues)."""
    out = 0.0
    for h in np.atleast_1d(np.asarray(curvatures, np.float64)):
        b = 1.0 + gamma - rate * h
        disc = complex(b * b - 4.0 * gamma)
        roots = ((b + disc**0.5) / 2.0, (b - disc**0.5) / 2.0)
        out = max(out, *(abs(z) for z in roots))
    return out


def best_friction(rate: float, curvatures: Any) -> float:
    """gamma*(eta) = max_h (1 - sqrt(eta h))^2: the smallest friction that damps every direction
    critically or less (complex roots of modulus sqrt(gamma)). Needs eta h < 4 for all h."""
    h = np.asarray(curvatures, np.float64)
    return float(np.max((1.0 - np.sqrt(rate * h)) ** 2))


def polyak_optimum(mu: float, big_l: float) -> tuple[float, float]:
    """Polyak's optimal (rate, gamma) for curvatures in [mu, L]:
    (4 / (sqrt L + sqrt mu)^2, ((sqrt L - sqrt mu) / (sqrt L + sqrt mu))^2)."""
    if not 0 < mu <= big_l:
        raise ValueError(f"need 0 < mu <= L, got mu={mu}, L={big_l}")
    s, r = math.sqrt(big_l), math.sqrt(mu)
    return 4.0 / (s + r) ** 2, ((s - r) / (s + r)) ** 2


def _steps_to(losses: np.ndarray, threshold: float) -> np.ndarray:
    """First index with loss <= threshold along the last axis (inf if none)."""
    hit = losses <= threshold
    first = np.argmax(hit, axis=-1).astype(np.float64)
    return np.where(hit.any(axis=-1), first, np.inf)


def _predicted(rho: float, tolerance: float) -> float:
    return math.inf if rho >= 1.0 else math.log(tolerance) / (2.0 * math.log(rho))


def compute(config: Config, seed: int) -> FrictionResult:
    """Sweep (rate, gamma) pairs of ``jl.momentum`` in one ``vmap``-ed program (deterministic:
    ``seed`` is unused); ``FULL`` or, in quick mode, ``QUICK`` settings."""
    del seed
    settings: FrictionSettings = config.pick(FULL, QUICK)
    timer = Timer()
    problem = quadratic(settings.a1, settings.a2, settings.x0)
    curv = np.array([2.0 * settings.a1, 2.0 * settings.a2])
    polyak_rate, polyak_gamma = polyak_optimum(curv[0], curv[1])
    gd_rate = 2.0 / (curv[0] + curv[1])
    rates = np.array([polyak_rate, *settings.other_rates])
    gammas = np.linspace(0.0, settings.max_gamma, settings.num_gammas)
    pairs = np.array([(r, g) for r in rates for g in gammas] + [(gd_rate, 0.0)], np.float32)
    traj = sweep_trajectories(
        lambda p: jl.momentum(p[0], momentum=p[1]),
        problem.loss,
        problem.x0,
        pairs,
        settings.num_steps,
        timer=timer,
    )
    losses = np.asarray(traj.losses, np.float64)
    threshold = settings.tolerance * losses[0, 0]
    steps_all = _steps_to(losses, threshold)
    steps = steps_all[:-1].reshape(len(rates), len(gammas))
    lane = losses[:-1].reshape(len(rates), len(gammas), -1)
    predicted = np.array(
        [
            [_predicted(heavy_ball_rate(g, r, curv), settings.tolerance) for g in gammas]
            for r in rates
        ]
    )
    best_idx = np.argmin(steps, axis=1)
    config.advance(1)
    return FrictionResult(
        gammas=gammas,
        rates=rates,
        steps=steps,
        predicted_steps=predicted,
        theory_best_gamma=np.array([best_friction(r, curv) for r in rates]),
        measured_best_gamma=gammas[best_idx],
        polyak_rate=polyak_rate,
        polyak_gamma=polyak_gamma,
        gd_rate=gd_rate,
        gd_steps=float(steps_all[-1]),
        gd_predicted_steps=_predicted(heavy_ball_rate(0.0, gd_rate, curv), settings.tolerance),
        losses_best=lane[np.arange(len(rates)), best_idx],
        losses_gd=losses[-1],
        kappa=settings.a2 / settings.a1,
        tolerance=settings.tolerance,
        settings=settings,
        timings=tuple(timer.timings),
    )


RATE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd")


def _steps_panel(ax: Any, result: FrictionResult) -> None:
    """Steps to the tolerance against gamma per rate: measured, predicted, the theory's best
    gamma; gradient descent at its best rate for reference."""
    cap = float(np.nanmax(np.where(np.isfinite(result.steps), result.steps, np.nan)))
    for i, rate in enumerate(result.rates):
        c = RATE_COLORS[i % len(RATE_COLORS)]
        name = "Polyak's rate" if i == 0 else "rate"
        ax.plot(
            result.gammas,
            result.steps[i],
            "o",
            color=c,
            markersize=4,
            label=rf"measured, {name} $\eta$={rate:.3g}",
        )
        ax.plot(
            result.gammas,
            result.predicted_steps[i],
            "-",
            color=c,
            alpha=0.7,
            label=r"predicted from the spectral radius",
        )
        ax.axvline(
            result.theory_best_gamma[i],
            color=c,
            linestyle=":",
            label=rf"theory's best $\gamma$ = {result.theory_best_gamma[i]:.3f}",
        )
    ax.axhline(
        result.gd_steps,
        color="k",
        linestyle="--",
        label=f"gradient descent at its best rate {result.gd_rate:.3g}",
    )
    ax.set_yscale("log")
    ax.set_ylim(top=cap * 1.5)
    ax.set(
        title=rf"Steps to {result.tolerance:g} x the starting loss ($\kappa$ = {result.kappa:g})",
        xlabel=r"friction coefficient $\gamma$ (momentum)",
        ylabel="steps (missing: not reached / diverged)",
    )
    ax.legend(fontsize=7, loc="upper center", ncol=2)


def _losses_panel(ax: Any, result: FrictionResult) -> None:
    """The loss curve of each rate's best gamma against gradient descent at its best rate."""
    for i, rate in enumerate(result.rates):
        g = result.measured_best_gamma[i]
        ax.semilogy(
            result.losses_best[i],
            color=RATE_COLORS[i % len(RATE_COLORS)],
            label=rf"momentum $\eta$={rate:.3g}, best $\gamma$={g:.2f}",
        )
    ax.semilogy(result.losses_gd, color="k", linestyle="--", label="gradient descent, best rate")
    ax.set_xlim(0, min(len(result.losses_gd) - 1, 4 * max(result.gd_steps, 1)))
    ax.set(title="Loss along the way", xlabel="step", ylabel="loss")
    ax.legend()


def figure(result: FrictionResult) -> Figure:
    """Steps to the tolerance against gamma (measured and predicted) per rate; the loss curves of
    the best gamma against gradient descent at its best rate."""
    plt = figures.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    _steps_panel(axes[0], result)
    _losses_panel(axes[1], result)
    fig.suptitle(r"Momentum as friction on the lecture's quadratic $\theta \cdot A \theta$")
    fig.tight_layout()
    return Figure("momentum_friction.png", fig)


def claims(result: FrictionResult) -> list[Claim]:
    """ "Let the ball run" (fewer steps than gradient descent at its best rate) and the friction
    coefficient (the theory's gamma*(eta) is as good as the best on the grid; too little friction
    is slower)."""
    best = np.min(result.steps, axis=1)
    at_theory = np.array(
        [
            np.interp(g, result.gammas, row)
            for g, row in zip(result.theory_best_gamma, result.steps, strict=True)
        ]
    )
    slow = result.steps[:, -1] / best
    interior = (result.measured_best_gamma > 0) & (result.measured_best_gamma < result.gammas[-1])
    polyak_best = float(best[0])
    return [
        Claim(
            claim='Momentum, "let the ball run": a tendency to keep running at the same speed and '
            "direction (speeds up the narrow valley)",
            held=bool(polyak_best < result.gd_steps),
            measured=f"steps to {result.tolerance:g} x the start: heavy ball at Polyak's rate and "
            f"best gamma {fmt(polyak_best)} (theory {fmt(result.predicted_steps[0].min())}); "
            f"gradient descent at its best rate {fmt(result.gd_steps)} "
            f"(theory {fmt(result.gd_predicted_steps)}); kappa = {result.kappa:g}",
            rule="fewer steps than gradient descent at its own best rate 2 / (mu + L)",
        ),
        Claim(
            claim='gamma, the "coefficient of friction" (0 < gamma < 1): some friction is needed, '
            "too little is slower",
            held=bool(np.all(interior) and np.all(slow >= 2.0)),
            measured="per rate: steps at the theory's gamma*(eta) / at the best grid gamma, and "
            "best grid gamma / gamma*(eta): "
            + "; ".join(
                f"rate {r:.3g}: {fmt(a)} / {fmt(b)}, {m:.3f} / {t:.3f}"
                for r, a, b, m, t in zip(
                    result.rates,
                    at_theory,
                    best,
                    result.measured_best_gamma,
                    result.theory_best_gamma,
                    strict=True,
                )
            )
            + f" (Polyak's gamma* = {result.polyak_gamma:.3f}); steps at gamma "
            f"{result.gammas[-1]:.2f} / at the best: " + ", ".join(f"{s:.3g}x" for s in slow),
            rule="at every rate the fewest steps are at a gamma strictly inside the grid (0, "
            "largest) and the largest gamma needs at least twice the fewest; the theory's "
            "gamma*(eta) = max_h (1 - sqrt(eta h))^2 optimizes the asymptotic rate, so at a "
            "finite tolerance it is shown, not scored",
        ),
    ]


def summarize(result: FrictionResult) -> Summary:
    """Headlines (the best gamma, measured and predicted; the steps against gradient descent),
    every field of the result, the settings."""
    return Summary(
        headlines=[
            (
                "best gamma at Polyak's rate: measured / theory",
                f"{result.measured_best_gamma[0]:.3f} / {result.theory_best_gamma[0]:.3f}",
            ),
            (
                "steps: best heavy ball / best gradient descent",
                f"{fmt(float(np.min(result.steps[0])))} / {fmt(result.gd_steps)}",
            ),
        ],
        numbers=numbers_of(result),
        settings=asdict(result.settings),
    )


EXPERIMENT = Experiment(
    name="momentum-friction",
    title="Momentum as friction",
    section="Momentum",
    summary="steps to a tolerance against gamma on the narrow valley, with the heavy ball's theory",
    stages=1,
    compute=compute,
    figure=figure,
    claims=claims,
    summarize=summarize,
)
