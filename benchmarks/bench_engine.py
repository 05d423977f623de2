"""The engine's compiled loops against a Python loop over a jitted step.

Every case trains with the same step function the engine uses
(``jaxopt_lectures.experiments.engine.train_step``, or one optimizer update for the 2-D problems),
the same mini-batches and the same optimizer, in four ways:

- **compiled** (the engine): the whole epoch is one ``lax.scan`` (with N seeds, ``vmap``-ed);
- **loop**: the fastest Python loop one can write: the mini-batch indices and dropout keys are
  split on the device before the clock starts, one jitted step per mini-batch is dispatched with
  the carry donated, and the loop never waits for a result until the end (JAX's asynchronous
  dispatch overlaps the next call's Python work with the current step);
- **everyday loop**: the loop most training scripts contain: NumPy mini-batches sliced on the host
  and handed to the jitted step, and the loss read back every step (``float(loss)``, to log it);
- **dispatch only**: the loop with a step that does nothing (same arguments, donated carry): the
  per-step cost of calling a jitted function from Python, the part compiling the epoch removes.

A Python loop cannot run a step faster than its dispatch cost nor faster than the step's own
compute, so the compiled epoch's speed-up over the loop is at most about
max(dispatch, compute) / compute, reported as the "ceiling" column: when one step's arithmetic
takes longer than a third of the dispatch cost, no compiled loop can be 3x faster than the loop.
Timings are medians over repeated epochs after a warm-up (compile excluded), interleaved
(A B C D A B C D ...) so a busy neighbour slows all alike.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_engine.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _machine import Results, describe_machine, load_average

import jaxopt_lectures as jl
from jaxopt_lectures.experiments.data import digits
from jaxopt_lectures.experiments.engine import MLP, TrainCarry, init_carry, train_step
from jaxopt_lectures.experiments.problems import rosenbrock

# name -> (model, optimizer, lanes, batch size): lanes > 1 are seeds vmap-ed, as the engine runs
# them (the loops train them one after the other).
CASES: dict[str, tuple[MLP, Callable[[], optax.GradientTransformation], int, int]] = {
    "2x128 relu, sgd": (MLP((128, 128)), lambda: jl.sgd(0.1), 1, 64),
    "2x128 relu, adam": (MLP((128, 128)), lambda: jl.adam(1e-3), 1, 64),
    "2x128 relu, adam, batch 16": (MLP((128, 128)), lambda: jl.adam(1e-3), 1, 16),
    "3x100 sigmoid + BN, sgd": (
        MLP((100, 100, 100), "sigmoid", batch_norm=True),
        lambda: jl.sgd(1.0),
        1,
        64,
    ),
    "2x512 relu + dropout, adam": (
        MLP((512, 512), dropout_rate=0.5),
        lambda: jl.adam(1e-3),
        1,
        64,
    ),
    "2x128 relu, adam, 8 seeds": (MLP((128, 128)), lambda: jl.adam(1e-3), 8, 64),
    "3x100 sigmoid + BN, 8 seeds": (
        MLP((100, 100, 100), "sigmoid", batch_norm=True),
        lambda: jl.sgd(1.0),
        8,
        64,
    ),
}


def interleaved(methods: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Median seconds of each method over ``repeats`` rounds, one call of each per round."""
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, method in methods.items():
            times[name].append(method())
    return {name: statistics.median(t) for name, t in times.items()} | {
        f"{name} spread": (max(t) - min(t)) / statistics.median(t) for name, t in times.items()
    }


