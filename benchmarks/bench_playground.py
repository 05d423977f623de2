"""How long the optimizer playground takes to build, and how large the page is.

    python benchmarks/bench_playground.py [--out DIR]

Builds the page twice with JAX's persistent compilation cache in a fresh folder, as the command
line uses it: a cold build (every program traced and compiled) and a warm one (traced again,
compiled programs read from the cache, as on a second ``playground`` or ``run``). Prints wall
and CPU seconds per phase (trajectories: tracing, compiling and running the nine programs; page:
contour fields, packing, compression), the seconds per optimizer, the page size and the number
of trajectories, with the machine, versions and date. On a loaded machine compare CPU seconds:
wall time there measures the other processes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import jax
from _machine import describe_machine, load_average

from jaxopt_lectures.playground import build, read_page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="folder for the page (default: a temp dir)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="playground-bench-"))
    cache = tempfile.mkdtemp(prefix="playground-bench-xla-")
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    print(f"Date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"Machine: {describe_machine()}")
    print(f"Load average before: {load_average()} (1, 5, 15 min)")
    for run in ("cold", "warm"):
        timings: dict[str, float] = {}
        cpu0, wall0 = time.process_time(), time.perf_counter()
        path = build(out, timings=timings)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        print(
            f"\n{run} build: {wall:.1f} s wall, {cpu:.1f} s CPU (all threads); "
            f"trajectories {timings['grids_s']:.1f} s, page {timings['page_s']:.1f} s wall"
        )
        per = {k: v for k, v in timings.items() if not k.endswith("_s")}
        print("  per optimizer (s wall):", ", ".join(f"{k} {v:.2f}" for k, v in per.items()))
    description, words = read_page(path)
    cases = sum(g["cases"] for p in description["problems"] for g in p["methods"].values())
    print(
        f"\nPage: {path} {path.stat().st_size / 1e6:.2f} MB, {cases} trajectories of "
        f"{description['num_steps']} steps, {len(words) * 2 / 1e6:.1f} MB of float16 before "
        "compression"
    )
    print(f"Load average after: {load_average()}")


if __name__ == "__main__":
    main()
