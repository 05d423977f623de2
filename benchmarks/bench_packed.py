"""Compile and step time of ``jl.packed(jl.adam)`` against optax, this version and an earlier one.

    python benchmarks/bench_packed.py                              # this version only
    python benchmarks/bench_packed.py --before 0b14f3d            # an earlier commit too
    python benchmarks/bench_packed.py --before /tmp/before         # an earlier source tree too
    python benchmarks/bench_packed.py --leaves 10 100 --repeats 5

``--before`` names an earlier version of the package: a git revision of this repository (its
``jaxopt_lectures`` folder is extracted with ``git archive`` into a temporary folder) or a source
tree (for example from ``git worktree add``). Its ``jl.packed`` is measured the same way as this
one's, in the same run.

Compile time: every measurement is a fresh process, as a user's first compilation is. It builds
the leaves (float32, 1,000 entries each), compiles one JAX program first (so that the backend's
one-time start-up is not charged to the step), then traces, lowers and compiles one donated
optimizer step (``tx.update`` + ``optax.apply_updates``, as ``bench_optimizers.py`` does) and
reports its wall time and the CPU time of the process during it (XLA compiles on several
threads; on a busy machine the CPU time grows less than the wall time). Last, it hashes the
parameters and state after three steps from a fixed start, so the table can say whether the two
versions' packed steps compute the same bits.

Step time: one long-lived process per variant compiles its step once; the driver then asks the
processes in turn, round by round, for a sample (the median of 20 single steps, each waited for),
so the variants' samples are taken moments apart. One process per variant, not per version:
with one per version, the packed step of the process that also held the optax step measured
about twice as slow at 10 leaves; with one per variant, two identical steps measure alike.

Interleaving: per leaf count, each compile round runs one process per variant (packed before,
packed now, optax) in a rotating order, so the variants of one round are measured moments apart;
ratios are medians of the per-round ratios, times are medians over the rounds. The optax step
does not depend on the version of this package, so it is measured once per round, with this
version on the path. "other" is the share of the machine's CPU time other processes used during the
leaf count's rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from _worker import Worker

LEAF_SIZE = 1_000
STEPS = 20  # single steps per step-time sample (the sample is their median)
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# The measured process
# ---------------------------------------------------------------------------------------------


class Step:
    """One compiled donated step of ``variant`` ("packed" or "optax") on ``num_leaves`` leaves of
    the package on the path, with the wall and CPU time its trace, lowering and compilation took."""

    def __init__(self, num_leaves: int, variant: str) -> None:
        import jax
        import jax.numpy as jnp
        import optax

        import jaxopt_lectures as jl

        tx = jl.packed(jl.adam(1e-3)) if variant == "packed" else optax.adam(1e-3)

        def step(params: Any, state: Any, grads: Any) -> tuple[Any, Any]:
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state

        jax.jit(lambda x: x + 1).lower(jnp.ones(3)).compile()  # the backend's one-time start-up
        self.num_leaves, self.tx, self.package = num_leaves, tx, Path(jl.__file__).parent
        params, state, grads = self.start()
        jax.block_until_ready((params, state, grads))
        cpu, wall = time.process_time(), time.perf_counter()
        self.compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads).compile()
        self.compile_s, self.compile_cpu_s = time.perf_counter() - wall, time.process_time() - cpu
        self.buffers = (params, state, grads)

    def start(self) -> tuple[Any, Any, Any]:
        """Parameters, optimizer state and gradients from a fixed seed."""
        import jax.numpy as jnp
        import numpy as np

        def tree(seed: int, scale: float) -> list[Any]:
            rng = np.random.default_rng(seed)
            return [
                jnp.asarray(scale * rng.standard_normal(LEAF_SIZE), jnp.float32)
                for _ in range(self.num_leaves)
            ]

        params = tree(0, 1.0)
        return params, self.tx.init(params), tree(1, 1e-2)

    def run(self, steps: int) -> list[float]:
        """Time ``steps`` single steps (each waited for), continuing from the last call."""
        import jax

        params, state, grads = self.buffers
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            params, state = self.compiled(params, state, grads)
            jax.block_until_ready(params)
            times.append(time.perf_counter() - start)
        self.buffers = (params, state, grads)
        return times

    def digest(self) -> str:
        """Hash of the parameters and state after 3 steps from the fixed start."""
        import jax
        import numpy as np

        params, state, grads = self.start()
        for _ in range(3):
            params, state = self.compiled(params, state, grads)
        digest = hashlib.sha256()
        for leaf in jax.tree.leaves((params, state)):
            digest.update(np.asarray(leaf).tobytes())
        return digest.hexdigest()[:16]


def child(num_leaves: int, variant: str) -> dict[str, Any]:
    """One fresh-process compile measurement (and the hash of the step's results)."""
    step = Step(num_leaves, variant)
    return {
        "compile_s": step.compile_s,
        "compile_cpu_s": step.compile_cpu_s,
        "hash": step.digest(),
        "package": str(step.package.resolve()),
    }


def _env(tree: str | None) -> dict[str, str]:
    env = dict(os.environ)
    path = [tree or str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    return env | {"PYTHONPATH": os.pathsep.join(path)}


def run_child(num_leaves: int, variant: str, tree: str | None) -> dict[str, Any]:
    """:func:`child` in a new interpreter, with ``tree`` (if given) first on the path."""
    argv = [sys.executable, __file__, "--child", str(num_leaves), variant]
    proc = subprocess.run(argv, env=_env(tree), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def worker_main() -> None:
    """Serve step timings over stdin/stdout, one JSON request and reply per line:
    ``{"build": [leaves, variant]}`` compiles (and warms) a step; ``{"sample": [leaves, variant,
    steps]}`` times that many single steps of it and replies with their median."""
    steps: dict[tuple[int, str], Step] = {}
    for line in sys.stdin:
        request = json.loads(line)
        if "build" in request:
            leaves, variant = request["build"]
            steps[leaves, variant] = step = Step(leaves, variant)
            step.run(5)
            reply: Any = True
        else:
            leaves, variant, count = request["sample"]
            reply = statistics.median(steps[leaves, variant].run(count))
        print(json.dumps(reply), flush=True)


# ---------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------


def source_tree(before: str, folder: str) -> tuple[str, str]:
    """``before`` as a source tree and a label: a folder as it is, or a git revision of this
    repository extracted into ``folder`` (labelled with its short commit hash)."""
    if Path(before).is_dir():
        return before, before
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run(
        [*git, "rev-parse", "--short", f"{before}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    archive = subprocess.run(
        [*git, "archive", "--format=tar", commit, "jaxopt_lectures"],
        capture_output=True,
        check=True,
    ).stdout
    with tempfile.TemporaryFile() as handle:
        handle.write(archive)
        handle.seek(0)
        with tarfile.open(fileobj=handle) as tar:
            tar.extractall(folder, filter="data")
    return folder, f"commit {commit}"


def _cpu_sample() -> tuple[float, float, float] | None:
    """Busy and total CPU seconds of the machine, and this process's own plus its waited-for
    children's (the measured processes are not 'other' load)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / ticks, sum(fields) / ticks, sum(os.times()[:4])


def _other_share(start: Any, end: Any) -> float | None:
    if start is None or end is None or end[1] <= start[1]:
        return None
    busy, total, own = (e - s for e, s in zip(end, start, strict=True))
    return max(0.0, busy - own) / total


def measure(
    leaf_counts: list[int], repeats: int, step_rounds: int, before: str | None
) -> list[dict[str, Any]]:
    """Per leaf count: ``repeats`` rounds of fresh-process compilations, then ``step_rounds``
    rounds of step timings from long-lived workers (one per variant), variants interleaved."""
    variants: list[tuple[str, str, str | None]] = [
        ("packed", "packed", None),
        ("optax", "optax", None),
    ]
    if before:
        variants.insert(0, ("packed before", "packed", before))
    workers = {name: Worker(__file__, _env(tree)) for name, _, tree in variants}
    out = []
    try:
        for num_leaves in leaf_counts:
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in variants}
            steps: dict[str, list[float]] = {name: [] for name, _, _ in variants}
            start = _cpu_sample()
            for r in range(repeats):
                k = r % len(variants)
                for name, variant, tree in variants[k:] + variants[:k]:
                    run = run_child(num_leaves, variant, tree)
                    runs[name].append(run)
                    print(
                        f"  {num_leaves} leaves, {name}: compile {run['compile_s']:.2f} s "
                        f"(CPU {run['compile_cpu_s']:.2f} s)",
                        flush=True,
                    )
            for name, variant, _ in variants:
                workers[name].ask(build=[num_leaves, variant])
            for r in range(step_rounds):
                k = r % len(variants)
                for name, variant, _ in variants[k:] + variants[:k]:
                    steps[name].append(workers[name].ask(sample=[num_leaves, variant, STEPS]))
            print(
                f"  {num_leaves} leaves, step: "
                + ", ".join(f"{k} {1e6 * statistics.median(v):.0f} us" for k, v in steps.items()),
                flush=True,
            )
            out.append(
                {
                    "leaves": num_leaves,
                    "other_load": _other_share(start, _cpu_sample()),
                    "runs": runs,
                    "steps": steps,
                }
            )
    finally:
        for worker in workers.values():
            worker.close()
    return out


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _ratio(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str) -> float:
    """Median over the rounds of a[round][key] / b[round][key]."""
    return statistics.median(x[key] / y[key] for x, y in zip(a, b, strict=True))


def _seconds(t: float) -> str:
    return f"{t:.2f} s"


def _micro(t: float) -> str:
    return f"{1e6 * t:,.0f} us"


def table(results: list[dict[str, Any]], before: bool) -> tuple[list[str], list[list[str]]]:
    head = ["leaves", "optax"]
    head += ["packed before", "packed now", "before / optax", "now / optax", "now / optax (CPU)"]
    head += ["step: optax", "packed before", "packed now", "now / before", "same bits", "other"]
    if not before:
        head = [h for h in head if "before" not in h and h != "same bits"]
    rows = []
    for r in results:
        runs = r["runs"]
        now, optax_ = runs["packed"], runs["optax"]
        old = runs.get("packed before")
        cells = [f"{r['leaves']:,}", _seconds(_median(optax_, "compile_s"))]
        if old:
            cells.append(_seconds(_median(old, "compile_s")))
        cells.append(_seconds(_median(now, "compile_s")))
        if old:
            cells.append(f"{_ratio(old, optax_, 'compile_s'):.2f}")
        cells.append(f"{_ratio(now, optax_, 'compile_s'):.2f}")
        cells.append(f"{_ratio(now, optax_, 'compile_cpu_s'):.2f}")
        steps = r["steps"]
        cells.append(_micro(statistics.median(steps["optax"])))
        if old:
            cells.append(_micro(statistics.median(steps["packed before"])))
        cells.append(_micro(statistics.median(steps["packed"])))
        if old:
            pairs = zip(steps["packed"], steps["packed before"], strict=True)
            cells.append(f"{statistics.median(a / b for a, b in pairs):.2f}")
            hashes = {x["hash"] for x in old + now}
            cells.append("yes" if len(hashes) == 1 else f"no ({len(hashes)} hashes)")
        cells.append("?" if r["other_load"] is None else f"{100 * r['other_load']:.0f}%")
        rows.append(cells)
    return head, rows


NOTES = (
    "Adam on float32 leaves of 1,000 entries each. Compile = trace + lower + compile of one "
    "donated step (update + apply_updates) in a fresh process, wall time, median over the "
    "rounds; ratios: median of the per-round ratios; '(CPU)': the ratio of the process's CPU "
    "time during it instead. Step: one long-lived process per variant, samples (each the "
    "median of STEPS single donated steps) interleaved round by round; medians over the rounds, "
    "'now / before' the median of the per-round ratios. 'same bits': "
    "parameters and state after 3 steps hash the same for both versions. 'other': share of the "
    "CPU other processes used meanwhile."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--leaves", nargs="+", type=int, default=[10, 100, 1_000])
    parser.add_argument(
        "--repeats", type=int, default=3, help="compile rounds (fresh processes) per leaf count"
    )
    parser.add_argument("--step-rounds", type=int, default=15, help="step-time rounds")
    parser.add_argument(
        "--before",
        metavar="REV_OR_TREE",
        help="an earlier version of the package (a git revision or a source tree): its "
        "jl.packed is measured in the same rounds, in columns of its own",
    )
    parser.add_argument("--json", help="write the results here instead of benchmarks/results/")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=2, metavar=("LEAVES", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), args.child[1])))
        return
    if args.worker:
        worker_main()
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _machine import Results, describe_machine, load_average

    results = Results(
        "packed",
        "Compile and step time of jl.packed against optax",
        (__doc__ or "").split("\n\n")[0].strip(),
    )
    print(f"Machine: {describe_machine()}\nLoad average at start: {load_average()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-packed-") as tmp:
        tree, label = source_tree(args.before, tmp) if args.before else (None, "")
        measured = measure(args.leaves, args.repeats, args.step_rounds, tree)
    before = f"'before': the package at {label}, measured in the same rounds. " if label else ""
    head, rows = table(measured, args.before is not None)
    results.table(
        "Compile and step time, packed Adam against optax's Adam",
        head,
        rows,
        notes=before + NOTES.replace("STEPS", str(STEPS)),
        align="r" * len(head),
    )
    raw = {"before": args.before, "before_label": label, "repeats": args.repeats}
    raw |= {"step_rounds": args.step_rounds, "steps_per_sample": STEPS}
    results.save(raw | {"leaves": measured}, args.json)


if __name__ == "__main__":
    main()
