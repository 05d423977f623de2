"""Time one optimizer step (update + ``optax.apply_updates``) of every optimizer against its peers.

    python benchmarks/bench_optimizers.py                  # the full table (a few minutes)
    python benchmarks/bench_optimizers.py --quick          # fewer rounds, no compile table
    python benchmarks/bench_optimizers.py --optimizers adam --shapes 1x10M
    python benchmarks/bench_optimizers.py --multi-output-fusion both --compile-leaves
    python benchmarks/bench_optimizers.py --shapes --compile-leaves 10 100 1000   # compile only

Each run prints its tables and saves them with the raw times to
``benchmarks/results/<name>.<platform>.json`` (``--json`` for another path; ``<name>`` is
``optimizers``, ``optimizers-mof`` with ``--multi-output-fusion both``, ``compile`` for a
compile-only run, ``compile-mixed`` with ``--mixed-sizes``); ``python benchmarks/render.py``
puts them into ``docs/performance.md``.

One "step" is what a training loop does once it has the gradients: ``updates, state =
tx.update(grads, state, params)`` and ``params = optax.apply_updates(params, updates)``, jitted as
one function with the parameter and state buffers donated (``donate_argnums=(0, 1)``), so XLA
updates them in place; without donation every call writes into freshly allocated memory and pays
its page faults (3.5-7x slower on one 10M leaf). PyTorch's ``opt.step()`` updates in place too.

Peers, with settings that give the same numbers as ours (see OPTIMIZERS below): optax; PyTorch's
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

XLA:CPU's multi-output fusion and ``jl.one_loop`` (``--multi-output-fusion both``): the backend
option ``xla_cpu_use_multi_output_fusion`` can only be given through ``XLA_FLAGS`` before JAX
starts (see :mod:`jaxopt_lectures.xla_options`), so the two configurations cannot share a process.
The JAX variants (ours and optax's, each plain and wrapped in ``jl.one_loop``) then run in two
worker processes, one started with the option and one without, each with its own buffers and its
own triad; this process keeps PyTorch and drives both workers from the same interleaved schedule:
every round it asks the worker (or PyTorch) for one sample of each variant in a new random order,
and the worker streams its triad, untimed, right before the timed step. Only one process computes
at a time; the other waits on a pipe. Each worker also counts the loops over the leaf in every
compiled step, times three fresh compilations of it, and runs three steps from the same start:
the "Loops and compile time" table says how far the wrapped parameters are from the plain ones.

Load: other processes skew timings. The script prints the load average and, per shape, the
fraction of the machine's CPU time that *other* processes used during the measurement (from
/proc/stat minus this process's own CPU time), so a noisy run can be recognised and repeated.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _machine import Results, describe_machine, load_average, load_averages
from _worker import Worker

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


MOF_FLAG = "--xla_backend_extra_options=xla_cpu_use_multi_output_fusion"
MOF = "+MOF"  # suffix of the variants compiled with XLA:CPU's multi-output fusion
VARIANTS = ("ours", "packed", "optax", "optax again")
# With --multi-output-fusion both: each transform as it is and wrapped in jl.one_loop.
ONE_LOOP_VARIANTS = ("ours", "one_loop", "optax", "optax one_loop", "optax again")


# ---------------------------------------------------------------------------------------------
# The machine and its load
# ---------------------------------------------------------------------------------------------


def machine() -> str:
    versions = f"optax {optax.__version__}"
    if torch is not None:
        versions += f", torch {torch.__version__} ({torch.get_num_threads()} threads)"
    return f"{describe_machine()}; {versions}"


class OtherLoad:
    """Fraction of the machine's CPU time used by other processes between two samples.

    ``children`` are processes of this benchmark (its workers): their CPU time is not "other".
    """

    def __init__(self, children: list[int] | None = None) -> None:
        self.children = children or []
        self.start = self._sample()

    def _sample(self) -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as f:
                fields = [float(x) for x in f.readline().split()[1:]]
        except OSError:
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        idle = fields[3] + fields[4]  # idle + iowait
        own = sum(os.times()[:4])  # this process and its waited-for children, in seconds
        for pid in self.children:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    stat = f.read().rsplit(")", 1)[1].split()
                own += (float(stat[11]) + float(stat[12])) / ticks  # utime + stime
            except OSError:
                pass
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
# Runners: each builds its buffers once and times one step per call of ``sample``
# ---------------------------------------------------------------------------------------------


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@dataclass
class Runner:
    name: str
    run: Callable[[], None]
    flush: Callable[[], None] | None = None  # run untimed before every timed step
    temp_bytes: int | None = None  # XLA temporaries of the compiled step
    peak_bytes: int | None = None  # arguments + outputs - donated aliases + temporaries
    state_bytes: int | None = None
    fingerprint: str | None = None  # hash of params and state after 3 steps from a fixed start
    compile_seconds: float | None = None  # median of 3 fresh trace + lower + compile
    loops: int | None = None  # loops over the leaf's entries in the compiled step (one leaf)

    def warm(self, n: int) -> None:
        for _ in range(n):
            self.run()

    def sample(self) -> float:
        if self.flush is not None:
            self.flush()
        return timed(self.run)

    def info(self) -> dict[str, Any]:
        return {
            "temp": self.temp_bytes,
            "peak": self.peak_bytes,
            "state": self.state_bytes,
            "fingerprint": self.fingerprint,
            "compile": self.compile_seconds,
            "loops": self.loops,
        }


def make_tree(sizes: list[int], seed: int, scale: float) -> list[jax.Array]:
    rng = np.random.default_rng(seed)
    return [jnp.asarray(scale * rng.standard_normal(n), jnp.float32) for n in sizes]


def jax_step(tx: optax.GradientTransformation) -> Callable[..., Any]:
    def step(params: Any, state: Any, grads: Any) -> tuple[Any, Any]:
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return step


def fingerprint(compiled: Any, tx: optax.GradientTransformation, sizes: list[int]) -> str:
    """SHA-256 (16 hex digits) of parameters and state after 3 steps from a fixed start, then
    ``:`` and the first 64 float32 entries of every parameter leaf (at most 4,096), as hex."""
    params = make_tree(sizes, 0, 1.0)
    grads = make_tree(sizes, 1, 1e-2)
    state = tx.init(params)
    for _ in range(3):
        params, state = compiled(params, state, grads)
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves((params, state)):
        digest.update(np.asarray(leaf).tobytes())
    sample = np.concatenate([np.asarray(p)[:64] for p in params])[:4096].astype(np.float32)
    return f"{digest.hexdigest()[:16]}:{sample.tobytes().hex()}"


def ulps_apart(a: str | None, b: str | None) -> int | None:
    """0 when two fingerprints are equal, else the largest distance in units in the last place
    between their parameter samples (at least 1: the hashes differ)."""
    if a is None or b is None:
        return None
    if a == b:
        return 0
    x, y = (
        np.frombuffer(bytes.fromhex(f.split(":")[1]), np.int32).astype(np.int64) for f in (a, b)
    )
    # float32 bits as a monotonic integer line, so the difference counts representable floats
    x, y = (np.where(v < 0, -(2**31) - v, v) for v in (x, y))
    return max(1, int(np.max(np.abs(x - y))))


def count_loops(compiled: Any, size: int) -> int:
    """Loops over a leaf of ``size`` entries: fusions of the entry computation with a
    ``size``-entry array among their results."""
    entry = compiled.as_text().split("ENTRY")[1].splitlines()
    return sum(1 for x in entry if " fusion(" in x and f"[{size}]" in x.split(" fusion(")[0])


def jax_runner(
    name: str, tx: optax.GradientTransformation, sizes: list[int], compiles: int = 1
) -> Runner:
    params = make_tree(sizes, 0, 1.0)
    grads = make_tree(sizes, 1, 1e-2)
    state = tx.init(params)
    start = time.perf_counter()
    compiled = jax.jit(jax_step(tx), donate_argnums=(0, 1)).lower(params, state, grads).compile()
    seconds = [time.perf_counter() - start]
    seconds += [compile_seconds(tx, sizes) for _ in range(compiles - 1)]
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
    return Runner(
        name,
        run,
        temp_bytes=temp,
        peak_bytes=peak,
        state_bytes=state_bytes,
        fingerprint=fingerprint(compiled, tx, sizes),
        compile_seconds=statistics.median(seconds),
        loops=count_loops(compiled, sizes[0]) if len(sizes) == 1 else None,
    )


def variant_tx(spec: Spec, variant: str) -> optax.GradientTransformation:
    if variant == "ours":
        return spec.ours()
    if variant == "packed":
        return jl.packed(spec.ours())
    if variant == "one_loop":
        return jl.one_loop(spec.ours())
    if variant == "optax one_loop":
        return jl.one_loop(spec.peer())
    return spec.peer()  # "optax", "optax again"


@functools.cache
def torch_device() -> str:
    """PyTorch runs where JAX does: "cuda" when JAX's default backend is a GPU, else "cpu"."""
    assert torch is not None
    return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


