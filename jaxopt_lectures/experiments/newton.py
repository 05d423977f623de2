"""Experiment 2, "why is Newton-Raphson better than gradient descent?": both on the lecture's
ill-conditioned quadratic theta . A theta, drawn on its elliptic level curves."""

from __future__ import annotations

import numpy as np

import jaxopt_lectures as jl
from jaxopt_lectures.experiments import figures
from jaxopt_lectures.experiments.base import Claim, Context, Result, fmt
from jaxopt_lectures.experiments.engine import TrajectoryJob, run_trajectories, sweep_trajectories
from jaxopt_lectures.experiments.problems import quadratic

__all__ = ["run"]

A1, A2 = 1.0, 20.0
TOLERANCE = 1e-6  # "reached the minimum": loss below 1e-6 of the starting loss


def _steps_to(losses: np.ndarray, threshold: float) -> float:
    hits = np.nonzero(losses <= threshold)[0]
    return float(hits[0]) if len(hits) else float("inf")


def run(ctx: Context) -> Result:
    """Gradient descent against Newton-Raphson on L(theta) = theta . A theta, A = diag(1, 20).

    Lecture: "the (inverse of the) Hessian matrix takes into account also the curvature: a smaller
    curvature leads to a bigger update step". Newton's step -H^-1 g = -theta lands on the minimum
    at once; gradient descent must keep eta < 1/a2 = 0.05 for the steep direction and then crawls
    along the flat one by a factor (1 - 2 eta a1) per step.

    Settings: start (-1, 0.8); Newton with eta = 1 (``jl.newton()``); gradient descent
    (``jl.sgd``) at eta = 0.045 and a ``vmap``-ed sweep of 12 rates from 0.002 to 0.0495; 300
    steps (150 quick).

    Measured: the loss after each step; the steps needed to bring the loss below 1e-6 of its
    starting value.
    """
    problem = quadratic(A1, A2)
    num_steps = ctx.pick(300, 150)
    gd_rate = 0.045
    out = run_trajectories(
        {
            "gradient descent": TrajectoryJob(problem.loss, problem.x0, jl.sgd(gd_rate)),
            "newton": TrajectoryJob(problem.loss, problem.x0, jl.newton()),
        },
        num_steps,
    )
    rates = np.unique(np.append(np.geomspace(0.002, 0.049, 11), gd_rate))
    sweep = sweep_trajectories(jl.sgd, problem.loss, problem.x0, rates, num_steps)
    ctx.advance(1)
    start = float(out["newton"].losses[0])
    threshold = TOLERANCE * start
    newton_steps = _steps_to(out["newton"].losses, threshold)
    gd_steps = _steps_to(out["gradient descent"].losses, threshold)
    sweep_steps = [_steps_to(losses, threshold) for losses in sweep.losses]
    best_gd = float(np.min(sweep_steps))
    best_rate = float(rates[int(np.argmin(sweep_steps))])

    plt = figures.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [1.2, 1]})
    ax = axes[0]
    figures.contour(ax, problem)
    gd = out["gradient descent"].points[:40]
    ax.plot(
        *gd.T,
        "o-",
        color=figures.COLORS["gradient descent"],
        markersize=3.5,
        label=rf"gradient descent, $\eta$ = {gd_rate:g} (first 40 steps)",
    )
    nt = out["newton"].points[:2]
    ax.plot(*nt.T, "s-", color="k", linewidth=2.5, markersize=7, label="Newton-Raphson (1 step)")
    ax.plot(*problem.x0, "o", color="#d62728", markersize=9, label="start", zorder=6)
    ax.set_title(rf"Level curves of {problem.formula}")
    ax.set_aspect("equal")
    ax.legend(loc="lower right")
    ax = axes[1]
    steps = np.arange(num_steps + 1)
    floor = start * 1e-12
    for rate, losses in zip(rates[::3], sweep.losses[::3], strict=True):
        ax.plot(
            steps,
            np.maximum(losses, floor),
            alpha=0.6,
            linewidth=1.2,
            label=rf"gradient descent, $\eta$ = {rate:.3g}",
        )
    ax.plot(
        steps,
        np.maximum(out["gradient descent"].losses, floor),
        color=figures.COLORS["gradient descent"],
        linewidth=2.2,
        label=rf"gradient descent, $\eta$ = {gd_rate:g}",
    )
    ax.plot(
        steps[:3],
        np.maximum(out["newton"].losses[:3], floor),
        "s-",
        color="k",
        linewidth=2.5,
        label="Newton-Raphson (loss 0 after step 1)",
    )
    ax.axhline(threshold, color="grey", linestyle=":", label=r"tolerance $10^{-6} L_0$")
    ax.set_yscale("log")
    ax.set(title="Loss per step (0 drawn at 1e-12 of the start)", xlabel="step", ylabel="loss")
    ax.legend(fontsize=8)
    fig.suptitle("Gradient descent versus Newton-Raphson on the lecture's quadratic")
    fig.tight_layout()
    name = figures.save(fig, ctx.figure_path("newton.png"))
    ctx.advance(1)

    claims = [
        Claim(
            claim="Newton-Raphson reaches the quadratic's minimum in one step",
            held=newton_steps == 1.0,
            measured=f"loss after one Newton step: {out['newton'].losses[1]:.3g} "
            f"(start {start:.3g})",
            rule="loss after step 1 <= 1e-6 of the starting loss",
        ),
        Claim(
            claim="Gradient descent needs many steps on the ill-conditioned quadratic",
            held=best_gd >= 20,
            measured=f"{fmt(gd_steps)} steps at eta = {gd_rate:g}; the best of 12 rates "
            f"(eta = {best_rate:.3g}) needs {fmt(best_gd)}",
            rule="the best rate of the sweep needs >= 20 steps to reach the same tolerance",
        ),
    ]
    return Result(
        numbers={
            "a": [A1, A2],
            "x0": list(problem.x0),
            "start_loss": start,
            "newton_losses": out["newton"].losses[:5],
            "newton_steps_to_tolerance": newton_steps,
            "gd_rate": gd_rate,
            "gd_steps_to_tolerance": gd_steps,
            "gd_losses": out["gradient descent"].losses,
            "sweep_rates": rates,
            "sweep_steps_to_tolerance": sweep_steps,
            "gd_best_steps_to_tolerance": best_gd,
            "gd_best_rate": best_rate,
            "tolerance_relative": TOLERANCE,
        },
        figures=[name],
        headlines=[
            ("Newton: steps to the minimum", fmt(newton_steps)),
            (f"gradient descent (eta {gd_rate:g}): steps to 1e-6 of the start", fmt(gd_steps)),
            ("gradient descent at the best of 12 rates", f"{fmt(best_gd)} (eta {best_rate:.3g})"),
        ],
        claims=claims,
        settings={"num_steps": num_steps, "a1": A1, "a2": A2},
    )
