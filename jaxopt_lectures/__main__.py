"""Command line: ``python -m jaxopt_lectures`` (also installed as ``jaxopt-lectures``)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Run the demonstration; return the process exit code."""
    parser = argparse.ArgumentParser(
        prog="jaxopt-lectures",
        description=(
            "Train the same MLP on scikit-learn's bundled digits with each optimizer of the "
            "lecture (SGD with a decaying rate, momentum, NAG, AdaGrad, RMSprop, AdaDelta, Adam) "
            "and print the loss going down."
        ),
    )
    parser.add_argument("--epochs", type=int, default=10, help="epochs per optimizer (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed for data split and init")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")

    from jaxopt_lectures._demo import run_demo

    run_demo(epochs=args.epochs, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
