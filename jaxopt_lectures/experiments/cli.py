"""The main job's command line: ``python -m jaxopt_lectures [list | run ... | playground ...]``.

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
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from jaxopt_lectures.experiments.record import Json, Mode, RunKey, RunRecord

if TYPE_CHECKING:
    from jaxopt_lectures.experiments.data import Dataset
    from jaxopt_lectures.experiments.store import ResultsStore

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEFAULT_OUT = "lecture-results"
SEED_MAX = 2**31 - 1  # the runs use seed, seed + 1, ... as uint32 PRNG seeds


class UsageError(Exception):
    """A problem that stops the run before it starts; the message says what to do."""


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error contract: one line on stderr, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, {SEED_MAX}], got {text!r}")
    return value


def _default_jobs() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, cores or 1))


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"must be an integer in [1, 64], got {text!r}")
    return value


def _names() -> list[str]:
    from jaxopt_lectures.experiments.registry import EXPERIMENTS

    return list(EXPERIMENTS)


def _run_arguments(run: argparse.ArgumentParser) -> None:
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
        type=_seed,
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
        type=_jobs,
        default=_default_jobs(),
        help="experiments computed at once, each compiling on a core of its own; the numbers do "
        "not depend on it (default: the usable cores, at most 4)",
    )
    run.add_argument(
        "--no-cache",
        action="store_true",
        help="do not keep compiled programs in JAX's persistent cache "
        "($JAXOPT_LECTURES_CACHE, default ~/.cache/jaxopt_lectures/xla), which makes reruns faster",
    )


class Subcommand(NamedTuple):
    """A subcommand: its name, one line of help, its arguments, and what runs it (returning the
    exit code). Add one to :data:`SUBCOMMANDS` to extend the command line."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jaxopt-lectures",
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
    for command in SUBCOMMANDS:
        command.add_arguments(sub.add_parser(command.name, help=command.help))
    return parser


def _error(message: str) -> None:
    print(f"jaxopt-lectures: error: {message}", file=sys.stderr, flush=True)


def _warn(message: str) -> None:
    print(f"jaxopt-lectures: warning: {message}", file=sys.stderr, flush=True)


def _check_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise UsageError(
            f"cannot write to the output folder '{out}' ({reason}); choose another with --out DIR"
        ) from err


class DataChoice(NamedTuple):
    """The data of a run: how to build it, a description for the report, a content hash."""

    factory: Callable[[bool], Dataset] | None
    description: str
    content_hash: str


def _data_choice(path: str | None, seed: int) -> DataChoice:
    from jaxopt_lectures.experiments.data import (
        NPZ_FORMAT,
        content_hash,
        digits_arrays,
        load_npz,
        make_dataset,
    )

    if path is None:
        X, y = digits_arrays()
        return DataChoice(
            None, "digits (scikit-learn's bundled set), split 60/20/20", content_hash(X, y)
        )
    try:
        X, y = load_npz(path)
    except ValueError as err:
        raise UsageError(f"--data: {err}") from err
    try:
        make_dataset(X, y, seed=seed)  # validate now, before any experiment runs
    except ValueError as err:
        raise UsageError(f"cannot use --data '{path}' ({err}); {NPZ_FORMAT}") from err

    def factory(standardize: bool) -> Dataset:
        return make_dataset(X, y, seed=seed, standardize=standardize)

    return DataChoice(factory, f"{path} ({len(X)} examples)", content_hash(X, y))