def bench_mlp(model: MLP, make_tx: Any, lanes: int, batch_size: int, repeats: int) -> dict:
    """Seconds per step (one lane's step) of the four ways, on one epoch of the digits."""
    data = digits()
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    x_host, y_host = np.asarray(data.x_train), np.asarray(data.y_train)
    steps = len(x) // batch_size
    tx = make_tx()
    order = jax.random.permutation(jax.random.key(0), len(x))[: steps * batch_size]
    order = order.reshape(steps, batch_size)
    keys = jax.random.split(jax.random.key(1), steps)
    init_keys = jax.random.split(jax.random.key(2), lanes)
    # The loops' inputs, prepared before any clock starts.
    device_batches = [(order[i], keys[i]) for i in range(steps)]
    order_host = np.asarray(order)
    jax.block_until_ready(device_batches)

    @partial(jax.jit, donate_argnums=0)
    def step(carry: TrainCarry, idx: jax.Array, k: jax.Array) -> tuple[TrainCarry, jax.Array]:
        return train_step(model, tx, carry, (x[idx], y[idx], k))

    @partial(jax.jit, donate_argnums=0)
    def step_host(
        carry: TrainCarry, xb: jax.Array, yb: jax.Array, k: jax.Array
    ) -> tuple[TrainCarry, jax.Array]:
        return train_step(model, tx, carry, (xb, yb, k))

    @partial(jax.jit, donate_argnums=0)
    def nothing(carry: TrainCarry, idx: jax.Array, k: jax.Array) -> tuple[TrainCarry, jax.Array]:
        return carry, jnp.zeros([], jnp.float32)

    def epoch_one(carry: TrainCarry, order: jax.Array, keys: jax.Array) -> tuple[TrainCarry, Any]:
        def body(c: TrainCarry, batch: tuple[jax.Array, jax.Array]) -> tuple[TrainCarry, Any]:
            return train_step(model, tx, c, (x[batch[0]], y[batch[0]], batch[1]))

        return jax.lax.scan(body, carry, (order, keys))

    batched = jax.vmap(epoch_one, in_axes=(0, None, None)) if lanes > 1 else epoch_one
    epoch = jax.jit(batched, donate_argnums=0)

    def init(k: jax.Array) -> TrainCarry:
        return init_carry(model, tx, k, x.shape[1], data.num_classes)

    last: dict[str, Any] = {}

    def loop_with(fn: Any) -> Callable[[], float]:
        def run() -> float:
            carries = [init(k) for k in init_keys]
            jax.block_until_ready(carries)
            start = time.perf_counter()
            for lane in range(lanes):
                for idx, k in device_batches:
                    carries[lane], _ = fn(carries[lane], idx, k)
            jax.block_until_ready(carries)
            elapsed = time.perf_counter() - start
            last[fn.__name__] = carries
            return elapsed

        return run

    def everyday() -> float:
        carries = [init(k) for k in init_keys]
        jax.block_until_ready(carries)
        logged = []
        start = time.perf_counter()
        for lane in range(lanes):
            for i in range(steps):
                xb, yb = x_host[order_host[i]], y_host[order_host[i]]
                carries[lane], loss = step_host(carries[lane], xb, yb, device_batches[i][1])
                logged.append(float(loss))
        elapsed = time.perf_counter() - start
        last["everyday"] = carries
        return elapsed

    def compiled() -> float:
        carry = jax.vmap(init)(init_keys) if lanes > 1 else init(init_keys[0])
        jax.block_until_ready(carry)
        start = time.perf_counter()
        carry, _ = epoch(carry, order, keys)
        jax.block_until_ready(carry)
        elapsed = time.perf_counter() - start
        last["compiled"] = carry
        return elapsed

    methods = {
        "loop": loop_with(step),
        "everyday": everyday,
        "dispatch": loop_with(nothing),
        "compiled": compiled,
    }
    for method in methods.values():  # compile and warm up
        method()
    # Same numbers: every way takes the same steps (lane 0 of the compiled run).
    reference = last["compiled"].params
    if lanes > 1:
        reference = jax.tree.map(lambda a: a[0], reference)
    diff = 0.0
    for name in ("step", "everyday"):
        for a, b in zip(
            jax.tree.leaves(last[name][0].params), jax.tree.leaves(reference), strict=True
        ):
            diff = max(diff, float(jnp.max(jnp.abs(a - b))))
    out = interleaved(methods, repeats)
    total = steps * lanes
    return {k: (v / total if " spread" not in k else v) for k, v in out.items()} | {
        "max_param_diff": diff,
        "steps": total,
    }


