"""The lecture's "Experimentally" slide: the optimizers raced on Rosenbrock, Beale
and a saddle, as trajectories on contour plots, loss curves and an animated GIF."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import optax

import jaxopt_lectures as jl
from jaxopt_lectures.experiments import figures
from jaxopt_lectures.experiments.api import (
    Animation,
    Claim,
    Config,
    Experiment,
    Figure,
    Summary,
)
from jaxopt_lectures.experiments.engine import (
    Timer,
    Timing,
    Trajectory,
    TrajectoryJob,
    first_reach,
    run_trajectories,
)
from jaxopt_lectures.experiments.formatting import fmt
from jaxopt_lectures.problems import PROBLEMS, Problem

__all__ = [
    "EXPERIMENT",
    "OPTIMIZERS",
    "RATES",
    "RaceResult",
    "claims",
    "compute",
    "figure",
    "summarize",
]

OPTIMIZERS: dict[str, Callable[[float], optax.GradientTransformation]] = {
    "sgd": jl.sgd,
    "momentum": lambda lr: jl.momentum(lr, momentum=0.9),
    "nag": lambda lr: jl.nag(lr, momentum=0.9),
    "adagrad": jl.adagrad,
    "rmsprop": lambda lr: jl.rmsprop(lr, decay=0.9),
    "adadelta": lambda lr: jl.adadelta(lr, rho=0.9),
    "adam": jl.adam,
    "newton": lambda lr: jl.newton(lr),
    "newton (saddle-free)": lambda lr: jl.newton(lr, saddle_free=True),
}

# One rate per optimizer and problem: the largest round value that does not blow up on the
# problem's scale (Rosenbrock's curvature reaches ~1,000 at the start; the saddle's is ~1).
_FIRST_ORDER_RATES: dict[str, dict[str, float]] = {
    "rosenbrock": {
        "sgd": 1e-3,
        "momentum": 1e-3,
        "nag": 1e-3,
        "adagrad": 0.5,
        "rmsprop": 0.01,
        "adadelta": 1.0,
        "adam": 0.05,
    },
    "beale": {
        "sgd": 0.01,
        "momentum": 0.005,
        "nag": 0.005,
        "adagrad": 0.5,
        "rmsprop": 0.01,
        "adadelta": 1.0,
        "adam": 0.05,
    },
    "saddle": {
        "sgd": 0.05,
        "momentum": 0.05,
        "nag": 0.05,
        "adagrad": 0.2,
        "rmsprop": 0.01,
        "adadelta": 1.0,
        "adam": 0.05,
    },
}
RATES: dict[str, dict[str, float]] = {
    problem: {**rates, "newton": 1.0, "newton (saddle-free)": 1.0}
    for problem, rates in _FIRST_ORDER_RATES.items()
}
ADAPTIVE = ("adagrad", "rmsprop", "adam")


Key = tuple[str, str]  # (problem, optimizer)


class RaceResult(NamedTuple):
    """Every optimizer's trajectory on every problem, and what was read off them."""

    num_steps: int
    num_frames: int
    out: dict[Key, Trajectory]
    thresholds: dict[str, float]
    steps_to: dict[str, dict[str, float]]  # problem -> optimizer -> steps to the threshold
    timings: tuple[Timing, ...]

    def final(self, problem: str, name: str) -> float:
        """The final loss of optimizer ``name`` on ``problem``."""
        return float(self.out[(problem, name)].losses[-1])


def _problems() -> dict[str, Problem]:
    return {name: make() for name, make in PROBLEMS.items()}


