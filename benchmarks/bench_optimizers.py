"""Time one optimizer step (update + ``optax.apply_updates``) of every optimizer against its peers.

    python benchmarks/bench_optimizers.py                  # the full table (a few minutes)
    python benchmarks/bench_optimizers.py --quick          # fewer rounds, no compile table
    python benchmarks/bench_optimizers.py --optimizers adam --shapes 1x10M

One "step" is what a training loop does once it has the gradients: ``updates, state =
tx.update(grads, state, params)`` and ``params = optax.apply_updates(params, updates)``, jitted as
one function with the parameter and state buffers donated (``donate_argnums=(0, 1)``), so XLA
updates them in place; without donation every call writes into freshly allocated memory and pays
its page faults (3.5-7x slower on one 10M leaf). PyTorch's ``opt.step()`` updates in place too.

Peers, with settings that give the same numbers as ours (docs/lecture-to-code.md): optax; PyTorch's
``foreach`` and ``fused`` implementations when torch is installed (``fused`` exists for SGD,
Adagrad and Adam only). Ours is measured twice: the default, and wrapped in :func:`jl.packed`
(all state in one buffer per dtype).

Shapes: one leaf of 10M float32 parameters; 100 leaves of 100K (10M in all); 1,000 leaves of 1K
(1M in all). Every shape is measured in rounds: one step of every variant and one STREAM-like
triad (a = b + 3 c on 50M float32, donated), in a new random order each round, so that each
ratio compares samples taken moments apart and the bandwidth is the same run's. Before each timed
step its runtime streams that triad once, untimed, so every step starts as in a training loop,
right after other work: worker threads awake, the cache full of other data (see ``interleave``).
The table gives medians; "spread" is the interquartile range relative to the median; the ratio
ours/optax is the median of the per-round ratios with their interquartile range in brackets (the
noise band). A second, independent instance of the optax step ("optax again") is measured like
the others: its ratio to the first is an A/A control, the difference between two identical
programs in the same run.

"bytes" is the least traffic a step can make: every array it touches read once and every array it
changes written once (SGD: read params and gradients, write params = 3 arrays; momentum, NAG,
AdaGrad, RMSprop: 5; AdaDelta and Adam: 7), times 4 bytes per entry. "of triad" is bytes / time
over the triad's bytes / time. An in-place update can exceed 1.0: the triad writes an array it
does not read, which costs the hardware an extra read (write-allocate), and a 10M-float leaf
(40 MB) partly stays in the host's last-level cache between steps, a 50M-float triad does not.

Completion: every output of one XLA execution is ready at the same moment, so the timer waits for
the parameters only (``jax.block_until_ready(params)``; the same number of leaves for every
variant).

Load: other processes skew timings. The script prints the load average and, per shape, the share of
the machine's CPU time that *other* processes used during the measurement (from /proc/stat minus
this process's own CPU time), so a noisy run can be recognised and repeated.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _machine import describe_machine, load_average

import jaxopt_lectures as jl

try:
    import torch
except ImportError:  # torch is an optional peer
    torch = None

TRIAD_SIZE = 50_000_000
SHAPES: dict[str, list[int]] = {
    "1x10M": [10_000_000],
    "100x100K": [100_000] * 100,
    "1000x1K": [1_000] * 1_000,
}


@dataclass(frozen=True)
class Spec:
    """One optimizer: ours, the optax peer with identical numerics, PyTorch's, and its traffic."""

    ours: Callable[[], optax.GradientTransformation]
    peer: Callable[[], optax.GradientTransformation]
    torch_cls: str
    torch_kwargs: dict[str, Any]
    torch_fused: bool  # does torch.optim.<cls> accept fused=True on CPU?
    arrays: int  # arrays a step must touch: read params, grads, state; write params, state