def bench_trajectory(repeats: int, num_steps: int = 1000) -> dict:
    """Adam on the 2-D Rosenbrock problem: the engine's compiled trajectory vs the loops."""
    problem = rosenbrock()
    tx = jl.adam(1e-2)
    x0 = jnp.asarray(problem.x0, jnp.float32)

    @partial(jax.jit, donate_argnums=(0, 1))
    def step(x: jax.Array, state: Any) -> tuple[jax.Array, Any]:
        updates, state = tx.update(jax.grad(problem.loss)(x), state, x)
        return optax.apply_updates(x, updates), state

    @partial(jax.jit, donate_argnums=(0, 1))
    def step_logged(x: jax.Array, state: Any) -> tuple[jax.Array, Any, jax.Array]:
        loss, grads = jax.value_and_grad(problem.loss)(x)
        updates, state = tx.update(grads, state, x)
        return optax.apply_updates(x, updates), state, loss

    @partial(jax.jit, donate_argnums=(0, 1))
    def nothing(x: jax.Array, state: Any) -> tuple[jax.Array, Any]:
        return x, state

    @jax.jit
    def trajectory(x: jax.Array) -> jax.Array:
        def body(carry: tuple[jax.Array, Any], _: None) -> tuple[tuple[jax.Array, Any], None]:
            return step.__wrapped__(*carry), None

        return jax.lax.scan(body, (x, tx.init(x)), None, length=num_steps)[0][0]

    last: dict[str, jax.Array] = {}

    def loop_with(fn: Any) -> Callable[[], float]:
        def run() -> float:
            x, state = jnp.array(x0), tx.init(x0)
            jax.block_until_ready((x, state))
            start = time.perf_counter()
            for _ in range(num_steps):
                x, state = fn(x, state)
            jax.block_until_ready(x)
            last[fn.__name__] = x
            return time.perf_counter() - start

        return run

    def everyday() -> float:
        x, state = jnp.array(x0), tx.init(x0)
        jax.block_until_ready((x, state))
        start = time.perf_counter()
        logged = []
        for _ in range(num_steps):
            x, state, loss = step_logged(x, state)
            logged.append(float(loss))
        last["everyday"] = x
        return time.perf_counter() - start

    def compiled() -> float:
        start = time.perf_counter()
        last["compiled"] = jax.block_until_ready(trajectory(x0))
        return time.perf_counter() - start

    methods = {
        "loop": loop_with(step),
        "everyday": everyday,
        "dispatch": loop_with(nothing),
        "compiled": compiled,
    }
    for method in methods.values():
        method()
    diff = max(float(jnp.max(jnp.abs(last[n] - last["compiled"]))) for n in ("step", "everyday"))
    out = interleaved(methods, repeats)
    return {k: (v / num_steps if " spread" not in k else v) for k, v in out.items()} | {
        "max_param_diff": diff,
        "steps": num_steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed epochs per method")
    parser.add_argument("--json", help="write the results here instead of benchmarks/results/")
    args = parser.parse_args()
    results = Results(
        "engine",
        "Compiled epochs against Python loops",
        "The engine's compiled loops (one lax.scan per epoch, seeds vmap-ed) against a Python "
        "loop over a jitted step, in steps per second of one run.",
    )
    print(f"Machine: {describe_machine()}")
    print(f"Load average before: {load_average()} (1, 5, 15 min)")
    ratios = []
    raw = {}
    table = []
    rows = [(name, lambda c=case: bench_mlp(*c, args.repeats)) for name, case in CASES.items()]
    rows.append(("Rosenbrock (2-D), adam", lambda: bench_trajectory(args.repeats)))
    for name, run in rows:
        r = run()
        raw[name] = r
        ratio = r["loop"] / r["compiled"]
        ratios.append(ratio)
        ceiling = max(r["dispatch"], r["compiled"]) / r["compiled"]
        table.append(
            [
                name,
                f"{1 / r['loop']:,.0f}",
                f"{1 / r['everyday']:,.0f}",
                f"{1 / r['dispatch']:,.0f}",
                f"{1 / r['compiled']:,.0f}",
                f"{ratio:.1f}x",
                f"{r['everyday'] / r['compiled']:.1f}x",
                f"{ceiling:.1f}x",
                f"{100 * r['loop spread']:.0f}% / {100 * r['compiled spread']:.0f}%",
                f"{r['max_param_diff']:.1e}",
            ]
        )
        print(f"  {name}: compiled / loop {ratio:.1f}x", flush=True)
    print(f"\nLoad average after: {load_average()}")
    results.table(
        "Steps per second of one run",
        [
            "case",
            "loop",
            "everyday loop",
            "dispatch only",
            "compiled",
            "compiled / loop",
            "/ everyday",
            "ceiling",
            "spread loop / compiled",
            "max diff",
        ],
        table,
        notes=f"MLP rows: one epoch of the digits (1,078 training examples in mini-batches of 64, "
        f"or 16); with N seeds, N runs: vmap-ed in the compiled epoch, one after the other in the "
        f"loops. Medians of {args.repeats} interleaved repeats, compile excluded. 'ceiling' = "
        f"max(dispatch, compiled step) / compiled step. Speed-up of the compiled loops over the "
        f"fastest Python loop: {min(ratios):.1f}x to {max(ratios):.1f}x.",
    )
    results.save({"cases": raw, "repeats": args.repeats}, args.json)


if __name__ == "__main__":
    main()
