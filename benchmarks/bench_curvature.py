"""The cost of jl.curvature's Hessian measures against one gradient, and their memory.

    python benchmarks/bench_curvature.py            # MLPs of 0.1M and 1.1M parameters
    python benchmarks/bench_curvature.py --quick    # the 0.1M one only, fewer repeats

Three questions, on a ReLU MLP (MNIST-shaped synthetic data, batch 256, float32, mean softmax
cross-entropy):

1. One Hessian-vector product (``jl.curvature.hvp``, forward-over-reverse) against one gradient:
   the ratio of their medians. Forward-over-reverse costs a small constant number of gradients
   (about 2 to 4: the forward pass with tangents, the backward pass with tangents).
2. ``jl.curvature.hessian_eigenvalues`` with 20 Lanczos iterations (20 Hessian-vector products,
   full reorthogonalization) against 20 separate Hessian-vector products: the overhead of the
   Krylov bookkeeping; the same with matfree's ``decomp.tridiag_sym`` (the peer, measured in the
   same rounds); and Hutchinson's ``hessian_trace`` with 20 probes.
3. Memory: XLA's compiled memory analysis of each program (``temp`` = its scratch buffers, without
   the parameters and the batch it is given), in units of one parameter vector (4 bytes x d).
   Lanczos keeps its m basis vectors: the expected count is about m plus a constant (matfree's
   version keeps them as columns and returns a transposed copy: about 2 m). Thick restarts keep
   it there: a basis of k + 10 vectors needs the same memory for 1 or 100 restarts, and 9 more
   vectors for k = 10 than for k = 1.

Each timing is one jitted call after a warm-up call that compiles it; the calls are interleaved
(gradient, hvp, lanczos, ...) and the median and the min-max spread over the repeats are
reported, with ``block_until_ready``. Numbers depend on the machine's load: the load averages
before and after are recorded.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _machine import Results, describe_machine, load_average
from jax.flatten_util import ravel_pytree
from matfree import decomp

import jaxopt_lectures as jl

BATCH = 256
CLASSES = 10


def mlp(key: jax.Array, sizes: tuple[int, ...]) -> list[dict[str, jax.Array]]:
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {
            "w": jax.random.normal(k, (a, b), jnp.float32) * np.sqrt(2.0 / a),
            "b": jnp.zeros(b, jnp.float32),
        }
        for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def loss(params: list[dict[str, jax.Array]], batch: tuple[jax.Array, jax.Array]) -> jax.Array:
    h, labels = batch
    for i, layer in enumerate(params):
        h = h @ layer["w"] + layer["b"]
        if i < len(params) - 1:
            h = jax.nn.relu(h)
    return optax.softmax_cross_entropy_with_integer_labels(h, labels).mean()


def median_spread(samples: list[float]) -> tuple[float, float, float]:
    return statistics.median(samples), min(samples), max(samples)


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def temp_bytes(fn: Callable[..., Any], *args: Any) -> int | None:
    """The compiled program's scratch memory (XLA's memory analysis), None where unavailable."""
    analysis = jax.jit(fn).lower(*args).compile().memory_analysis()
    return None if analysis is None else int(analysis.temp_size_in_bytes)


def bench_model(sizes: tuple[int, ...], repeats: int, iterations: int) -> dict[str, Any]:
    key = jax.random.key(0)
    params = mlp(key, sizes)
    d = sum(leaf.size for leaf in jax.tree.leaves(params))
    x = jax.random.normal(jax.random.key(1), (BATCH, sizes[0]), jnp.float32)
    y = jax.random.randint(jax.random.key(2), (BATCH,), 0, CLASSES)
    batch = (x, y)
    v = jax.tree.map(jnp.ones_like, params)

    def gradient(p: Any, b: Any) -> Any:
        return jax.grad(loss)(p, b)

    def hvp(p: Any, v: Any, b: Any) -> Any:
        return jl.curvature.hvp(loss, p, v, b)

    def lanczos(p: Any, b: Any) -> Any:
        return jl.curvature.hessian_eigenvalues(
            loss, p, b, k=1, key=key, num_iterations=iterations, max_restarts=0
        )[0]

    def lanczos_matfree(p: Any, b: Any) -> Any:  # the peer: matfree's tridiagonalization
        flat, unravel = ravel_pytree(p)
        _, linear = jax.linearize(jax.grad(lambda q: loss(q, b)), p)

        def matvec(u: jax.Array) -> jax.Array:
            return ravel_pytree(linear(unravel(u)))[0]

        v0 = jax.random.normal(key, flat.shape, flat.dtype)
        tridiag = decomp.tridiag_sym(iterations, reortho="full", custom_vjp=False)
        _, T, *_ = tridiag(matvec, v0)
        return jnp.linalg.eigvalsh(T)[-1]

    def trace(p: Any, b: Any) -> Any:
        return jl.curvature.hessian_trace(loss, p, b, num_samples=iterations, key=key, batch_size=1)

    programs: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
        "gradient": (jax.jit(gradient), (params, batch)),
        "hvp": (jax.jit(hvp), (params, v, batch)),
        f"lanczos ({iterations} it.)": (jax.jit(lanczos), (params, batch)),
        f"lanczos, matfree ({iterations} it.)": (jax.jit(lanczos_matfree), (params, batch)),
        f"trace ({iterations} probes)": (jax.jit(trace), (params, batch)),
    }
    for fn, args in programs.values():  # compile and warm up
        jax.block_until_ready(fn(*args))
    times: dict[str, list[float]] = {name: [] for name in programs}
    for _ in range(repeats):
        for name, (fn, args) in programs.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - start)
    memory = {
        "gradient": temp_bytes(gradient, params, batch),
        "hvp": temp_bytes(hvp, params, v, batch),
        f"lanczos ({iterations} it.)": temp_bytes(lanczos, params, batch),
        f"lanczos, matfree ({iterations} it.)": temp_bytes(lanczos_matfree, params, batch),
        f"trace ({iterations} probes)": temp_bytes(trace, params, batch),
    }
    for m in (10, 40):
        memory[f"lanczos ({m} it.)"] = temp_bytes(
            lambda p, b, m=m: jl.curvature.hessian_eigenvalues(
                loss, p, b, k=1, key=key, num_iterations=m, max_restarts=0
            )[0],
            params,
            batch,
        )
    # Thick restarts: a basis of k + 10 vectors, whatever the number of restarts.
    for k, restarts in ((1, 1), (1, 100), (10, 1), (10, 100)):
        memory[f"lanczos, k={k}, basis {k + 10}, {restarts} restarts"] = temp_bytes(
            lambda p, b, k=k, r=restarts: jl.curvature.hessian_eigenvalues(
                loss, p, b, k=k, key=key, num_iterations=k + 10, max_restarts=r
            )[0],
            params,
            batch,
        )
    return {"d": d, "sizes": sizes, "times": times, "memory": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the small model only, 3 repeats")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    models = [(784, 128, 64, 10)] if args.quick else [(784, 128, 64, 10), (784, 1024, 256, 10)]
    repeats = args.repeats or (3 if args.quick else 7)
    iterations = 20
    print(describe_machine(), "; load average", load_average(), flush=True)
    results = Results(
        "curvature",
        "Curvature: Hessian-vector products, Lanczos and Hutchinson",
        __doc__.split("\n\n")[0]
        + " Measured with `jl.curvature` on ReLU MLPs, batch 256, float32; the peer is matfree "
        + importlib.metadata.version("matfree")
        + ". The machine was shared with other work while it ran: the spread columns show how "
        "much the timings moved.",
    )
    raw: dict[str, Any] = {}
    time_rows, memory_rows = [], []
    for sizes in models:
        out = bench_model(sizes, repeats, iterations)
        d = out["d"]
        grad_median = statistics.median(out["times"]["gradient"])
        hvp_median = statistics.median(out["times"]["hvp"])
        raw[str(d)] = out
        for name, samples in out["times"].items():
            med, lo, hi = median_spread(samples)
            if name.startswith(("lanczos", "trace")):
                per_hvp = f"{med / (iterations * hvp_median):.2f}"
            else:
                per_hvp = f"{med / hvp_median:.2f}"
            time_rows.append(
                [
                    f"{d:,}",
                    name,
                    fmt_time(med),
                    f"{fmt_time(lo)} - {fmt_time(hi)}",
                    f"{med / grad_median:.2f}",
                    per_hvp,
                ]
            )
        for name, nbytes in out["memory"].items():
            if nbytes is None:
                continue
            memory_rows.append(
                [f"{d:,}", name, f"{nbytes / 2**20:.1f} MiB", f"{nbytes / (4 * d):.1f}"]
            )
    results.table(
        "Time of one call (compile excluded)",
        ["d", "program", "median", "spread (min - max)", "x gradient", "x hvp (per product)"],
        time_rows,
        notes=(
            f"Medians of {repeats} interleaved repeats. 'x hvp (per product)': for Lanczos and "
            f"the trace, the time over {iterations} Hessian-vector products (1.00 = no overhead "
            "beyond the products); the trace evaluates its probes one at a time (batch_size=1)."
        ),
    )
    results.table(
        "Scratch memory of the compiled program",
        ["d", "program", "temp", "parameter vectors"],
        memory_rows,
        notes=(
            "XLA's memory analysis of each compiled program: scratch buffers, without its inputs "
            "(parameters and batch). 'parameter vectors' = temp / (4 bytes x d). The batch's "
            "activations are part of every program's scratch memory."
        ),
    )
    path = results.save(raw)
    print(f"\nSaved {path}; now run: python benchmarks/render.py")


if __name__ == "__main__":
    main()