def torch_sync() -> None:
    if torch is not None and torch_device() == "cuda":
        torch.cuda.synchronize()


def torch_runner(name: str, spec: Spec, sizes: list[int], impl: str) -> Runner | None:
    """PyTorch's ``impl`` ("foreach" or "fused") implementation; None where it has none."""
    assert torch is not None
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(n, generator=gen).to(torch_device()) for n in sizes]
    for p in params:
        p.requires_grad_(True)
        p.grad = 1e-2 * torch.randn(p.numel(), generator=gen).reshape(p.shape).to(p.device)
    kwargs = dict(spec.torch_kwargs, **{impl: True})
    try:
        opt = getattr(torch.optim, spec.torch_cls)(params, **kwargs)
        opt.step()  # creates the state
    except (RuntimeError, ValueError) as err:  # e.g. no fused kernel for this device
        print(f"  (torch {spec.torch_cls} {impl} on {torch_device()}: {err})", flush=True)
        return None

    def run() -> None:
        opt.step()
        torch_sync()

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
    a = torch.zeros(TRIAD_SIZE, device=torch_device())
    b = torch.ones(TRIAD_SIZE, device=torch_device())
    c = torch.full((TRIAD_SIZE,), 2.0, device=torch_device())

    def run() -> None:
        torch.add(b, c, alpha=3.0, out=a)
        torch_sync()

    return run


