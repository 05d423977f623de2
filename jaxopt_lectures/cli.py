"""The command line above both apps: ``python -m jaxopt_lectures [list | run | playground]``.

This module parses the arguments and turns outcomes into exit codes; the work is done below it,
by the experiments' run session (:mod:`~jaxopt_lectures.experiments.session`, given a typed
:class:`~jaxopt_lectures.experiments.session.RunOptions` and the experiments to choose from) and
by the optimizer playground (:func:`~jaxopt_lectures.playground.page.build`, whose page ``run`` also
writes).

Exit codes: 0 when every requested experiment ran (or had already run: it is skipped); 1 when an
experiment failed (the others still run; the report shows the failure next to the last good
result) or its result could not be written (a full disk: ``results.json`` keeps its previous
content and the run stops); 2 when the run could not start (a bad argument such as ``--seed -1``,
an unknown experiment name, an output folder that cannot be written, a missing optional
dependency, an unreadable ``--data`` file); 130 when interrupted by Ctrl-C (SIGINT) or SIGTERM
(the finished experiments are kept). Errors are one line on stderr that says what to do, never a
traceback. How results are stored and merged: :mod:`~jaxopt_lectures.experiments.store`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from jaxopt_lectures._app_common import PLAYGROUND_FILE, PROG, compilation_cache, signals_handled

if TYPE_CHECKING:
    from jaxopt_lectures.experiments.api import Experiment

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Apps",
    "exit_process",
    "main",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEFAULT_OUT = "lecture-results"


class Apps(NamedTuple):
    """What the command line runs: the experiments to choose from and the playground's
    ``build(out_dir)`` (``None``: the registry's experiments, the real playground). The tests
    pass stand-ins."""

    experiments: Mapping[str, Experiment[Any]] | None = None
    playground: Callable[..., Path] | None = None

    def registry(self) -> Mapping[str, Experiment[Any]]:
        """The experiments (importing the registry, and with it JAX, only when needed)."""
        if self.experiments is not None:
            return self.experiments
        from jaxopt_lectures.experiments.registry import EXPERIMENTS

        return EXPERIMENTS

    def playground_build(self) -> Callable[..., Path]:
        """The playground's ``build``."""
        if self.playground is not None:
            return self.playground
        from jaxopt_lectures.playground import build

        return build


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error contract: one line on stderr, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _bounded(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer in [{low}, {high}], got {text!r}")
        return value

    return parse


def _run_arguments(run: argparse.ArgumentParser) -> None:
    from jaxopt_lectures.experiments.session import JOBS_MAX, SEED_MAX, default_jobs

    run.add_argument("names", nargs="*", metavar="NAME", help="experiments to run (see 'list')")
    run.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    run.add_argument(
        "--quick",
        action="store_true",
        help="smaller settings: every claim measured in about half the full run's time "
        "(times in docs/performance.md)",
    )
    run.add_argument(
        "--seed",
        type=_bounded(0, SEED_MAX),
        default=0,
        help=f"base seed of the data split and the runs, in [0, {SEED_MAX}] (default: 0)",
    )
    run.add_argument("--force", action="store_true", help="rerun experiments that already finished")
    run.add_argument(
        "--data",
        metavar="FILE.npz",
        help="your own classification data: an .npz with arrays X (n, features) and y (n,)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument(
        "--jobs",
        type=_bounded(1, JOBS_MAX),
        default=default_jobs(),
        help="experiments computed at once, each compiling on a core of its own; the numbers do "
        "not depend on it (default: the usable cores, at most 4)",
    )
    run.add_argument(
        "--no-cache",
        action="store_true",
        help="do not keep compiled programs in JAX's persistent cache "
        "($JAXOPT_LECTURES_CACHE, default ~/.cache/jaxopt_lectures/xla), which makes reruns faster",
    )


def _at_least_1(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _playground_arguments(page: argparse.ArgumentParser) -> None:
    page.add_argument("--out", default=DEFAULT_OUT, help="output folder")
    page.add_argument("--steps", type=_at_least_1, default=None, help="steps per trajectory")
    page.add_argument("--starts", type=_at_least_1, default=None, help="start points per axis")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=(
            "Reproduce the lecture 'Learning as Optimization': every claim as an experiment with "
            "a figure and numbers, written to an output folder (results.json, report.md, "
            "report.html, PNG figures, an animated GIF). Offline: the data is scikit-learn's "
            "bundled digits set. Without a command: 'run' with the defaults."
        ),
        epilog="Exit codes: 0 all ran, 1 an experiment failed, 2 could not start, 130 interrupted "
        "(Ctrl-C or SIGTERM).",
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("list", help="list the experiments")
    _playground_arguments(
        sub.add_parser(
            "playground",
            help="write the optimizer playground (one offline HTML page; --help for its options)",
            description="Write the optimizer playground, one self-contained HTML page.",
        )
    )
    _run_arguments(
        sub.add_parser("run", help="run experiments (all by default) and write the results")
    )
    return parser


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


def _list(apps: Apps) -> int:
    experiments = apps.registry()
    width = max(map(len, experiments))
    for name, e in experiments.items():
        print(f"{name:<{width}}  {e.title}  [lecture: {e.section}]")
        print(f"{'':<{width}}  {e.summary}")
    return EXIT_OK


def _run(args: argparse.Namespace, apps: Apps) -> int:
    from jaxopt_lectures.experiments import session

    options = session.RunOptions(
        out=Path(args.out),
        names=tuple(args.names),
        quick=args.quick,
        seed=args.seed,
        force=args.force,
        data=args.data,
        progress=not args.no_progress,
        jobs=args.jobs,
    )
    page = session.SidePage(
        "playground", "the optimizer playground", PLAYGROUND_FILE, apps.playground_build()
    )
    cache = contextlib.nullcontext() if args.no_cache else compilation_cache()
    try:
        with cache:
            outcome = session.run(options, apps.registry(), side_page=page)
    except session.UsageError as err:
        _error(str(err))
        return EXIT_USAGE
    codes = {
        session.Outcome.OK: EXIT_OK,
        session.Outcome.FAILED: EXIT_FAILED,
        session.Outcome.INTERRUPTED: EXIT_INTERRUPTED,
    }
    return codes[outcome]


def _playground(args: argparse.Namespace, apps: Apps) -> int:
    """``playground [--out DIR] [--steps N] [--starts N]``: write the page with JAX's persistent
    compilation cache on, as for ``run``; print where, how large and how long it took."""
    kwargs = {}
    if args.steps is not None:
        kwargs["num_steps"] = args.steps
    if args.starts is not None:
        kwargs["start_grid"] = args.starts
    timings: dict[str, float] = {}
    build = apps.playground_build()
    try:
        with compilation_cache():
            path = build(Path(args.out), timings=timings, **kwargs)
    except OSError as err:
        _error(f"cannot write to '{args.out}' ({err.strerror or err}); choose another with --out")
        return EXIT_USAGE
    print(
        f"Wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {timings['total_s']:.1f} s "
        f"(trajectories {timings['grids_s']:.1f} s, page {timings['page_s']:.1f} s)",
        flush=True,
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None, *, apps: Apps | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run, and return the exit code. ``apps`` says
    what runs (default: the registry's experiments and the real playground)."""
    apps = Apps() if apps is None else apps
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["run", *argv]
    noted: list[bool] = []
    try:
        # SIGINT and SIGTERM raise KeyboardInterrupt and are noted: an interrupt that Python drops
        # (raised inside a finalizer) still makes the exit code 130.
        with signals_handled(lambda: noted.append(True), interrupt=True):
            args = _parser().parse_args(argv)
            if args.command == "list":
                code = _list(apps)
            elif args.command == "playground":
                code = _playground(args, apps)
            else:
                code = _run(args, apps)
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    if noted and code != EXIT_INTERRUPTED:  # an interrupt Python dropped: the run went on
        _error("interrupted; what finished is kept")
        return EXIT_INTERRUPTED
    return code


def exit_process(code: int) -> NoReturn:
    """End this process with ``code``, as the program's last step (``python -m jaxopt_lectures``).

    An interrupted or failed run returns while experiments computing ahead, or the playground
    page, may still be inside XLA in threads of their own. Python's shutdown would then stop
    those threads inside XLA's C++ code, which aborts the process (exit code 134 instead of 130
    or 1). So when such a thread is still running, the output is flushed and the process ends at
    once (``os._exit``): everything the run kept is already committed to disk.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    if any(t.is_alive() for t in threading.enumerate() if t is not threading.main_thread()):
        os._exit(code)
    sys.exit(code)
