"""The engine's compiled epoch against a Python loop over a jitted step (issue 5, acceptance 3).

Both train the experiments' MLP on the standardized digits with the same step function
(``jaxopt_lectures.experiments.engine.train_step``), the same mini-batches and the same optimizer;
the compiled epoch is one ``lax.scan`` over the epoch's steps, the loop dispatches one jitted step
per mini-batch from Python (the usual way to write a training loop). Parameters and state are
donated in both. Timings are medians over repeated epochs after a warm-up (compile excluded),
interleaved (A B A B ...) so a busy neighbour slows both alike.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_engine.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxopt_lectures as jl
from jaxopt_lectures.experiments.data import digits
from jaxopt_lectures.experiments.engine import MLP, TrainCarry, init_carry, train_step

CASES = {  # name -> (model, optimizer, lanes): lanes > 1 are seeds vmap-ed, as the engine runs them
    "2x128 relu, sgd": (MLP((128, 128)), lambda: jl.sgd(0.1), 1),
    "2x128 relu, adam": (MLP((128, 128)), lambda: jl.adam(1e-3), 1),
    "3x100 sigmoid + BN, sgd": (
        MLP((100, 100, 100), "sigmoid", batch_norm=True),
        lambda: jl.sgd(1.0),
        1,
    ),
    "2x512 relu + dropout, adam": (MLP((512, 512), dropout_rate=0.5), lambda: jl.adam(1e-3), 1),
    "2x128 relu, adam, 8 seeds": (MLP((128, 128)), lambda: jl.adam(1e-3), 8),
    "3x100 sigmoid + BN, 8 seeds": (
        MLP((100, 100, 100), "sigmoid", batch_norm=True),
        lambda: jl.sgd(1.0),
        8,
    ),
}


def machine() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if "model name" in line)
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{cpu}, {cores} cores, {platform.system()} {platform.release()}; Python "
        f"{platform.python_version()}, jax {jax.__version__}, backend {jax.default_backend()}"
    )


def bench(
    name: str, model: MLP, make_tx: Any, lanes: int, repeats: int, batch_size: int = 64
) -> dict:
    """Steps per second of both ways. With ``lanes`` > 1 the compiled epoch trains ``lanes``
    seeds at once (``vmap``, as the engine does) and the loop trains them one after the other;
    a step is then one lane's step."""
    data = digits()
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    steps = len(x) // batch_size
    tx = make_tx()
    key = jax.random.key(0)
    order = jax.random.permutation(key, len(x))[: steps * batch_size].reshape(steps, batch_size)
    keys = jax.random.split(jax.random.key(1), steps)
    init_keys = jax.random.split(jax.random.key(2), lanes)

    @partial(jax.jit, donate_argnums=0)
    def one_step(carry: TrainCarry, idx: jax.Array, k: jax.Array) -> tuple[TrainCarry, jax.Array]:
        return train_step(model, tx, carry, (x[idx], y[idx], k))

    def epoch_one(carry: TrainCarry, order: jax.Array, keys: jax.Array) -> tuple[TrainCarry, Any]:
        def body(c: TrainCarry, batch: tuple[jax.Array, jax.Array]) -> tuple[TrainCarry, Any]:
            return train_step(model, tx, c, (x[batch[0]], y[batch[0]], batch[1]))

        return jax.lax.scan(body, carry, (order, keys))

    batched = jax.vmap(epoch_one, in_axes=(0, None, None)) if lanes > 1 else epoch_one
    epoch = jax.jit(batched, donate_argnums=0)

    def init(k: jax.Array) -> TrainCarry:
        return init_carry(model, tx, k, x.shape[1], data.num_classes)

    def run_loop() -> tuple[float, list[TrainCarry]]:
        carries = [init(k) for k in init_keys]
        jax.block_until_ready(carries)
        start = time.perf_counter()
        for lane in range(lanes):
            for i in range(steps):
                carries[lane], _ = one_step(carries[lane], order[i], keys[i])
        jax.block_until_ready(carries)
        return time.perf_counter() - start, carries

    def run_scan() -> tuple[float, TrainCarry]:
        carry = jax.vmap(init)(init_keys) if lanes > 1 else init(init_keys[0])
        jax.block_until_ready(carry)
        start = time.perf_counter()
        carry, _ = epoch(carry, order, keys)
        jax.block_until_ready(carry)
        return time.perf_counter() - start, carry

    # Same numbers first: the two ways take the same steps (lane 0 against the first loop run).
    _, loop_carries = run_loop()
    _, scan_carry = run_scan()
    diff = max(
        float(jnp.max(jnp.abs(a - (b[0] if lanes > 1 else b))))
        for a, b in zip(
            jax.tree.leaves(loop_carries[0].params),
            jax.tree.leaves(scan_carry.params),
            strict=True,
        )
    )
    loop_times, scan_times = [], []
    for _ in range(repeats):  # interleaved
        loop_times.append(run_loop()[0])
        scan_times.append(run_scan()[0])
    loop_s, scan_s = statistics.median(loop_times), statistics.median(scan_times)
    total = steps * lanes
    return {
        "case": name,
        "steps": total,
        "loop_steps_per_s": total / loop_s,
        "scan_steps_per_s": total / scan_s,
        "ratio": loop_s / scan_s,
        "loop_spread": (max(loop_times) - min(loop_times)) / loop_s,
        "scan_spread": (max(scan_times) - min(scan_times)) / scan_s,
        "max_param_diff": diff,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed epochs per method")
    args = parser.parse_args()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"Machine: {machine()}")
    print(f"Load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1, 5, 15 min)")
    print(
        "One epoch of the digits (1,078 examples, mini-batches of 64 = 16 steps; with N seeds, "
        "N runs: vmap-ed in the compiled epoch, one after the other in the loop), median of "
        f"{args.repeats} interleaved repeats, compile excluded. st/s = steps of one run per "
        "second.\n"
    )
    header = (
        f"| {'case':<28} | {'Python loop, jitted step':>24} | {'compiled epoch (scan)':>21} | "
        f"{'scan / loop':>11} | {'spread loop / scan':>18} | {'max param diff':>16} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    ratios = []
    for name, (model, make_tx, lanes) in CASES.items():
        r = bench(name, model, make_tx, lanes, args.repeats)
        ratios.append(r["ratio"])
        print(
            f"| {name:<28} | {r['loop_steps_per_s']:>18,.0f} st/s | "
            f"{r['scan_steps_per_s']:>15,.0f} st/s | {r['ratio']:>10.1f}x | "
            f"{100 * r['loop_spread']:>7.0f}% / {100 * r['scan_spread']:>5.0f}% | "
            f"{r['max_param_diff']:>16.1e} |"
        )
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"\nLoad average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(
        f"Speed-up of the compiled epoch: {min(ratios):.1f}x to {max(ratios):.1f}x "
        "(acceptance: >= 3x)"
    )


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