# ---------------------------------------------------------------------------------------------
# Worker processes: the JAX variants under another XLA configuration
# ---------------------------------------------------------------------------------------------


def worker_main() -> None:
    """Serve one JSON request per stdin line with one JSON reply per stdout line."""
    triad = triad_runner()
    runners: dict[str, Runner] = {}
    for line in sys.stdin:
        request = json.loads(line)
        command = request["cmd"]
        reply: Any = None
        if command == "setup":
            runners.clear()
            spec, sizes = OPTIMIZERS[request["optimizer"]], SHAPES[request["shape"]]
            for variant in request["variants"]:
                tx = variant_tx(spec, variant)
                runners[variant] = jax_runner(variant, tx, sizes, compiles=3)
                runners[variant].flush = triad.run
            reply = {name: r.info() for name, r in runners.items()}
        elif command == "warmup":
            (triad if request["name"] == "triad" else runners[request["name"]]).warm(request["n"])
        elif command == "sample":
            reply = (triad if request["name"] == "triad" else runners[request["name"]]).sample()
        print(json.dumps(reply), flush=True)


def start_worker(mof: bool) -> Worker:
    """A worker process, started with or without the multi-output fusion option."""
    env = dict(os.environ)
    extra = "--xla_backend_extra_options"
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(extra)]
    env["XLA_FLAGS"] = " ".join([*flags, MOF_FLAG] if mof else flags)
    return Worker(__file__, env)


