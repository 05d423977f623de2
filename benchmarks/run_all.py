"""Run every benchmark, save each one's JSON in ``benchmarks/results/``, then render the docs page.

    python benchmarks/run_all.py                  # everything (about an hour on 2 CPU cores)
    python benchmarks/run_all.py --quick          # smoke run: fewer rounds and sizes
    python benchmarks/run_all.py --only optimizers compile

Made to spend a few minutes on a machine with a GPU measuring, not setting up: it needs only this
checkout and the ``benchmarks`` extra (``pip install -e '.[benchmarks]'``, torch included for the
PyTorch peers; a CUDA build of torch on a GPU machine). JAX's default backend decides the device:
on a GPU the optimizer table compares with PyTorch's CUDA implementations, and the CPU-only
multi-output fusion comparison is skipped. Each benchmark runs in its own process with a time
limit; one that fails or times out is reported and the others still run. Results are written to
``benchmarks/results/<name>.<platform>.json`` (a GPU run adds ``*.gpu.json`` files next to the CPU
ones), and ``benchmarks/render.py`` regenerates ``docs/performance.md`` from all of them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def steps(quick: bool, platform: str) -> dict[str, tuple[list[str], dict[str, str]]]:
    """name -> (script and arguments, extra environment)."""
    q = ["--quick"] if quick else []
    out: dict[str, tuple[list[str], dict[str, str]]] = {
        "optimizers": (["bench_optimizers.py", *q, "--compile-leaves"], {}),
        "optimizers-mof": (
            [
                "bench_optimizers.py",
                *q,
                *("--multi-output-fusion", "both", "--shapes", "1x10M", "--compile-leaves"),
                *("--optimizers", "momentum", "nag", "adagrad", "rmsprop", "adadelta", "adam"),
            ],
            {},
        ),
        "compile": (
            ["bench_optimizers.py", "--shapes", "--compile-leaves"]
            + (["10", "100"] if quick else ["10", "100", "1000"]),
            {},
        ),
        "compile-mixed": (
            ["bench_optimizers.py", "--shapes", "--mixed-sizes", "--compile-leaves"]
            + (["10", "100"] if quick else ["10", "100", "1000"]),
            {},
        ),
        "packed": (["bench_packed.py"] + (["--leaves", "10", "100"] if quick else []), {}),
        "mainjob": (["bench_mainjob.py"] + (["--modes", "quick"] if quick else []), {}),
        "engine": (["bench_engine.py"] + (["--repeats", "3"] if quick else []), {}),
        "newton": (["bench_newton.py", *q], {"OPENBLAS_NUM_THREADS": "1"}),
        "curvature": (["bench_curvature.py", *q], {}),
    }
    if platform != "cpu":
        del out["optimizers-mof"]  # an XLA:CPU option; GPUs fuse multi-output loops anyway
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, not a measurement")
    parser.add_argument("--only", nargs="+", help="run only these benchmarks")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per benchmark")
    args = parser.parse_args()
    import jax

    platform = jax.default_backend()
    plan = steps(args.quick, platform)
    unknown = set(args.only or []) - set(plan)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {sorted(plan)}")
    failed = []
    for name, (command, env) in plan.items():
        if args.only and name not in args.only:
            continue
        print(f"\n=== {name} ({platform}): python benchmarks/{' '.join(command)}", flush=True)
        start = time.perf_counter()
        try:
            code = subprocess.run(
                [sys.executable, str(HERE / command[0]), *command[1:]],
                env=dict(os.environ, **env),
                timeout=args.timeout,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            code = -1
        print(f"=== {name}: exit {code} after {time.perf_counter() - start:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    subprocess.run([sys.executable, str(HERE / "render.py")], check=True)
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