def compute(config: Config, seed: int) -> RaceResult:
    """SGD, momentum, NAG, AdaGrad, RMSprop, AdaDelta, Adam and Newton raced on three problems.

    Lecture ("Experimentally", after Alec Radford's animations): the adaptive methods head for the
    minimum along every coordinate at once and leave a saddle quickly, where plain gradient
    descent, whose step is proportional to the tiny gradient there, lingers.

    Settings: Rosenbrock from (-1.2, 1), Beale from (1, 1.4), the saddle x^2 + y^4/4 - y^2/2 from
    (1, 0.001); one rate per optimizer and problem (``RATES``), momentum 0.9, RMSprop and
    AdaDelta decay 0.9; Newton with eta = 1, plain and saddle-free; 500 steps (300 quick), all 27
    trajectories in one compiled program. Deterministic: ``seed`` is not used.

    Measured: the loss per step, the final loss, the steps to come within 1e-3 of the minimum's
    value (for the saddle: to reach -0.2, i.e. to leave it for a valley).
    """
    del seed
    timer = Timer()
    problems = _problems()
    num_steps = config.pick(500, 300)
    jobs = {
        (pname, name): TrajectoryJob(p.loss, p.x0, OPTIMIZERS[name](RATES[pname][name]))
        for pname, p in problems.items()
        for name in OPTIMIZERS
    }
    out = run_trajectories(jobs, num_steps, timer=timer)
    config.advance(1)
    thresholds = {p: problems[p].min_value + 1e-3 for p in problems}
    thresholds["saddle"] = -0.2
    steps_to = {
        p: {n: first_reach(out[(p, n)].losses, thresholds[p], below=True) for n in OPTIMIZERS}
        for p in problems
    }
    return RaceResult(
        num_steps, config.pick(60, 30), out, thresholds, steps_to, tuple(timer.timings)
    )


def _race_png(r: RaceResult) -> Figure:
    plt = figures.pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(17, 10), gridspec_kw={"height_ratios": [1.15, 1]})
    steps = np.arange(r.num_steps + 1)
    for col, (pname, problem) in enumerate(_problems().items()):
        ax = axes[0, col]
        figures.contour(ax, problem)
        for name in OPTIMIZERS:
            pts = r.out[(pname, name)].points
            color = figures.COLORS[name]
            ax.plot(pts[:, 0], pts[:, 1], "-", color=color, linewidth=1.6, label=name, alpha=0.9)
            ax.plot(pts[-1, 0], pts[-1, 1], "o", color=color, markersize=5)
        ax.plot(*problem.x0, "o", color="#d62728", markersize=9, zorder=6)
        ax.set_title(f"{pname}: {problem.formula}")
        ax = axes[1, col]
        for name in OPTIMIZERS:
            gap = r.out[(pname, name)].losses - problem.min_value
            ax.plot(
                steps, np.maximum(gap, 1e-10), color=figures.COLORS[name], linewidth=1.6, label=name
            )
        ax.set_yscale("log")
        ax.set(
            title=f"{pname}: loss above the minimum",
            xlabel="step",
            ylabel=r"$L(\theta) - L^*$ (floored at 1e-10)",
        )
    axes[0, 2].legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    axes[1, 2].legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"The race: {len(OPTIMIZERS)} optimizers, {r.num_steps} steps (red dot: start)")
    fig.tight_layout()
    return Figure("race.png", fig)


def _race_gif(r: RaceResult) -> Figure:
    plt = figures.pyplot()
    problems = _problems()
    fig, axes = plt.subplots(1, len(problems), figsize=(14, 4.3), dpi=64)
    # Frames on a quadratic clock: the early steps, where most happens, get more frames.
    clock = np.linspace(0, 1, r.num_frames) ** 2 * r.num_steps
    frames = [int(f) for f in np.unique(np.round(clock).astype(int))]
    tracks: list[tuple[Any, Any, np.ndarray]] = []
    for ax, (pname, problem) in zip(axes, problems.items(), strict=True):
        figures.contour(ax, problem, levels=18, resolution=150)
        ax.set_title(f"{pname}: {problem.formula}")
        for name in OPTIMIZERS:
            color = figures.COLORS[name]
            (line,) = ax.plot([], [], "-", color=color, linewidth=1.8, label=name)
            (head,) = ax.plot([], [], "o", color=color, markersize=6)
            tracks.append((line, head, r.out[(pname, name)].points))
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle("The race (Rosenbrock, Beale, saddle)")
    counter = fig.text(0.01, 0.01, "", fontsize=12)
    fig.tight_layout()

    def draw(frame: int) -> list[Any]:
        for line, head, points in tracks:
            line.set_data(points[: frame + 1, 0], points[: frame + 1, 1])
            head.set_data(points[frame : frame + 1, 0], points[frame : frame + 1, 1])
        counter.set_text(f"step {frame} / {r.num_steps}")
        return [a for line, head, _ in tracks for a in (line, head)] + [counter]

    return Figure("race.gif", fig, Animation(draw, frames, fps=8))