class RemoteRunner(Runner):
    """A variant living in a worker: warm-up, flush and timing happen there."""

    def __init__(self, name: str, worker: Worker, remote: str, info: dict[str, Any]) -> None:
        super().__init__(name, run=lambda: None)
        self.worker, self.remote = worker, remote
        self.temp_bytes, self.peak_bytes = info.get("temp"), info.get("peak")
        self.state_bytes, self.fingerprint = info.get("state"), info.get("fingerprint")
        self.compile_seconds, self.loops = info.get("compile"), info.get("loops")

    def warm(self, n: int) -> None:
        self.worker.ask(cmd="warmup", name=self.remote, n=n)

    def sample(self) -> float:
        return float(self.worker.ask(cmd="sample", name=self.remote))


# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------


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
        r.warm(warmup)
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {r.name: [] for r in runners}
    for _ in range(rounds):
        for i in rng.permutation(len(runners)):
            times[runners[i].name].append(runners[i].sample())
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
    memory: dict[str, dict[str, Any]] = field(default_factory=dict)

    def median(self, name: str) -> float | None:
        xs = self.times.get(name)
        return statistics.median(xs) if xs else None

    def ratio(self, name: str, peer: str = "optax") -> tuple[float, float, float] | None:
        """Median and interquartile range of the per-round ratios name / peer."""
        a, b = self.times.get(name), self.times.get(peer)
        if not a or not b:
            return None
        return quartiles([x / y for x, y in zip(a, b, strict=True)])

    def raw(self) -> dict[str, Any]:
        return {
            "shape": self.shape,
            "optimizer": self.optimizer,
            "bytes": self.bytes,
            "medians": {k: self.median(k) for k in self.times},
            "quartiles": {k: quartiles(v) for k, v in self.times.items()},
            "times": self.times,
            "memory": self.memory,
        }


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
    shape: str,
    optimizers: list[str],
    rounds: int,
    warmup: int,
    use_torch: bool,
    workers: dict[str, Worker] | None,
) -> tuple[list[Row], list[float], float | None]:
    """One row per optimizer. ``workers`` (``{"": default, MOF: with the option}``): the JAX
    variants run there; otherwise in this process."""
    sizes = SHAPES[shape]
    rows = []
    triad_times: list[float] = []
    load = OtherLoad([w.proc.pid for w in (workers or {}).values()])
    local_triad = triad_runner() if workers is None else None
    for name in optimizers:
        spec = OPTIMIZERS[name]
        runners: list[Runner] = []
        if workers is None:
            assert local_triad is not None
            for variant in VARIANTS:
                runners.append(jax_runner(variant, variant_tx(spec, variant), sizes))
                runners[-1].flush = local_triad.run
            triad: Runner = local_triad
        else:
            for suffix, worker in workers.items():
                # the A/A control (a second instance of optax's step) in the default worker
                variants = ONE_LOOP_VARIANTS[: None if not suffix else -1]
                info = worker.ask(cmd="setup", shape=shape, optimizer=name, variants=variants)
                runners += [RemoteRunner(v + suffix, worker, v, info[v]) for v in variants]
            triad = RemoteRunner("triad", workers[""], "triad", {})
        if use_torch and torch is not None:
            impls = ["foreach", "fused"] if spec.torch_fused else ["foreach"]
            for impl in impls:
                runner = torch_runner(f"torch {impl}", spec, sizes, impl)
                if runner is not None:
                    runners.append(runner)
        times = interleave([*runners, triad], rounds, warmup)
        triad_times += times.pop("triad")
        memory = {r.name: r.info() for r in runners}
        rows.append(Row(shape, name, times, spec.arrays * 4 * sum(sizes), memory))
        print(
            f"  {shape} {name}: "
            + ", ".join(f"{k} {fmt_time(statistics.median(v))}" for k, v in times.items()),
            flush=True,
        )
        del runners
    return rows, triad_times, load.fraction()


def step_table(rows: list[Row], triad_bw: float, use_torch: bool) -> tuple[list[str], list]:
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
    out = []
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
        out.append(cells)
    return head, out


