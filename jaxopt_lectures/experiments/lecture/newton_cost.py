r"""Newton's cost: the time of one step of dense Newton-Raphson (``jl.newton``: the Hessian by
forward-over-reverse differentiation, O(d^2) here, then a Cholesky solve, O(d^3)), of matrix-free
Newton-CG (``jl.newton_cg``, a fixed number of Hessian-vector products, O(d) each) and of the
gradient alone, against the number of parameters d, with the exponent p of ``time ~ d^p`` fitted
on each method's largest sizes.

The loss :math:`\sum_i \log\cosh(\vartheta_i - 1) + \frac12 \sum_i (\vartheta_{i+1} -
\vartheta_i)^2` has an O(d) gradient and a positive-definite Hessian. Every timing is the fastest of
``repeats`` calls of a compiled step, each waited for with ``block_until_ready``, the methods
interleaved so that a burst of load on a shared machine hits all of them alike (the fastest call
estimates the cost; the slower ones waited for a core; medians are kept too). Small sizes
measure the per-call overhead (tens of microseconds), which is why the exponents are fitted on the
largest sizes. Dense linear algebra uses however many threads XLA's CPU runtime (and the BLAS it
calls, e.g. ``OPENBLAS_NUM_THREADS``) is given: more cores flatten the dense curve somewhat.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxopt_lectures as jl
from jaxopt_lectures.experiments import figures
from jaxopt_lectures.experiments.api import Claim, Config, Experiment, Figure, Summary, numbers_of
from jaxopt_lectures.experiments.engine import (
    Timer,
    Timing,
    compile_timed,
    fitted_exponent,
)

__all__ = [
    "EXPERIMENT",
    "NewtonCostResult",
    "NewtonCostSettings",
    "claims",
    "compute",
    "figure",
    "summarize",
]

METHODS = ("gradient", "newton_cg", "newton")


@dataclass(frozen=True)
class NewtonCostSettings:
    """The sizes for dense Newton and for the two O(d) methods, CG's fixed iteration count, the
    repeats per timing, and how many of the largest sizes each exponent is fitted on."""

    dense_sizes: tuple[int, ...] = (128, 256, 512, 1024)
    linear_sizes: tuple[int, ...] = (2**14, 2**16, 2**18, 2**20)
    cg_iters: int = 10
    repeats: int = 9
    dense_repeats: int = 3  # dense Newton calls per repeat
    fit_points: int = 3


FULL = NewtonCostSettings()
QUICK = NewtonCostSettings(  # few sizes: every size is a compilation
    dense_sizes=(128, 256, 512),
    linear_sizes=(2**15, 2**18),
    repeats=7,
    dense_repeats=2,
)


class NewtonCostResult(NamedTuple):
    """Median seconds per step for each method and size, the fitted exponents, the machine."""

    sizes: dict[str, np.ndarray]
    seconds: dict[str, np.ndarray]  # fastest of the repeats, per size
    median: dict[str, np.ndarray]
    spread: dict[str, np.ndarray]  # (sizes, 2): min and max over the repeats
    exponents: dict[str, float]
    fit_sizes: dict[str, np.ndarray]
    cg_iters: int
    repeats: int
    cpu_count: int
    blas_threads: str
    load_average: float  # 1-minute load average when the timings started (NaN where unknown)
    settings: NewtonCostSettings
    timings: tuple[Timing, ...]


def _loss(theta: jax.Array) -> jax.Array:
    return jnp.sum(jnp.log(jnp.cosh(theta - 1.0))) + 0.5 * jnp.sum(jnp.diff(theta) ** 2)


def _step(method: str, cg_iters: int) -> Any:
    if method == "gradient":
        return jax.jit(jax.grad(_loss))
    tx = (
        jl.newton(max_params=4096)
        if method == "newton"
        else jl.newton_cg(max_iters=cg_iters, tol=0.0)  # tol 0: exactly cg_iters products
    )

    def step(theta: jax.Array) -> Any:
        updates, _ = tx.update(jax.grad(_loss)(theta), tx.init(theta), theta, value_fn=_loss)
        return updates

    return jax.jit(step)


def compute(config: Config, seed: int) -> NewtonCostResult:
    """Compile every (method, size), then time them interleaved, ``repeats`` rounds; ``FULL``
    settings (in quick mode ``QUICK``), random numbers from ``seed``."""
    settings: NewtonCostSettings = config.pick(FULL, QUICK)
    timer = Timer()
    sizes = {
        "gradient": np.asarray(settings.linear_sizes),
        "newton_cg": np.asarray(settings.linear_sizes),
        "newton": np.asarray(settings.dense_sizes),
    }
    calls: list[tuple[str, int, Any, jax.Array]] = []
    for method in METHODS:
        fn = _step(method, settings.cg_iters)
        for d in sizes[method]:
            # NumPy's generator, cast on the host: jax.random.normal, or a float32 conversion
            # on the device, would compile a program for every size.
            rng = np.random.default_rng((seed, int(d)))
            theta = jax.device_put(rng.standard_normal(int(d)).astype(np.float32))
            compiled = compile_timed(  # one compilation per size, timed below
                f"{method} d={d}", fn, theta, timer=timer, short=True
            )
            jax.block_until_ready(compiled(theta))  # a first call, not timed
            calls.append((method, int(d), compiled, theta))
    times: dict[tuple[str, int], list[float]] = {(m, d): [] for m, d, _, _ in calls}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    start = time.perf_counter()
    for _ in range(settings.repeats):
        for method, d, fn, theta in calls:
            # Dense Newton's small steps (milliseconds) are timed more often: on a busy machine a
            # multi-threaded factorization often waits for a core, and the fastest call is wanted.
            for _ in range(settings.dense_repeats if method == "newton" else 1):
                t0 = time.perf_counter()
                jax.block_until_ready(fn(theta))
                times[(method, d)].append(time.perf_counter() - t0)
    run_s = time.perf_counter() - start
    timer.timings.append(Timing("newton cost timings", 0.0, run_s))
    seconds, median, spread, exponents, fit_sizes = {}, {}, {}, {}, {}
    for method in METHODS:
        ts = [np.asarray(times[(method, int(d))]) for d in sizes[method]]
        # The fastest call estimates the cost; slower ones waited for a core (timeit's advice).
        seconds[method] = np.array([t.min() for t in ts])
        median[method] = np.array([np.median(t) for t in ts])
        spread[method] = np.array([[t.min(), t.max()] for t in ts])
        k = min(settings.fit_points, len(sizes[method]))
        fit_sizes[method] = sizes[method][-k:]
        exponents[method] = fitted_exponent(fit_sizes[method], seconds[method][-k:])
    config.advance(1)
    return NewtonCostResult(
        sizes=sizes,
        seconds=seconds,
        median=median,
        spread=spread,
        exponents=exponents,
        fit_sizes=fit_sizes,
        cg_iters=settings.cg_iters,
        repeats=settings.repeats,
        cpu_count=os.cpu_count() or 0,
        blas_threads=os.environ.get("OPENBLAS_NUM_THREADS", "unset"),
        load_average=load,
        settings=settings,
        timings=tuple(timer.timings),
    )


def figure(result: NewtonCostResult) -> Figure:
    """Seconds per step against d, log-log, with the fitted power laws."""
    plt = figures.pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    colors = {"gradient": "#1f77b4", "newton_cg": "#2ca02c", "newton": "#000000"}
    names = {
        "gradient": "gradient",
        "newton_cg": f"jl.newton_cg ({result.cg_iters} Hessian-vector products)",
        "newton": "jl.newton (dense Hessian + Cholesky)",
    }
    for method in METHODS:
        d, s = result.sizes[method], result.seconds[method]
        lo, hi = result.spread[method].T
        ax.errorbar(
            d,
            s,
            yerr=[s - lo, hi - s],
            fmt="o",
            color=colors[method],
            capsize=3,
            label=f"{names[method]}: fitted d^{result.exponents[method]:.2f}",
        )
        fd = result.fit_sizes[method]
        k = len(fd)
        c = s[-k:] / fd.astype(float) ** result.exponents[method]
        ax.plot(
            fd,
            np.exp(np.mean(np.log(c))) * fd.astype(float) ** result.exponents[method],
            "-",
            color=colors[method],
            alpha=0.7,
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set(
        title="Time of one step against the number of parameters d\n(fastest of "
        f"{result.repeats} calls, bars: slowest; lines: the fits on the largest sizes)",
        xlabel="d (parameters)",
        ylabel="seconds per step",
    )
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return Figure("newton_cost.png", fig)


def claims(result: NewtonCostResult) -> list[Claim]:
    """Dense Newton's fitted exponent against the gradient's."""
    e = result.exponents
    return [
        Claim(
            claim="It requires O(d^3) time versus O(d) of the gradient (d is the number of "
            "parameters)",
            held=bool(e["newton"] >= e["gradient"] + 1.0),
            measured=f"fitted exponents of time ~ d^p: dense Newton {e['newton']:.2f} (d "
            f"{result.fit_sizes['newton'][0]}-{result.fit_sizes['newton'][-1]}), gradient "
            f"{e['gradient']:.2f}, Newton-CG with {result.cg_iters} products {e['newton_cg']:.2f} "
            f"(d {result.fit_sizes['gradient'][0]}-{result.fit_sizes['gradient'][-1]}); "
            f"{result.cpu_count} CPUs, load average {result.load_average:.1f}, "
            f"OPENBLAS_NUM_THREADS={result.blas_threads}",
            rule="dense Newton's fitted exponent exceeds the gradient's by at least 1 (the "
            "lecture's gap is 2: the margin allows for the Cholesky's O(d^3) term not yet "
            "dominating the O(d^2) Hessian at these sizes and for timing noise on a shared "
            "machine)",
        ),
    ]


def summarize(result: NewtonCostResult) -> Summary:
    """Headlines, every field of the result (the numbers behind the figure), the settings."""
    e = result.exponents
    return Summary(
        headlines=[
            (
                "fitted exponent: dense Newton / Newton-CG / gradient",
                f"{e['newton']:.2f} / {e['newton_cg']:.2f} / {e['gradient']:.2f}",
            ),
        ],
        numbers=numbers_of(result),
        settings=asdict(result.settings),
    )


EXPERIMENT = Experiment(
    name="newton-cost",
    title="Newton's cost against d",
    section="AdaGrad (the cost of the inverse Hessian)",
    summary="timed steps of dense Newton, Newton-CG and the gradient against the number of "
    "parameters, with fitted exponents",
    stages=1,
    compute=compute,
    figure=figure,
    claims=claims,
    summarize=summarize,
    exclusive=True,  # its numbers are timed steps
)