OPTIMIZERS: dict[str, Spec] = {
    "sgd": Spec(lambda: jl.sgd(0.01), lambda: optax.sgd(0.01), "SGD", {"lr": 0.01}, True, 3),
    "momentum": Spec(
        lambda: jl.momentum(0.01, momentum=0.9),
        lambda: optax.sgd(0.01, momentum=0.9),
        "SGD",
        {"lr": 0.01, "momentum": 0.9},
        True,
        5,
    ),
    "nag": Spec(
        lambda: jl.nag(0.01, momentum=0.9),
        lambda: optax.sgd(0.01, momentum=0.9, nesterov=True),
        "SGD",
        {"lr": 0.01, "momentum": 0.9, "nesterov": True},
        True,
        5,
    ),
    # eps = 0 on both sides: the pair with identical numerics (optax puts eps inside the root).
    "adagrad": Spec(
        lambda: jl.adagrad(0.01, eps=0.0),
        lambda: optax.adagrad(0.01, initial_accumulator_value=0.0, eps=0.0),
        "Adagrad",
        {"lr": 0.01, "eps": 0.0},
        True,
        5,
    ),
    "rmsprop": Spec(
        lambda: jl.rmsprop(0.01, decay=0.9, eps=1e-8),
        lambda: optax.rmsprop(0.01, decay=0.9, eps=1e-8, eps_in_sqrt=False),
        "RMSprop",
        {"lr": 0.01, "alpha": 0.9, "eps": 1e-8},
        False,
        5,
    ),
    "adadelta": Spec(
        lambda: jl.adadelta(1.0),
        lambda: optax.adadelta(1.0),
        "Adadelta",
        {"lr": 1.0, "rho": 0.9, "eps": 1e-6},
        False,
        7,
    ),
    "adam": Spec(lambda: jl.adam(1e-3), lambda: optax.adam(1e-3), "Adam", {"lr": 1e-3}, True, 7),
}


# ---------------------------------------------------------------------------------------------
# The machine and its load
# ---------------------------------------------------------------------------------------------


def machine() -> str:
    versions = f"optax {optax.__version__}"
    if torch is not None:
        versions += f", torch {torch.__version__} ({torch.get_num_threads()} threads)"
    return f"{describe_machine()}; {versions}"


class OtherLoad:
    """Fraction of the machine's CPU time used by other processes between two samples."""

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as f:
                fields = [float(x) for x in f.readline().split()[1:]]
        except OSError:
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        idle = fields[3] + fields[4]  # idle + iowait
        own = sum(os.times()[:4])  # this process and its waited-for children, in seconds
        return (sum(fields) - idle) / ticks, sum(fields) / ticks, own

    def fraction(self) -> float | None:
        end = self._sample()
        if self.start is None or end is None:
            return None
        busy = end[0] - self.start[0]
        total = end[1] - self.start[1]
        own = end[2] - self.start[2]
        return max(0.0, busy - own) / total if total > 0 else None


# ---------------------------------------------------------------------------------------------
# Runners: each builds its buffers once and returns a function doing one step
# ---------------------------------------------------------------------------------------------


@dataclass
class Runner:
    name: str
    run: Callable[[], None]
    flush: Callable[[], None] | None = None  # run untimed before every timed step
    temp_bytes: int | None = None  # XLA temporaries of the compiled step
    peak_bytes: int | None = None  # arguments + outputs - donated aliases + temporaries
    state_bytes: int | None = None


def make_tree(sizes: list[int], seed: int, scale: float) -> list[jax.Array]:
    rng = np.random.default_rng(seed)
    return [jnp.asarray(scale * rng.standard_normal(n), jnp.float32) for n in sizes]


def jax_step(tx: optax.GradientTransformation) -> Callable[..., Any]:
    def step(params: Any, state: Any, grads: Any) -> tuple[Any, Any]:
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return step


def jax_runner(name: str, tx: optax.GradientTransformation, sizes: list[int]) -> Runner:
    params = make_tree(sizes, 0, 1.0)
    grads = make_tree(sizes, 1, 1e-2)
    state = tx.init(params)
    compiled = jax.jit(jax_step(tx), donate_argnums=(0, 1)).lower(params, state, grads).compile()
    memory = compiled.memory_analysis()
    box = [params, state]

    def run() -> None:
        box[0], box[1] = compiled(box[0], box[1], grads)
        jax.block_until_ready(box[0])

    state_bytes = sum(x.nbytes for x in jax.tree.leaves(state))
    peak = None
    temp = None
    if memory is not None:
        temp = int(memory.temp_size_in_bytes)
        peak = int(
            memory.argument_size_in_bytes
            + memory.output_size_in_bytes
            - memory.alias_size_in_bytes
            + memory.temp_size_in_bytes
        )
    return Runner(name, run, temp_bytes=temp, peak_bytes=peak, state_bytes=state_bytes)


def torch_runner(name: str, spec: Spec, sizes: list[int], impl: str) -> Runner:
    assert torch is not None
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(n, generator=gen) for n in sizes]
    for p in params:
        p.requires_grad_(True)
        p.grad = 1e-2 * torch.randn(n := p.numel(), generator=gen).reshape(p.shape)
        del n
    kwargs = dict(spec.torch_kwargs, **{impl: True})
    opt = getattr(torch.optim, spec.torch_cls)(params, **kwargs)
    opt.step()  # creates the state

    def run() -> None:
        opt.step()

    state_bytes = sum(
        t.nbytes
        for s in opt.state.values()
        for t in s.values()
        if isinstance(t, torch.Tensor) and t.dim() > 0
    )
    return Runner(name, run, flush=torch_triad(), state_bytes=state_bytes)