def _best_torch(row: Row) -> str:
    return "torch fused" if "torch fused" in row.times else "torch foreach"


def mof_table(rows: list[Row], use_torch: bool) -> tuple[list[str], list]:
    """Each transform as it is and in jl.one_loop, with and without the option, against
    PyTorch's fastest step (fused where it exists)."""
    head = ["optimizer", "ours", "ours" + MOF, "one_loop(ours)" + MOF]
    head += ["optax", "optax" + MOF, "one_loop(optax)" + MOF]
    if use_torch:
        head += ["torch (fused or foreach)", "one_loop(ours)+MOF / torch", "ours+MOF / torch"]
    head += ["one_loop(optax)+MOF / one_loop(ours)+MOF", "one_loop(ours) / ours (no MOF)", "A/A"]
    out = []
    for row in rows:
        best = _best_torch(row)
        cells = [row.optimizer]
        cells += [fmt_time(row.median(v)) for v in ("ours", "ours" + MOF, "one_loop" + MOF)]
        cells += [fmt_time(row.median(v)) for v in ("optax", "optax" + MOF)]
        cells += [fmt_time(row.median("optax one_loop" + MOF))]
        if use_torch:
            cells += [f"{fmt_time(row.median(best))} ({best.split()[1]})"]
            cells += [fmt_ratio(row.ratio("one_loop" + MOF, best))]
            cells += [fmt_ratio(row.ratio("ours" + MOF, best))]
        cells += [
            fmt_ratio(row.ratio("optax one_loop" + MOF, "one_loop" + MOF)),
            fmt_ratio(row.ratio("one_loop", "ours")),
            fmt_ratio(row.ratio("optax again", "optax")),
        ]
        out.append(cells)
    return head, out


def loops_table(rows: list[Row]) -> tuple[list[str], list]:
    """Loops of the compiled step, compile time wrapped and not, and how far the numbers move."""
    head = ["transform", "loops", "loops" + MOF, "one_loop: loops", "one_loop: loops" + MOF]
    head += ["compile", "one_loop: compile", "one_loop / plain compile" + MOF]
    head += ["one_loop vs plain after 3 steps" + MOF]
    out = []
    for row in rows:
        for who, plain, wrapped in (
            ("jl", "ours", "one_loop"),
            ("optax", "optax", "optax one_loop"),
        ):
            m = row.memory
            ratio = m[wrapped + MOF]["compile"] / m[plain + MOF]["compile"]
            apart = ulps_apart(m[plain + MOF]["fingerprint"], m[wrapped + MOF]["fingerprint"])
            out.append(
                [
                    f"{who} {row.optimizer}",
                    str(m[plain]["loops"]),
                    str(m[plain + MOF]["loops"]),
                    str(m[wrapped]["loops"]),
                    str(m[wrapped + MOF]["loops"]),
                    f"{m[plain + MOF]['compile']:.2f} s",
                    f"{m[wrapped + MOF]['compile']:.2f} s",
                    f"{ratio:.2f}",
                    "bit-identical" if apart == 0 else f"{apart} ulp",
                ]
            )
    return head, out


def memory_table(rows: list[Row]) -> tuple[list[str], list]:
    names = [n for n in rows[0].memory if not n.startswith("torch") and "again" not in n]
    head = ["shape", "optimizer"] + [
        f"{what}: {' / '.join(names)}" for what in ("state", "XLA temporaries", "peak live")
    ]

    def mb(x: int | None) -> str:
        return "?" if x is None else f"{x / 1e6:.1f}"

    out = []
    for row in rows:
        m = row.memory
        cells = [row.shape, row.optimizer]
        for key in ("state", "temp", "peak"):
            cells.append(" / ".join(mb(m[v][key]) for v in names) + " MB")
        out.append(cells)
    return head, out


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
                "times": times,
                **{k: statistics.median(v) for k, v in times.items()},
            }
            print(
                f"  compile {num_leaves} leaves, {case}: "
                + ", ".join(f"{k} {statistics.median(v):.2f} s" for k, v in times.items()),
                flush=True,
            )
            results.append(result)
    return results