@contextlib.contextmanager
def _compilation_cache() -> Iterator[None]:
    """While the block runs, keep compiled XLA programs on disk: a rerun (``--force``, another
    seed) skips most of the compile time, which dominates a short run on a CPU. JAX's settings are
    restored afterwards, so calling :func:`main` from Python leaves the caller's JAX as it was.
    Best effort: no cache if the folder cannot be made."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "jaxopt_lectures"
    folder = Path(os.environ.get("JAXOPT_LECTURES_CACHE", default / "xla"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        yield
        return
    import jax

    # Every program, however quick to compile: most of the main job's programs compile in under
    # the default threshold of a second, and together they are most of a warm run's compile time.
    settings = {
        "jax_compilation_cache_dir": str(folder),
        "jax_persistent_cache_min_compile_time_secs": 0.0,
    }
    previous = {name: getattr(jax.config, name) for name in settings}
    for name, value in settings.items():
        jax.config.update(name, value)
    try:
        yield
    finally:
        for name, value in previous.items():
            jax.config.update(name, value)


def _progress(name: str, total: int, enabled: bool) -> Any:
    from jaxopt_lectures.experiments._deps import require

    tqdm = require("tqdm").tqdm
    return tqdm(total=total, desc=f"{name:<20}", disable=not enabled, leave=True, file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from jaxopt_lectures.experiments._deps import INSTALL_HINT, missing

    names = _names()
    unknown = [n for n in args.names if n not in names]
    if unknown:
        raise UsageError(
            f"unknown experiment {', '.join(repr(n) for n in unknown)}; choose from: "
            f"{', '.join(names)} (see 'jaxopt-lectures list')"
        )
    absent = missing()
    if absent:
        raise UsageError(f"missing optional dependencies {', '.join(absent)}: {INSTALL_HINT}")
    selected = [n for n in names if n in args.names] if args.names else names
    out = Path(args.out)
    _check_out_dir(out)
    data = _data_choice(args.data, args.seed)
    cache = contextlib.nullcontext() if args.no_cache else _compilation_cache()
    with cache, _sigterm_as_interrupt():
        return _execute(Invocation(out, selected, args, data))


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM (``kill``, a batch system's time limit) interrupts like
    Ctrl-C: the finished experiments are kept, one line is printed, the exit code is 130. The
    previous handler is restored afterwards. Only the main thread can install handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Invocation(NamedTuple):
    """One ``run`` command: where, which experiments, the parsed arguments, the data."""

    out: Path
    selected: list[str]
    args: argparse.Namespace
    data: DataChoice

    @property
    def key(self) -> RunKey:
        import jaxopt_lectures

        mode: Mode = "quick" if self.args.quick else "full"
        return RunKey(
            mode, int(self.args.seed), self.data.content_hash, jaxopt_lectures.__version__
        )


def _execute(run: Invocation) -> int:
    """Run the selected experiments, committing each record as it finishes, in order; up to
    ``--jobs`` experiments compute at once (:class:`~jaxopt_lectures.experiments.ahead.Ahead`)."""
    from jaxopt_lectures.experiments import report
    from jaxopt_lectures.experiments.store import ResultsStore

    start = time.perf_counter()
    store = ResultsStore(run.out, warn=_warn)
    store.prepare()
    stored = store.load()
    environment: dict[str, Json] = {
        "command": report.command_line(),
        "versions": report.versions(),
        "machine": report.machine_info(),
    }
    print(
        f"Writing to {run.out}/ ({run.key.mode} run, seed {run.key.seed}, "
        f"{len(run.selected)} experiments; data: {run.data.description})",
        flush=True,
    )
    playground = _playground(run)
    failed: list[str] = []
    skip = {n for n in run.selected if not run.args.force and stored.done(n, run.key, run.out)}
    steps = _Steps(run, store, environment, [n for n in run.selected if n not in skip])
    for position, name in enumerate(run.selected, 1):
        counter = f"[{position}/{len(run.selected)}] {name}"
        if name in skip:
            print(f"{counter}: already done, skipped (--force reruns)", flush=True)
            continue
        try:
            record = steps.finish(name)
        except KeyboardInterrupt:
            steps.ahead.cancel()
            _error(f"interrupted during '{name}'; finished experiments are kept in {run.out}/")
            return EXIT_INTERRUPTED
        except OSError as err:
            steps.ahead.cancel()
            _error(
                f"cannot write the results to {run.out / 'results.json'} "
                f"({err.strerror or err}); the file keeps its previous content: free space or "
                "choose another folder with --out"
            )
            return EXIT_FAILED
        if not _print_outcome(counter, record):
            failed.append(name)
    if steps.pending_interrupt:
        _error(f"interrupted after the last experiment; its results are kept in {run.out}/")
        return EXIT_INTERRUPTED
    if playground():
        steps.render_reports()  # now with the playground's link
    else:
        failed.append("playground")
    print(
        f"Done in {time.perf_counter() - start:.1f} s: {run.out / 'report.md'}, "
        f"{run.out / 'report.html'}, {run.out / 'results.json'}"
        + (f"; FAILED: {', '.join(failed)}" if failed else ""),
        flush=True,
    )
    return EXIT_FAILED if failed else EXIT_OK


def _print_outcome(counter: str, record: RunRecord) -> bool:
    """One line for a finished experiment (an error line for a failed one); whether it was
    good."""
    if not record.ok:
        _error(f"experiment '{record.experiment}' failed: {record.error}")
        return False
    held = sum(c.held for c in record.claims)
    print(
        f"{counter}: {record.wall_time_s:.1f} s, {held}/{len(record.claims)} claims held; "
        + "; ".join(f"{k}: {v}" for k, v in record.headlines[:2]),
        flush=True,
    )
    return True


def _playground(run: Invocation) -> Callable[[], bool]:
    """Start writing the optimizer playground into the output folder (unless it is there and no
    ``--force``); returns a function that waits for it and says whether it worked. With
    ``--jobs`` above 1 it is written in a thread of its own while the experiments compute (the
    caller renders the reports once more when it is done, to link it); a failure is one line,
    and the run goes on (exit code 1 at the end)."""
    from jaxopt_lectures.experiments.report import PLAYGROUND

    if not run.args.force and (run.out / PLAYGROUND).exists():
        return lambda: True
    outcome: list[bool] = []

    def write() -> None:
        try:
            from jaxopt_lectures.playground import build

            build(run.out)
        except Exception as err:  # the experiments must still run
            _error(f"the optimizer playground failed: {type(err).__name__}: {err}")
            outcome.append(False)
            return
        outcome.append(True)

    if run.args.jobs == 1:
        write()
        return lambda: outcome[0]
    thread = threading.Thread(target=write, name="playground", daemon=True)
    thread.start()

    def wait() -> bool:
        thread.join()
        return outcome[0]

    return wait


def _playground_command(options: Sequence[str]) -> int:
    """``playground [OPTIONS]``: the subcommand's own options (``--out``, ``--steps``, ...) go to
    :func:`jaxopt_lectures.playground.main` unparsed (``main`` hands them over before parsing),
    with JAX's persistent compilation cache on, as for ``run``."""
    from jaxopt_lectures.playground import main as playground_main

    with _compilation_cache():
        return playground_main(list(options), prog="jaxopt-lectures playground")