def figure(r: RaceResult) -> tuple[Figure, Figure]:
    """Trajectories on the contour lines and loss curves (PNG); the race animated (GIF)."""
    return _race_png(r), _race_gif(r)


def _first_order_best(r: RaceResult) -> float:
    return min(r.steps_to["rosenbrock"][n] for n in OPTIMIZERS if not n.startswith("newton"))


def claims(r: RaceResult) -> list[Claim]:
    """Adaptive methods leave the saddle sooner; plain Newton is drawn to it; Newton is fast."""
    saddle_sgd = r.steps_to["saddle"]["sgd"]
    saddle_adaptive = {n: r.steps_to["saddle"][n] for n in ADAPTIVE}
    newton_at_saddle = float(np.linalg.norm(r.out[("saddle", "newton")].points[-1]))
    ros_first = _first_order_best(r)
    free = r.final("saddle", "newton (saddle-free)")
    return [
        Claim(
            claim="Adaptive methods (AdaGrad, RMSprop, Adam) leave the saddle sooner than SGD",
            held=all(s < saddle_sgd for s in saddle_adaptive.values()),
            measured="steps to reach loss -0.2: SGD "
            + fmt(saddle_sgd)
            + ", "
            + ", ".join(f"{n} {fmt(s)}" for n, s in saddle_adaptive.items()),
            rule="each adaptive method reaches -0.2 in fewer steps than SGD",
        ),
        Claim(
            claim="Plain Newton is attracted to the saddle point; saddle-free Newton is not",
            held=newton_at_saddle < 1e-3 and free < -0.24,
            measured=f"plain Newton ends {newton_at_saddle:.2g} from the saddle point with loss "
            f"{r.final('saddle', 'newton'):.3g}; saddle-free Newton ends at loss {free:.3g}",
            rule="plain Newton ends within 1e-3 of (0, 0); saddle-free reaches loss < -0.24",
        ),
        Claim(
            claim="Newton-Raphson (second order) needs far fewer steps than first-order methods",
            held=r.steps_to["rosenbrock"]["newton"] < ros_first,
            measured=f"Rosenbrock, steps to within 1e-3 of the minimum: Newton "
            f"{fmt(r.steps_to['rosenbrock']['newton'])}, best first-order {fmt(ros_first)}; "
            f"on Beale plain Newton stalls at loss {r.final('beale', 'newton'):.3g}",
            rule="Newton's steps on Rosenbrock < the best first-order method's",
        ),
    ]


def summarize(r: RaceResult) -> Summary:
    """Headlines, the numbers behind the figure, the settings."""
    problems = list(r.steps_to)
    final = {p: {n: r.final(p, n) for n in OPTIMIZERS} for p in problems}
    return Summary(
        headlines=[
            (
                "saddle: steps to escape, SGD / Adam",
                f"{fmt(r.steps_to['saddle']['sgd'])} / {fmt(r.steps_to['saddle']['adam'])}",
            ),
            (
                "Rosenbrock: steps to 1e-3, Newton / best first-order",
                f"{fmt(r.steps_to['rosenbrock']['newton'])} / {fmt(_first_order_best(r))}",
            ),
            (
                "Beale: final loss, Adam / plain Newton / saddle-free Newton",
                f"{final['beale']['adam']:.2g} / {final['beale']['newton']:.3g} / "
                f"{final['beale']['newton (saddle-free)']:.2g}",
            ),
        ],
        numbers={
            "num_steps": r.num_steps,
            "rates": RATES,
            "thresholds": r.thresholds,
            "steps_to_threshold": r.steps_to,
            "final_loss": final,
            "final_point": {p: {n: r.out[(p, n)].points[-1] for n in OPTIMIZERS} for p in problems},
            "losses": {f"{p}/{n}": t.losses for (p, n), t in r.out.items()},
        },
        settings={"num_steps": r.num_steps, "rates": RATES},
    )


EXPERIMENT = Experiment(
    name="race",
    title="The optimizers raced on Rosenbrock, Beale and a saddle",
    section="Experimentally",
    summary="SGD, momentum, NAG, AdaGrad, RMSprop, AdaDelta, Adam, Newton: trajectories, "
    "loss curves, an animated GIF",
    stages=1,
    compute=compute,
    figure=figure,
    claims=claims,
    summarize=summarize,
)
