"""One ``run`` of the main job: the selected experiments computed, drawn, committed and reported.

The command line (:mod:`jaxopt_lectures.cli`) parses the arguments into a :class:`RunOptions` and
calls :func:`run` with the experiments to choose from (the registry, or stand-ins in the tests)
and, optionally, a :class:`SidePage` to write into the folder while they compute (the optimizer
playground). :func:`run` returns an :class:`Outcome`; the command line turns it into the exit
code. Nothing here parses arguments or knows the other app.

Order of work: check the options and the data (a :class:`UsageError` before anything is
written), open the folder's :class:`~jaxopt_lectures.experiments.store.ResultsStore`, skip what is
done, compute up to ``jobs`` experiments at once and draw and commit each in order in the calling
thread, interrupts held while a record is committed
(:class:`~jaxopt_lectures.experiments.steps.Steps`).
"""

from __future__ import annotations

import enum
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from jaxopt_lectures._app_common import PROG, usable_cores
from jaxopt_lectures.experiments import report
from jaxopt_lectures.experiments.api import Experiment
from jaxopt_lectures.experiments.record import Json, RunKey, RunRecord
from jaxopt_lectures.experiments.steps import RunContext, Steps, interrupts_noted
from jaxopt_lectures.experiments.store import ResultsStore

if TYPE_CHECKING:
    from jaxopt_lectures.experiments.data import Dataset

__all__ = [
    "JOBS_MAX",
    "SEED_MAX",
    "Outcome",
    "RunOptions",
    "SidePage",
    "UsageError",
    "default_jobs",
    "run",
]

SEED_MAX = 2**31 - 1  # the runs use seed, seed + 1, ... as uint32 PRNG seeds
JOBS_MAX = 64


def default_jobs() -> int:
    """Experiments computed at once by default: the usable cores, at most 4."""
    return max(1, min(4, usable_cores()))


@dataclass(frozen=True)
class RunOptions:
    """What to run: the output folder, the experiments (``()``: all, in the registry's order),
    quick or full settings, the base seed, whether to rerun finished experiments, a ``.npz``
    data file (``None``: scikit-learn's digits), progress bars, how many compute at once."""

    out: Path
    names: tuple[str, ...] = ()
    quick: bool = False
    seed: int = 0
    force: bool = False
    data: str | None = None
    progress: bool = True
    jobs: int = default_jobs()

    def __post_init__(self) -> None:
        if not 0 <= self.seed <= SEED_MAX:
            raise ValueError(f"seed must be an integer in [0, {SEED_MAX}], got {self.seed}")
        if not 1 <= self.jobs <= JOBS_MAX:
            raise ValueError(f"jobs must be an integer in [1, {JOBS_MAX}], got {self.jobs}")


class Outcome(enum.Enum):
    """How a run ended: every experiment ran (or was done), one failed, or it was interrupted."""

    OK = "ok"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class UsageError(Exception):
    """A problem that stops the run before it starts; the message says what to do."""


class SidePage(NamedTuple):
    """A page written into the output folder beside the experiments (unless it is there already
    and the run is not forced): its short name (listed when it fails), what it is (for the error
    line), its file name and ``build(out_dir)``."""

    name: str
    description: str
    filename: str
    build: Callable[[Path], object]


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)


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
    from jaxopt_lectures.experiments import data

    if path is None:
        X, y = data.digits_arrays()
        return DataChoice(
            None, "digits (scikit-learn's bundled set), split 60/20/20", data.content_hash(X, y)
        )
    try:
        X, y = data.load_npz(path)
    except ValueError as err:
        raise UsageError(f"--data: {err}") from err
    try:
        data.make_dataset(X, y, seed=seed)  # validate now, before any experiment runs
    except ValueError as err:
        raise UsageError(f"cannot use --data '{path}' ({err}); {data.NPZ_FORMAT}") from err

    def factory(standardize: bool) -> Dataset:
        return data.make_dataset(X, y, seed=seed, standardize=standardize)

    return DataChoice(factory, f"{path} ({len(X)} examples)", data.content_hash(X, y))


def run(
    options: RunOptions,
    experiments: Mapping[str, Experiment[Any]],
    *,
    side_page: SidePage | None = None,
) -> Outcome:
    """Run ``options.names`` (all of ``experiments`` when empty) into ``options.out``.

    Raises :class:`UsageError` before anything is written for an unknown name, a missing optional
    dependency, an output folder that cannot be written or unusable data. While the experiments
    run (called from the main thread), SIGINT and SIGTERM stop the run with
    ``Outcome.INTERRUPTED``, the finished experiments kept (one that arrives while a record is
    committed takes effect after the commit); a ``KeyboardInterrupt`` before that propagates.
    Returns once the calling thread is done; experiments computing ahead, or the side page, may
    still be running in their own threads when the run stops early (see
    :func:`jaxopt_lectures.cli.exit_process`).
    """
    from jaxopt_lectures.experiments._deps import INSTALL_HINT, missing

    unknown = [n for n in options.names if n not in experiments]
    if unknown:
        raise UsageError(
            f"unknown experiment {', '.join(repr(n) for n in unknown)}; choose from: "
            f"{', '.join(experiments)} (see '{PROG} list')"
        )
    absent = missing()
    if absent:
        raise UsageError(f"missing optional dependencies {', '.join(absent)}: {INSTALL_HINT}")
    selected = [n for n in experiments if n in options.names] if options.names else [*experiments]
    _check_out_dir(options.out)
    data = _data_choice(options.data, options.seed)
    return _Session(options, experiments, selected, data).execute(side_page)


