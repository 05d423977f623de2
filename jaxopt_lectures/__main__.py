"""Command line: ``python -m jaxopt_lectures`` (also installed as ``jaxopt-lectures``).

Reproduces the lecture: ``python -m jaxopt_lectures run --out lecture-results`` (``--quick`` for
smaller settings, ``list`` for the experiments). See :mod:`jaxopt_lectures.cli`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    from jaxopt_lectures.cli import main as cli_main

    return cli_main(argv)


def entry() -> NoReturn:
    """The program: run the command line with ``sys.argv[1:]`` and end the process with its exit
    code (:func:`jaxopt_lectures.cli.exit_process`)."""
    from jaxopt_lectures.cli import exit_process

    exit_process(main())


if __name__ == "__main__":
    entry()