class _Steps:
    """The experiments of one run: computed ahead (``--jobs`` at once), then drawn and committed
    one by one in the calling thread, with interrupts held back while a record is committed."""

    def __init__(
        self,
        run: Invocation,
        store: ResultsStore,
        environment: Mapping[str, Json],
        names: Sequence[str],
    ) -> None:
        from jaxopt_lectures.experiments.ahead import Ahead
        from jaxopt_lectures.experiments.registry import EXPERIMENTS

        self.run, self.store, self.environment, self.names = run, store, environment, names
        self.progress_on = not run.args.no_progress and sys.stderr.isatty()
        self.configs: dict[str, Any] = {}
        self.bars: dict[str, Any] = {}
        self.pending_interrupt = False
        self.ahead = Ahead(
            names, self._compute, exclusive=lambda n: EXPERIMENTS[n].exclusive, jobs=run.args.jobs
        )

    def _compute(self, name: str) -> Any:
        from jaxopt_lectures.experiments.api import Config
        from jaxopt_lectures.experiments.registry import EXPERIMENTS
        from jaxopt_lectures.experiments.runner import compute_experiment

        experiment = EXPERIMENTS[name]
        bar = self.bars[name] = _progress(name, experiment.stages + 1, self.progress_on)
        config = Config(self.run.key.mode == "quick", self.run.data.factory, bar.update)
        self.configs[name] = config
        return compute_experiment(experiment, config, self.run.key.seed)

    def finish(self, name: str) -> RunRecord:
        """Wait for ``name``'s compute, draw its figures into a staging folder and commit its
        record (good or failed) with the reports; an interrupt that comes while the record is
        drawn and committed is raised at the next experiment."""
        if self.pending_interrupt:
            raise KeyboardInterrupt
        try:
            computed = self.ahead.result(name)
        except KeyboardInterrupt:
            if not self.ahead.done_soon(name, 0.5):
                raise  # still computing: interrupted during this one
            self.ahead.cancel()
            computed = self.ahead.result(name)
            self.pending_interrupt = True  # finished computing: keep it, stop after it
        with _interrupts_held(self):
            return self._commit(name, computed)

    def _render(self) -> Callable[[Any], None]:
        from jaxopt_lectures.experiments import report
        from jaxopt_lectures.experiments.registry import EXPERIMENTS

        headings = {
            n: report.Heading(e.title, e.section, e.summary) for n, e in EXPERIMENTS.items()
        }
        out = self.run.out
        return lambda results: report.write_reports(out, results, headings)

    def render_reports(self) -> None:
        """Render the reports again from what ``results.json`` holds (when at least one
        experiment ran), under the folder's lock."""
        if self.names:
            self.store.render(self._render())

    def _commit(self, name: str, computed: Any) -> RunRecord:
        from jaxopt_lectures.experiments.registry import EXPERIMENTS
        from jaxopt_lectures.experiments.runner import run_experiment

        with self.store.staging() as staged:
            try:
                record = run_experiment(
                    EXPERIMENTS[name],
                    self.configs[name],
                    self.run.key,
                    folder=staged,
                    data=self.run.data.description,
                    environment=self.environment,
                    computed=computed,
                )
            finally:
                self.bars[name].close()
            return self.store.commit(record, staged, self._render())