class _Session:
    """One run's state: the options, the experiments, the data, the store."""

    def __init__(
        self,
        options: RunOptions,
        experiments: Mapping[str, Experiment[Any]],
        selected: Sequence[str],
        data: DataChoice,
    ) -> None:
        import jaxopt_lectures

        self.options = options
        self.experiments = experiments
        self.selected = selected
        self.data = data
        self.out = options.out
        self.key = RunKey(
            "quick" if options.quick else "full",
            options.seed,
            data.content_hash,
            jaxopt_lectures.__version__,
        )
        self.store = ResultsStore(self.out, warn=_warn)
        self.stopped = Outcome.INTERRUPTED  # why _steps stopped the run early
        self.headings = {
            n: report.Heading(e.title, e.section, e.summary) for n, e in experiments.items()
        }

    def render(self, results: Any) -> None:
        report.write_reports(self.out, results, self.headings)

    def execute(self, side_page: SidePage | None) -> Outcome:
        start = time.perf_counter()
        self.store.prepare()
        stored = self.store.load()
        environment: dict[str, Json] = {
            "command": report.command_line(),
            "versions": report.versions(),
            "machine": report.machine_info(),
        }
        print(
            f"Writing to {self.out}/ ({self.key.mode} run, seed {self.key.seed}, "
            f"{len(self.selected)} experiments; data: {self.data.description})",
            flush=True,
        )
        page = self._side_page(side_page)
        force = self.options.force
        skip = {n for n in self.selected if not force and stored.done(n, self.key, self.out)}
        context = RunContext(
            self.experiments,
            self.key,
            self.data.factory,
            self.data.description,
            self.options.jobs,
            self.options.progress,
            self.store,
            self.render,
        )
        steps = Steps(context, environment, [n for n in self.selected if n not in skip])
        with interrupts_noted(steps):
            failed = self._steps(steps, skip)
            if failed is None:
                return self.stopped
            if steps.pending_interrupt:
                _error(
                    f"interrupted after the last experiment; its results are kept in {self.out}/"
                )
                return Outcome.INTERRUPTED
            if page is not None and side_page is not None:
                if not page():
                    failed.append(side_page.name)
                elif steps.names:
                    self.store.render(self.render)  # now with the page's link
            if steps.pending_interrupt:
                _error(f"interrupted at the end; the results are kept in {self.out}/")
                return Outcome.INTERRUPTED
        print(
            f"Done in {time.perf_counter() - start:.1f} s: {self.out / 'report.md'}, "
            f"{self.out / 'report.html'}, {self.out / 'results.json'}"
            + (f"; FAILED: {', '.join(failed)}" if failed else ""),
            flush=True,
        )
        return Outcome.FAILED if failed else Outcome.OK

    def _steps(self, steps: Steps, skip: set[str]) -> list[str] | None:
        """Finish every selected experiment in order (skipping ``skip``); the names that failed,
        or ``None`` when the run stops (interrupted, or results that cannot be written: then
        :attr:`stopped` says which)."""
        failed: list[str] = []
        for position, name in enumerate(self.selected, 1):
            counter = f"[{position}/{len(self.selected)}] {name}"
            if name in skip:
                print(f"{counter}: already done, skipped (--force reruns)", flush=True)
                continue
            try:
                record = steps.finish(name)
            except KeyboardInterrupt:
                steps.ahead.cancel()
                _error(f"interrupted during '{name}'; finished experiments are kept in {self.out}/")
                return None
            except OSError as err:
                steps.ahead.cancel()
                _error(
                    f"cannot write the results to {self.out / 'results.json'} "
                    f"({err.strerror or err}); the file keeps its previous content: free space or "
                    "choose another folder with --out"
                )
                self.stopped = Outcome.FAILED
                return None
            if not _print_outcome(counter, record):
                failed.append(name)
        return failed

    def _side_page(self, side_page: SidePage | None) -> Callable[[], bool] | None:
        """Start writing ``side_page`` into the folder (unless it is there and no ``--force``);
        returns a function that waits for it and says whether it worked. With ``jobs`` above 1
        it is written in a thread of its own while the experiments compute; a failure is one
        line, and the run goes on (it fails at the end)."""
        if side_page is None:
            return None
        if not self.options.force and (self.out / side_page.filename).exists():
            return lambda: True
        outcome: list[bool] = []

        def write() -> None:
            try:
                side_page.build(self.out)
            except Exception as err:  # the experiments must still run
                _error(f"{side_page.description} failed: {type(err).__name__}: {err}")
                outcome.append(False)
                return
            outcome.append(True)

        if self.options.jobs == 1:
            write()
            return lambda: outcome[0]
        thread = threading.Thread(target=write, name=side_page.name, daemon=True)
        thread.start()

        def wait() -> bool:
            thread.join()
            return outcome[0]

        return wait


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
