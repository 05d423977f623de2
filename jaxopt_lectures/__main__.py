"""Command line: ``python -m jaxopt_lectures`` (also installed as ``jaxopt-lectures``).

Reproduces the lecture: ``python -m jaxopt_lectures run --out lecture-results`` (``--quick`` for
smaller settings, ``list`` for the experiments). See
:mod:`jaxopt_lectures.experiments.cli`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    from jaxopt_lectures.experiments.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