def triad_runner() -> Runner:
    a = jnp.zeros(TRIAD_SIZE, jnp.float32)
    b = jnp.ones(TRIAD_SIZE, jnp.float32)
    c = jnp.full(TRIAD_SIZE, 2.0, jnp.float32)
    # keep_unused: a's old value is not read, but it must reach XLA to be donated and reused.
    triad = jax.jit(lambda a, b, c: b + 3.0 * c, donate_argnums=0, keep_unused=True)
    box = [a]

    def run() -> None:
        box[0] = triad(box[0], b, c)
        box[0].block_until_ready()

    return Runner("triad", run, flush=run)


@functools.cache
def torch_triad() -> Callable[[], None]:
    """The same triad in PyTorch: what a PyTorch step follows (see :func:`interleave`)."""
    assert torch is not None
    a = torch.zeros(TRIAD_SIZE)
    b = torch.ones(TRIAD_SIZE)
    c = torch.full((TRIAD_SIZE,), 2.0)

    def run() -> None:
        torch.add(b, c, alpha=3.0, out=a)

    return run


# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleave(runners: list[Runner], rounds: int, warmup: int) -> dict[str, list[float]]:
    """Time every runner once per round, in a new random order each round; times by name.

    Before each timed step its runtime streams a triad (untimed: ``Runner.flush``), so every
    step starts as one in a training loop would, right after other work: with the runtime's
    worker threads awake and the cache full of other data (including dirty lines to write
    back). Without it a sample depends on its predecessor: XLA's and PyTorch's threads keep
    spinning for a while after a step and slow down the other runtime's next one (PyTorch's fused
    SGD on 10M floats measured 8 ms that way instead of 1.5 ms), and a step right after the
    triad pays for the triad's dirty cache lines.
    """
    for r in runners:
        for _ in range(warmup):
            r.run()
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {r.name: [] for r in runners}
    for _ in range(rounds):
        for i in rng.permutation(len(runners)):
            r = runners[i]
            if r.flush is not None:
                r.flush()
            times[r.name].append(timed(r.run))
    return times


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    q1, q2, q3 = np.percentile(np.asarray(xs), [25, 50, 75])
    return float(q1), float(q2), float(q3)


@dataclass
class Row:
    shape: str
    optimizer: str
    times: dict[str, list[float]]
    bytes: int
    memory: dict[str, dict[str, int | None]] = field(default_factory=dict)

    def median(self, name: str) -> float | None:
        xs = self.times.get(name)
        return statistics.median(xs) if xs else None

    def ratio(self, name: str, peer: str = "optax") -> tuple[float, float, float] | None:
        """Median and interquartile range of the per-round ratios name / peer."""
        a, b = self.times.get(name), self.times.get(peer)
        if not a or not b:
            return None
        return quartiles([x / y for x, y in zip(a, b, strict=True)])


def fmt_time(t: float | None) -> str:
    if t is None:
        return "n/a"
    return f"{t * 1e3:.2f} ms" if t >= 1e-3 else f"{t * 1e6:.0f} µs"


def fmt_ratio(r: tuple[float, float, float] | None) -> str:
    return "n/a" if r is None else f"{r[1]:.2f} [{r[0]:.2f}-{r[2]:.2f}]"


def fmt_spread(xs: list[float] | None) -> str:
    if not xs:
        return ""
    q1, q2, q3 = quartiles(xs)
    return f"±{50 * (q3 - q1) / q2:.0f}%"


def bench_shape(
    shape: str, optimizers: list[str], rounds: int, warmup: int, use_torch: bool, triad: Runner
) -> tuple[list[Row], list[float], float | None]:
    sizes = SHAPES[shape]
    rows = []
    triad_times: list[float] = []
    load = OtherLoad()
    for name in optimizers:
        spec = OPTIMIZERS[name]
        runners = [
            jax_runner("ours", spec.ours(), sizes),
            jax_runner("packed", jl.packed(spec.ours()), sizes),
            jax_runner("optax", spec.peer(), sizes),
            # A/A control: a second, independent instance of the same program. Its ratio to the
            # first shows how far two identical programs drift apart in this run (buffer
            # placement, cache luck), on top of the per-round noise.
            jax_runner("optax again", spec.peer(), sizes),
        ]
        if use_torch and torch is not None:
            runners.append(torch_runner("torch foreach", spec, sizes, "foreach"))
            if spec.torch_fused:
                runners.append(torch_runner("torch fused", spec, sizes, "fused"))
        for r in runners:
            r.flush = r.flush or triad.run
        times = interleave([*runners, triad], rounds, warmup)
        triad_times += times.pop("triad")
        memory = {
            r.name: {"temp": r.temp_bytes, "peak": r.peak_bytes, "state": r.state_bytes}
            for r in runners
        }
        rows.append(Row(shape, name, times, spec.arrays * 4 * sum(sizes), memory))
        print(
            f"  {shape} {name}: "
            + ", ".join(f"{k} {fmt_time(statistics.median(v))}" for k, v in times.items()),
            flush=True,
        )
        del runners
    return rows, triad_times, load.fraction()