def bench_distinct_loops(num_leaves: int) -> dict[str, Any]:
    """Compile time of ``num_leaves`` per-leaf loops that are identical, or differ only by a
    constant: what XLA:CPU spends per distinct loop (it generates identical loops once)."""

    def identical(xs: list[jax.Array], ys: list[jax.Array]) -> list[jax.Array]:
        return [x + 2.0 * y for x, y in zip(xs, ys, strict=True)]

    def distinct(xs: list[jax.Array], ys: list[jax.Array]) -> list[jax.Array]:
        return [x + 2.0 * y + float(i) for i, (x, y) in enumerate(zip(xs, ys, strict=True))]

    xs = make_tree([1_000] * num_leaves, 0, 1.0)
    out: dict[str, Any] = {"leaves": num_leaves}
    for name, fn in (("identical", identical), ("distinct", distinct)):
        start = time.perf_counter()
        jax.jit(fn).lower(xs, xs).compile()
        out[name] = time.perf_counter() - start
    print(
        f"  {num_leaves} loops: identical {out['identical']:.2f} s, "
        f"distinct constants {out['distinct']:.2f} s",
        flush=True,
    )
    return out


def compile_table(results: list[dict[str, Any]]) -> tuple[list[str], list]:
    head = ["leaves", "sizes", "step", "ours", "packed", "optax", "packed/optax", "other load"]
    out = []
    for r in results:
        other = "?" if r["other_load"] is None else f"{100 * r['other_load']:.0f}%"
        sizes = "500-1,500 (distinct)" if r["mixed"] else "1,000 each"
        out.append(
            [
                f"{r['leaves']:,}",
                sizes,
                r["case"],
                f"{r['ours']:.2f} s",
                f"{r['packed']:.2f} s",
                f"{r['optax']:.2f} s",
                f"{r['packed'] / r['optax']:.2f}",
                other,
            ]
        )
    return head, out


# ---------------------------------------------------------------------------------------------


