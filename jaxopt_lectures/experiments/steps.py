"""The experiments of one run, computed ahead and committed in order.

:class:`Steps` keeps up to ``jobs`` experiments' ``compute`` running at once
(:class:`~jaxopt_lectures.experiments.ahead.Ahead`), then draws and commits each, in the run's
order, in the calling thread, with SIGINT and SIGTERM held back while a record is committed (so
no record is ever half drawn or half committed). The run session
(:mod:`~jaxopt_lectures.experiments.session`) drives it.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from jaxopt_lectures.experiments.ahead import Ahead
from jaxopt_lectures.experiments.api import Config, Experiment
from jaxopt_lectures.experiments.record import Json, RunKey, RunRecord
from jaxopt_lectures.experiments.runner import compute_experiment, run_experiment
from jaxopt_lectures.experiments.store import Results, ResultsStore

__all__ = ["RunContext", "Steps", "interrupts_noted"]


class RunContext(NamedTuple):
    """What every step of a run shares: the experiments, the run's key, the data (its factory
    and description), whether it is quick, how many compute at once, progress bars on or off, the
    store, and how to render the reports."""

    experiments: Mapping[str, Experiment[Any]]
    key: RunKey
    data_factory: Any
    data_description: str
    jobs: int
    progress: bool
    store: ResultsStore
    render: Callable[[Results], None]


def _progress(name: str, total: int, enabled: bool) -> Any:
    from jaxopt_lectures.experiments._deps import require

    tqdm = require("tqdm").tqdm
    return tqdm(total=total, desc=f"{name:<20}", disable=not enabled, leave=True, file=sys.stderr)


class Steps:
    """The experiments of one run: computed ahead (``jobs`` at once), then drawn and committed
    one by one in the calling thread, with interrupts held back while a record is committed."""

    def __init__(
        self, run: RunContext, environment: Mapping[str, Json], names: Sequence[str]
    ) -> None:
        self.run, self.environment, self.names = run, environment, names
        self.progress_on = run.progress and sys.stderr.isatty()
        self.configs: dict[str, Config] = {}
        self.bars: dict[str, Any] = {}
        self.pending_interrupt = False
        self.ahead = Ahead(
            names, self._compute, exclusive=lambda n: run.experiments[n].exclusive, jobs=run.jobs
        )

    def _compute(self, name: str) -> Any:
        experiment = self.run.experiments[name]
        bar = self.bars[name] = _progress(name, experiment.stages + 1, self.progress_on)
        config = Config(self.run.key.mode == "quick", self.run.data_factory, bar.update)
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

    def _commit(self, name: str, computed: Any) -> RunRecord:
        run = self.run
        with run.store.staging() as staged:
            try:
                record = run_experiment(
                    run.experiments[name],
                    self.configs[name],
                    run.key,
                    folder=staged,
                    data=run.data_description,
                    environment=self.environment,
                    computed=computed,
                )
            finally:
                self.bars[name].close()
            return run.store.commit(record, staged, run.render)


@contextlib.contextmanager
def _interrupts_held(steps: Steps) -> Iterator[None]:
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


@contextlib.contextmanager
def interrupts_noted(steps: Steps) -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM set ``steps.pending_interrupt`` and raise
    ``KeyboardInterrupt``. Python drops an exception raised while a finalizer or a callback runs
    (it prints "Exception ignored in ..."); the flag still stops the run at the next experiment.
    Only the main thread can install handlers; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        steps.pending_interrupt = True
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