def print_step_table(rows: list[Row], triad_bw: float, use_torch: bool) -> None:
    head = ["shape", "optimizer", "ours", "spread", "packed", "optax"]
    if use_torch:
        head += ["torch foreach", "torch fused"]
    head += [
        "ours/optax [IQR]",
        "packed/optax [IQR]",
        "A/A: optax again/optax",
        "bytes",
        "ours of triad",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" if i < 2 else "---:" for i in range(len(head))) + "|")
    for row in rows:
        t = row.median("ours")
        cells = [
            row.shape,
            row.optimizer,
            fmt_time(t),
            fmt_spread(row.times.get("ours")),
            fmt_time(row.median("packed")),
            fmt_time(row.median("optax")),
        ]
        if use_torch:
            cells += [fmt_time(row.median("torch foreach")), fmt_time(row.median("torch fused"))]
        fraction = row.bytes / t / triad_bw if t else float("nan")
        cells += [
            fmt_ratio(row.ratio("ours")),
            fmt_ratio(row.ratio("packed")),
            fmt_ratio(row.ratio("optax again")),
            f"{row.bytes / 1e6:.0f} MB",
            f"{fraction:.2f}",
        ]
        print("| " + " | ".join(cells) + " |")


def print_memory_table(rows: list[Row]) -> None:
    print(
        "| shape | optimizer | state: ours / packed / optax | XLA temporaries: ours / packed / "
        "optax | peak live: ours / packed / optax |"
    )
    print("|---|---|---:|---:|---:|")

    def mb(x: int | None) -> str:
        return "?" if x is None else f"{x / 1e6:.1f}"

    for row in rows:
        m = row.memory
        cells = [row.shape, row.optimizer]
        for key in ("state", "temp", "peak"):
            cells.append(" / ".join(mb(m[v][key]) for v in ("ours", "packed", "optax")) + " MB")
        print("| " + " | ".join(cells) + " |")


# ---------------------------------------------------------------------------------------------
# Compile time
# ---------------------------------------------------------------------------------------------


def compile_seconds(tx: optax.GradientTransformation, sizes: list[int]) -> float:
    """Trace, lower and compile one step from scratch (a new function object: no cache hit)."""
    params = make_tree(sizes, 0, 1.0)
    grads = make_tree(sizes, 1, 1e-2)
    state = tx.init(params)
    start = time.perf_counter()
    jax.jit(jax_step(tx), donate_argnums=(0, 1)).lower(params, state, grads).compile()
    return time.perf_counter() - start


def clip_adam_ours() -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(1.0), jl.adam(1e-3))


def clip_adam_packed() -> optax.GradientTransformation:
    return jl.packed(optax.chain(optax.clip_by_global_norm(1.0), jl.adam(1e-3)))


def clip_adam_optax() -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))


COMPILE_CASES: dict[str, dict[str, Callable[[], optax.GradientTransformation]]] = {
    "adam": {
        "ours": lambda: jl.adam(1e-3),
        "packed": lambda: jl.packed(jl.adam(1e-3)),
        "optax": lambda: optax.adam(1e-3),
    },
    "clip + adam": {"ours": clip_adam_ours, "packed": clip_adam_packed, "optax": clip_adam_optax},
}


def leaf_sizes(num_leaves: int, mixed: bool) -> list[int]:
    """``num_leaves`` leaves of 1,000 entries, or of 500 to 1,500 entries (distinct shapes)."""
    if not mixed:
        return [1_000] * num_leaves
    return [int(n) for n in np.random.default_rng(num_leaves).integers(500, 1_501, num_leaves)]