STEP_NOTES = (
    "One donated step (update + apply_updates), medians of interleaved rounds; ratios are "
    "medians of per-round ratios [interquartile range]; A/A is two identical optax programs "
    "(the noise band); bytes = least traffic of a step; 'of triad' = bandwidth reached over the "
    "same run's 50M-float triad."
)
MOF_NOTES = (
    "One 10M-float32 leaf, one donated step (update + apply_updates), medians of interleaved "
    "rounds; ratios are medians of per-round ratios [interquartile range]. +MOF: compiled with "
    "XLA_FLAGS=" + MOF_FLAG + " (a separate worker process, interleaved sample by sample with "
    "the others). one_loop(tx): jl.one_loop around the transform. torch: PyTorch's fused "
    "implementation where it has one (momentum, NAG, Adagrad, Adam), otherwise foreach. A/A: two "
    "identical optax programs (the noise band)."
)
LOOPS_NOTES = (
    "Loops over the leaf in the compiled step (fusions with a 10M-entry result), without and "
    "with the option; compile: trace + lower + compile of the step with the option, median of 3 "
    "fresh compiles in the worker. Last column: the largest difference between the wrapped and "
    "the plain transform's parameters after 3 steps, in float32 units in the last place, on a "
    "sample of 64 parameters."
)
COMPILE_NOTES = (
    "Trace + lower + compile of one step (a fresh function: no cache), median of the repeats, "
    "the variants in rotating order. 'other load': share of the CPU other processes used."
)


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
        "--multi-output-fusion",
        choices=["default", "both"],
        default="default",
        help="'both': every JAX variant with and without XLA:CPU's multi-output fusion, "
        "side by side (two worker processes)",
    )
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
    parser.add_argument("--json", help="write the results here instead of benchmarks/results/")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main()
        return
    if args.quick:
        args.rounds, args.warmup, args.compile_leaves = 7, 2, []
    use_torch = not args.no_torch and torch is not None
    both = args.multi_output_fusion == "both"
    name = ("optimizers-mof" if both else "optimizers") if args.shapes else "compile"
    name += "-mixed" if args.mixed_sizes and not args.shapes else ""
    results = Results(
        name,
        {
            "optimizers": "Optimizer step time",
            "optimizers-mof": "Optimizer step time with XLA:CPU multi-output fusion",
            "compile": "Compile time of one optimizer step",
            "compile-mixed": "Compile time of one optimizer step, leaves of distinct sizes",
        }[name],
        (__doc__ or "").split("\n\n")[0].strip(),
    )
    print(f"Machine: {machine()}")
    print(f"Load average at start: {load_average()}")
    rows: list[Row] = []
    triad_times: list[float] = []
    other: dict[str, float | None] = {}
    raw: dict[str, Any] = {"mode": args.multi_output_fusion, "rounds": args.rounds}
    if args.shapes:
        workers = {"": start_worker(mof=False), MOF: start_worker(mof=True)} if both else None
        try:
            print("\n## Step time\n", flush=True)
            for shape in args.shapes:
                shape_rows, shape_triad, other[shape] = bench_shape(
                    shape, args.optimizers, args.rounds, args.warmup, use_torch, workers
                )
                rows += shape_rows
                triad_times += shape_triad
        finally:
            for w in (workers or {}).values():
                w.close()
        triad_time = statistics.median(triad_times)
        triad_bw = 3 * 4 * TRIAD_SIZE / triad_time
        shares = ", ".join(
            f"{k} {'?' if v is None else f'{100 * v:.0f}%'}" for k, v in other.items()
        )
        context = (
            f"Triad (a = b + 3 c, 50M float32, donated): median {fmt_time(triad_time)} over "
            f"{len(triad_times)} runs, {triad_bw / 1e9:.1f} GB/s (spread "
            f"{fmt_spread(triad_times)}). Other processes' share of the CPU: {shares}. "
            f"{args.rounds} rounds."
        )
        print(context)
        if both:
            results.table(
                "Step time: multi-output fusion and jl.one_loop",
                *mof_table(rows, use_torch),
                notes=f"{MOF_NOTES} {context}",
            )
            single = [r for r in rows if len(SHAPES[r.shape]) == 1]
            if single:
                results.table("Loops and compile time", *loops_table(single), notes=LOOPS_NOTES)
        else:
            results.table(
                "Step time", *step_table(rows, triad_bw, use_torch), f"{STEP_NOTES} {context}"
            )
        results.table(
            "Memory (XLA's memory analysis of the compiled step)",
            *memory_table(rows),
            notes="State buffers, XLA temporaries and peak live bytes of one step.",
        )
        raw |= {
            "triad_seconds": triad_times,
            "triad_bytes_per_second": triad_bw,
            "other_load": other,
            "rows": [r.raw() for r in rows],
        }
    if args.compile_leaves:
        print("\n## Compile time (trace + lower + compile of one step, seconds)\n", flush=True)
        compile_results = bench_compile(args.compile_leaves, args.compile_repeats, args.mixed_sizes)
        results.table("Compile time", *compile_table(compile_results), notes=COMPILE_NOTES)
        raw["compile"] = compile_results
        loops = bench_distinct_loops(min(300, max(args.compile_leaves)))
        results.table(
            "Identical against distinct loops",
            ["loops", "identical: x + 2 y", "distinct: x + 2 y + i", "per distinct loop"],
            [
                [
                    f"{loops['leaves']:,}",
                    f"{loops['identical']:.2f} s",
                    f"{loops['distinct']:.2f} s",
                    f"{1e3 * (loops['distinct'] - loops['identical']) / loops['leaves']:.0f} ms",
                ]
            ],
            notes="One jitted function with one loop per leaf (1,000 float32 each); the "
            "distinct loops differ only by a constant, as jl.packed's differ by their offsets.",
            align="rrrr",
        )
        raw["distinct_loops"] = loops
    print(f"\nLoad average at the end: {load_average()} ({load_averages()})")
    results.save(raw, args.json)


if __name__ == "__main__":
    main()
