"""Time one Newton step against the parameter count d: dense (``newton``) and matrix-free
(``newton_cg``), with one gradient evaluation as the yardstick.

    python benchmarks/bench_newton.py            # dense up to d = 10^4, matrix-free up to 10^6
    python benchmarks/bench_newton.py --quick    # dense up to 10^3, matrix-free up to 10^5

The loss is one-dimensional total-variation denoising with a smooth (pseudo-Huber) penalty,
L(x) = 1/2 |x - y|^2 + sum_i sqrt(1 + (x_{i+1} - x_i)^2), for a noisy signal y: non-quadratic,
coupled (a tridiagonal Hessian) and strictly convex, with a gradient that costs O(d), so that the
cost of a step is the optimizer's and not a data matrix's (logistic regression on n samples would
need O(n d) memory at d = 10^6). Its Hessian is positive definite everywhere: the dense step
always takes the Cholesky path (the eigendecomposition path of an indefinite Hessian costs about
10x more), and conjugate gradient never meets negative curvature, so with ``tol=0`` every step
spends exactly ``--cg-iters`` Hessian-vector products (the table reports the count from the
state). The signal y reaches the loss as an extra keyword argument of ``update``.

Each timing is one jitted ``update`` (gradient given), after a warm-up call that compiles it;
calls are interleaved (grad, newton, newton_cg, grad, ...) and the median and the min-max spread
over the repeats are printed, with ``block_until_ready``. OPENBLAS_NUM_THREADS is set to 1 (the
LAPACK factorizations of jaxlib on CPU go through OpenBLAS, whose threads wait for each other:
with 2 threads and another busy process on the cores a solve can take many times longer).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy, scipy or jax load OpenBLAS

import argparse
import itertools
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _machine import Results, describe_machine, load_average

from jaxopt_lectures.optimizers.newton import newton, newton_cg


def tv_denoising(x: jax.Array, y: jax.Array) -> jax.Array:
    """1/2 |x - y|^2 + sum_i sqrt(1 + (x_{i+1} - x_i)^2): smoothed total-variation denoising."""
    return 0.5 * jnp.sum((x - y) ** 2) + jnp.sum(jnp.sqrt(1.0 + (x[1:] - x[:-1]) ** 2))


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def machine() -> str:
    return (
        f"{describe_machine()}; load average {load_average()}; "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}"
    )


def bench_size(d: int, dense: bool, cg_iters: int, repeats: int, budget_s: float) -> list[dict]:
    """Time grad / newton / newton_cg at one size, interleaved; return one row per method."""
    rng = np.random.default_rng(d)
    y = jnp.asarray(np.sign(np.sin(np.linspace(0, 20, d))) + rng.standard_normal(d), jnp.float32)
    x = jnp.asarray(rng.standard_normal(d), jnp.float32)
    grad_fn = jax.jit(jax.grad(tv_denoising))
    g = grad_fn(x, y)

    methods: dict[str, Callable[[], Any]] = {"gradient": lambda: grad_fn(x, y)}
    if dense:
        tx = newton(max_params=d)
        step = jax.jit(lambda g, s, x, y: tx.update(g, s, x, value_fn=tv_denoising, y=y))
        state = tx.init(x)
        methods["newton"] = lambda: step(g, state, x, y)
    tx_cg = newton_cg(max_iters=cg_iters, tol=0.0)
    step_cg = jax.jit(lambda g, s, x, y: tx_cg.update(g, s, x, value_fn=tv_denoising, y=y))
    state_cg = tx_cg.init(x)
    methods["newton_cg"] = lambda: step_cg(g, state_cg, x, y)

    # Warm-up: compile, then one call each to size the number of repeats to the time budget.
    compile_s = {name: timed(fn) for name, fn in methods.items()}
    once = {name: timed(fn) for name, fn in methods.items()}
    n = max(3, min(repeats, int(budget_s / max(sum(once.values()), 1e-9))))
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(n):
        for name, fn in methods.items():  # interleaved: A B C A B C ...
            if once[name] < 0.05:  # cheap: an untimed call first, so that the previous method's
                timed(fn)  # memory traffic does not leave this one a cold cache, then 5 runs
                times[name] += [timed(fn) for _ in range(5)]
            else:
                times[name].append(timed(fn))

    hvps = int(step_cg(g, state_cg, x, y)[1][0].cg_iterations)
    if dense:  # the dense step must have taken the Cholesky path: H is positive definite
        assert int(step(g, state, x, y)[1][0].num_negative_curvature) == 0
    grad_median = statistics.median(times["gradient"])
    rows = []
    for name, ts in times.items():
        median = statistics.median(ts)
        rows.append(
            {
                "d": d,
                "method": name,
                "median_s": median,
                "min_s": min(ts),
                "max_s": max(ts),
                "repeats": len(ts),
                "compile_s": compile_s[name],
                "per_param_ns": 1e9 * median / d,
                "x_grad": median / grad_median,
                "hvps": hvps if name == "newton_cg" else None,
            }
        )
    return rows


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="dense to 10^3, matrix-free to 10^5")
    parser.add_argument("--max-dense", type=int, default=None, help="largest d for newton")
    parser.add_argument("--max-cg", type=int, default=None, help="largest d for newton_cg")
    parser.add_argument("--cg-iters", type=int, default=10, help="HVPs per newton_cg step")
    parser.add_argument("--repeats", type=int, default=15, help="most timed calls per method")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds of timing per size")
    parser.add_argument("--json", help="write the results here instead of benchmarks/results/")
    args = parser.parse_args()
    max_dense = args.max_dense or (1_000 if args.quick else 10_000)
    max_cg = args.max_cg or (100_000 if args.quick else 1_000_000)
    sizes = [10**k for k in range(1, 7) if 10**k <= max(max_dense, max_cg)]

    results = Results(
        "newton",
        "Newton step against the parameter count",
        (__doc__ or "").split("\n\n")[0].replace("\n", " ").strip(),
    )
    print(f"Machine: {machine()}")
    print(
        f"Loss: smoothed 1-D total-variation denoising; newton_cg with tol=0, "
        f"max_iters={args.cg_iters}; float32; one jitted update, gradient given.\n"
    )
    rows = []
    for d in sizes:
        if d > max_cg:
            break
        rows += bench_size(d, d <= max_dense, args.cg_iters, args.repeats, args.budget)

    results.table(
        "One update, gradient given",
        [
            "d",
            "method",
            "median",
            "spread (min - max)",
            "runs",
            "ns / parameter",
            "x gradient",
            *["HVPs"],
        ],
        [
            [
                f"{r['d']:,}",
                r["method"],
                fmt_time(r["median_s"]),
                f"{fmt_time(r['min_s'])} - {fmt_time(r['max_s'])}",
                f"{r['repeats']}",
                f"{r['per_param_ns']:,.1f}",
                f"{r['x_grad']:,.1f}",
                "" if r["hvps"] is None else f"{r['hvps']}",
            ]
            for r in rows
        ],
        notes=f"Smoothed 1-D total-variation denoising, float32, one jitted update; newton_cg "
        f"with tol=0 and max_iters={args.cg_iters}; OPENBLAS_NUM_THREADS="
        f"{os.environ.get('OPENBLAS_NUM_THREADS')}; 'x gradient' = time over one gradient's.",
        align="rlrrrrrr",
    )

    # Growth with d: time(d) / time(d / 10); linear is 10, cubic 1000.
    print("\nGrowth per factor 10 in d (linear = 10x, cubic = 1000x):")
    for method in ("gradient", "newton", "newton_cg"):
        series = [(r["d"], r["median_s"]) for r in rows if r["method"] == method]
        steps = [
            f"{d0:,}->{d1:,}: {t1 / t0:,.1f}x" for (d0, t0), (d1, t1) in itertools.pairwise(series)
        ]
        if steps:
            print(f"  {method}: " + ", ".join(steps))
    # Below ~10^4 parameters a step is dominated by fixed costs (dispatch, loop control).
    cg = [
        (r["d"], r["per_param_ns"]) for r in rows if r["method"] == "newton_cg" and r["d"] >= 10**4
    ]
    if len(cg) >= 2:
        (d0, t0), (d1, t1) = cg[-2], cg[-1]
        print(
            "  newton_cg time per parameter: "
            + ", ".join(f"{d:,}: {t:.1f} ns" for d, t in cg)
            + f"; d = {d1:,} vs {d0:,}: {t1 / t0:.2f} (1.0 = exactly linear)"
        )

    results.save({"rows": rows, "cg_iters": args.cg_iters}, args.json)


if __name__ == "__main__":
    main()
