"""Why is Newton-Raphson better than gradient descent? both on the lecture's
ill-conditioned quadratic theta . A theta, drawn on its elliptic level curves."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

import jaxopt_lectures as jl
from jaxopt_lectures.experiments import figures
from jaxopt_lectures.experiments.api import Claim, Config, Experiment, Figure, Summary
from jaxopt_lectures.experiments.engine import (
    Timer,
    Timing,
    Trajectory,
    TrajectoryJob,
    first_reach,
    run_trajectories,
    sweep_trajectories,
)
from jaxopt_lectures.experiments.formatting import fmt
from jaxopt_lectures.problems import quadratic

__all__ = ["EXPERIMENT", "NewtonResult", "claims", "compute", "figure", "summarize"]

A1, A2 = 1.0, 20.0
TOLERANCE = 1e-6  # "reached the minimum": loss below 1e-6 of the starting loss
GD_RATE = 0.045


class NewtonResult(NamedTuple):
    """Gradient descent and Newton's trajectories, a sweep of gradient descent's rate, and the
    steps each needed to bring the loss below ``TOLERANCE`` of its start."""

    num_steps: int
    gd: Trajectory
    newton: Trajectory
    rates: np.ndarray
    sweep_losses: np.ndarray  # (rates, steps + 1)
    newton_steps: float
    gd_steps: float
    sweep_steps: list[float]
    timings: tuple[Timing, ...]

    @property
    def start(self) -> float:
        """The starting loss."""
        return float(self.newton.losses[0])

    @property
    def best(self) -> tuple[float, float]:
        """The fewest steps of the sweep and the rate that needed them."""
        i = int(np.argmin(self.sweep_steps))
        return float(self.sweep_steps[i]), float(self.rates[i])


def compute(config: Config, seed: int) -> NewtonResult:
    """Gradient descent against Newton-Raphson on L(theta) = theta . A theta, A = diag(1, 20).

    Lecture: "the (inverse of the) Hessian matrix takes into account also the curvature: a smaller
    curvature leads to a bigger update step". Newton's step -H^-1 g = -theta lands on the minimum
    at once; gradient descent must keep eta < 1/a2 = 0.05 for the steep direction and then crawls
    along the flat one by a factor (1 - 2 eta a1) per step.

    Settings: start (-1, 0.8); Newton with eta = 1 (``jl.newton()``); gradient descent
    (``jl.sgd``) at eta = 0.045 and a ``vmap``-ed sweep of 12 rates from 0.002 to 0.0495; 300
    steps (150 quick). Deterministic: ``seed`` is not used.

    Measured: the loss after each step; the steps needed to bring the loss below 1e-6 of its
    starting value.
    """
    del seed
    timer = Timer()
    problem = quadratic(A1, A2)
    num_steps = config.pick(300, 150)
    out = run_trajectories(
        {
            "gradient descent": TrajectoryJob(problem.loss, problem.x0, jl.sgd(GD_RATE)),
            "newton": TrajectoryJob(problem.loss, problem.x0, jl.newton()),
        },
        num_steps,
        timer=timer,
    )
    rates = np.unique(np.append(np.geomspace(0.002, 0.049, 11), GD_RATE))
    sweep = sweep_trajectories(jl.sgd, problem.loss, problem.x0, rates, num_steps, timer=timer)
    config.advance(1)
    threshold = TOLERANCE * float(out["newton"].losses[0])
    return NewtonResult(
        num_steps=num_steps,
        gd=out["gradient descent"],
        newton=out["newton"],
        rates=rates,
        sweep_losses=sweep.losses,
        newton_steps=first_reach(out["newton"].losses, threshold, below=True),
        gd_steps=first_reach(out["gradient descent"].losses, threshold, below=True),
        sweep_steps=[first_reach(losses, threshold, below=True) for losses in sweep.losses],
        timings=tuple(timer.timings),
    )


def figure(r: NewtonResult) -> Figure:
    """The level curves with both paths; the loss per step of every rate and of Newton."""
    problem = quadratic(A1, A2)
    plt = figures.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [1.2, 1]})
    ax = axes[0]
    figures.contour(ax, problem)
    ax.plot(
        *r.gd.points[:40].T,
        "o-",
        color=figures.COLORS["gradient descent"],
        markersize=3.5,
        label=rf"gradient descent, $\eta$ = {GD_RATE:g} (first 40 steps)",
    )
    nt = r.newton.points[:2]
    ax.plot(*nt.T, "s-", color="k", linewidth=2.5, markersize=7, label="Newton-Raphson (1 step)")
    ax.plot(*problem.x0, "o", color="#d62728", markersize=9, label="start", zorder=6)
    ax.set_title(rf"Level curves of {problem.formula}")
    ax.set_aspect("equal")
    ax.legend(loc="lower right")
    ax = axes[1]
    steps = np.arange(r.num_steps + 1)
    floor = r.start * 1e-12
    for rate, losses in zip(r.rates[::3], r.sweep_losses[::3], strict=True):
        ax.plot(
            steps,
            np.maximum(losses, floor),
            alpha=0.6,
            linewidth=1.2,
            label=rf"gradient descent, $\eta$ = {rate:.3g}",
        )
    ax.plot(
        steps,
        np.maximum(r.gd.losses, floor),
        color=figures.COLORS["gradient descent"],
        linewidth=2.2,
        label=rf"gradient descent, $\eta$ = {GD_RATE:g}",
    )
    ax.plot(
        steps[:3],
        np.maximum(r.newton.losses[:3], floor),
        "s-",
        color="k",
        linewidth=2.5,
        label="Newton-Raphson (loss 0 after step 1)",
    )
    ax.axhline(TOLERANCE * r.start, color="grey", linestyle=":", label=r"tolerance $10^{-6} L_0$")
    ax.set_yscale("log")
    ax.set(title="Loss per step (0 drawn at 1e-12 of the start)", xlabel="step", ylabel="loss")
    ax.legend(fontsize=8)
    fig.suptitle("Gradient descent versus Newton-Raphson on the lecture's quadratic")
    fig.tight_layout()
    return Figure("newton.png", fig)


def claims(r: NewtonResult) -> list[Claim]:
    """Newton lands in one step; gradient descent needs many at every rate of the sweep."""
    best_gd, best_rate = r.best
    return [
        Claim(
            claim="Newton-Raphson reaches the quadratic's minimum in one step",
            held=r.newton_steps == 1.0,
            measured=f"loss after one Newton step: {r.newton.losses[1]:.3g} (start {r.start:.3g})",
            rule="loss after step 1 <= 1e-6 of the starting loss",
        ),
        Claim(
            claim="Gradient descent needs many steps on the ill-conditioned quadratic",
            held=best_gd >= 20,
            measured=f"{fmt(r.gd_steps)} steps at eta = {GD_RATE:g}; the best of 12 rates "
            f"(eta = {best_rate:.3g}) needs {fmt(best_gd)}",
            rule="the best rate of the sweep needs >= 20 steps to reach the same tolerance",
        ),
    ]


def summarize(r: NewtonResult) -> Summary:
    """Headlines, the numbers behind the figure, the settings."""
    best_gd, best_rate = r.best
    return Summary(
        headlines=[
            ("Newton: steps to the minimum", fmt(r.newton_steps)),
            (f"gradient descent (eta {GD_RATE:g}): steps to 1e-6 of the start", fmt(r.gd_steps)),
            ("gradient descent at the best of 12 rates", f"{fmt(best_gd)} (eta {best_rate:.3g})"),
        ],
        numbers={
            "a": [A1, A2],
            "x0": list(quadratic(A1, A2).x0),
            "start_loss": r.start,
            "newton_losses": r.newton.losses[:5],
            "newton_steps_to_tolerance": r.newton_steps,
            "gd_rate": GD_RATE,
            "gd_steps_to_tolerance": r.gd_steps,
            "gd_losses": r.gd.losses,
            "sweep_rates": r.rates,
            "sweep_steps_to_tolerance": r.sweep_steps,
            "gd_best_steps_to_tolerance": best_gd,
            "gd_best_rate": best_rate,
            "tolerance_relative": TOLERANCE,
        },
        settings={"num_steps": r.num_steps, "a1": A1, "a2": A2},
    )


EXPERIMENT = Experiment(
    name="newton",
    title="Gradient descent vs Newton-Raphson on the quadratic",
    section="2nd order methods",
    summary="theta . A theta with a1 << a2: GD zig-zags for dozens of steps, Newton lands in one",
    stages=1,
    compute=compute,
    figure=figure,
    claims=claims,
    summarize=summarize,
)