def bench_compile(leaf_counts: list[int], repeats: int, mixed: bool) -> list[dict[str, Any]]:
    results = []
    for num_leaves in leaf_counts:
        sizes = leaf_sizes(num_leaves, mixed)
        for case, makers in COMPILE_CASES.items():
            times: dict[str, list[float]] = {k: [] for k in makers}
            load = OtherLoad()
            for i in range(repeats):
                names = list(makers)
                k = i % len(names)
                for name in names[k:] + names[:k]:
                    times[name].append(compile_seconds(makers[name](), sizes))
            result = {
                "leaves": num_leaves,
                "case": case,
                "mixed": mixed,
                "other_load": load.fraction(),
                **{k: statistics.median(v) for k, v in times.items()},
            }
            print(
                f"  compile {num_leaves} leaves, {case}: "
                + ", ".join(f"{k} {statistics.median(v):.2f} s" for k, v in times.items()),
                flush=True,
            )
            results.append(result)
    return results


def print_compile_table(results: list[dict[str, Any]]) -> None:
    print("| leaves | sizes | step | ours | packed | optax | packed/optax | other load |")
    print("|---:|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        other = "?" if r["other_load"] is None else f"{100 * r['other_load']:.0f}%"
        sizes = "500-1,500 (distinct)" if r["mixed"] else "1,000 each"
        print(
            f"| {r['leaves']:,} | {sizes} | {r['case']} | {r['ours']:.2f} s | "
            f"{r['packed']:.2f} s | {r['optax']:.2f} s | {r['packed'] / r['optax']:.2f} | "
            f"{other} |"
        )


# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def section(title: str) -> Iterator[None]:
    print(f"\n## {title}\n", flush=True)
    yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--shapes",
        nargs="*",
        default=list(SHAPES),
        choices=list(SHAPES),
        help="shapes of the step-time table (none: skip it)",
    )
    parser.add_argument(
        "--optimizers", nargs="+", default=list(OPTIMIZERS), choices=list(OPTIMIZERS)
    )
    parser.add_argument("--rounds", type=int, default=25, help="interleaved rounds per table row")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument(
        "--compile-leaves",
        nargs="*",
        type=int,
        default=[10, 100, 1_000],
        help="leaf counts for the compile-time table (none: skip it)",
    )
    parser.add_argument("--compile-repeats", type=int, default=2)
    parser.add_argument(
        "--mixed-sizes",
        action="store_true",
        help="compile-time table with leaves of distinct sizes (500 to 1,500)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="7 rounds, no compile table: a smoke test, not a measurement",
    )
    parser.add_argument("--json", help="also write the raw times to this file")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.warmup, args.compile_leaves = 7, 2, []
    use_torch = not args.no_torch and torch is not None

    print(f"Machine: {machine()}")
    print(f"Load average at start: {load_average()}")
    rows: list[Row] = []
    triad_times: list[float] = []
    other: dict[str, float | None] = {}
    if args.shapes:
        triad = triad_runner()
        with section("Step time"):
            for shape in args.shapes:
                shape_rows, shape_triad, other[shape] = bench_shape(
                    shape, args.optimizers, args.rounds, args.warmup, use_torch, triad
                )
                rows += shape_rows
                triad_times += shape_triad
        del triad
        triad_time = statistics.median(triad_times)
        triad_bw = 3 * 4 * TRIAD_SIZE / triad_time
        print(
            f"\nTriad (a = b + 3 c, 50M float32, donated): median {fmt_time(triad_time)} over "
            f"{len(triad_times)} runs, {triad_bw / 1e9:.1f} GB/s "
            f"(spread {fmt_spread(triad_times)})"
        )
        print(
            "Other processes' share of the CPU during each shape: "
            + ", ".join(f"{k} {'?' if v is None else f'{100 * v:.0f}%'}" for k, v in other.items())
        )
        print(f"Load average at the end of the step-time runs: {load_average()}\n")
        print_step_table(rows, triad_bw, use_torch)
        with section("Memory (from XLA's memory analysis of the compiled step)"):
            print_memory_table(rows)
    compile_results: list[dict[str, Any]] = []
    if args.compile_leaves:
        with section("Compile time (trace + lower + compile of one step, seconds)"):
            compile_results = bench_compile(
                args.compile_leaves, args.compile_repeats, args.mixed_sizes
            )
            print()
            print_compile_table(compile_results)
    print(f"\nLoad average at the end: {load_average()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": machine(),
                    "triad_seconds": triad_times,
                    "other_load": other,
                    "rows": [
                        {
                            "shape": r.shape,
                            "optimizer": r.optimizer,
                            "bytes": r.bytes,
                            "times": r.times,
                            "memory": r.memory,
                        }
                        for r in rows
                    ],
                    "compile": compile_results,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