@contextlib.contextmanager
def _interrupts_held(steps: _Steps) -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM only set ``steps.pending_interrupt`` (raised at
    the next experiment), so that a record is never half drawn or half committed. Only the main
    thread can install handlers; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def hold(signum: int, frame: Any) -> None:
        steps.pending_interrupt = True

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _list(args: argparse.Namespace) -> int:
    del args  # no options
    from jaxopt_lectures.experiments.registry import EXPERIMENTS

    width = max(map(len, EXPERIMENTS))
    for name, e in EXPERIMENTS.items():
        print(f"{name:<{width}}  {e.title}  [lecture: {e.section}]")
        print(f"{'':<{width}}  {e.summary}")
    return EXIT_OK


SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand("list", "list the experiments", lambda parser: None, _list),
    Subcommand(
        "playground",
        "write the optimizer playground (one offline HTML page; --help for its options)",
        lambda parser: None,
        lambda args: _playground_command([]),
    ),
    Subcommand(
        "run", "run experiments (all by default) and write the results", _run_arguments, _run
    ),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run, and return the exit code."""
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["run", *argv]
    if argv[:1] == ["playground"]:  # options of its own: see jaxopt_lectures.playground.main
        return _playground_command(argv[1:])
    args = parser.parse_args(argv)
    handlers = {command.name: command.handler for command in SUBCOMMANDS}
    try:
        return handlers[args.command](args)
    except UsageError as err:
        _error(str(err))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
