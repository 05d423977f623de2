"""The experiments of one run, computed ahead and committed in order.

:class:`Steps` keeps up to ``jobs`` experiments' ``compute`` running at once
(:class:`~jaxopt_lectures.experiments.ahead.Ahead`), then draws and commits each, in the run's
order, in the calling thread, with SIGINT and SIGTERM held back while a record is committed (so
no record is ever half drawn or half committed). The run session
(:mod:`~jaxopt_lectures.experiments.session`) drives it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from jaxopt_lectures._app_common import signals_handled
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

    def note_interrupt(self) -> None:
        """Stop the run at the next experiment (SIGINT or SIGTERM came)."""
        self.pending_interrupt = True

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
        # An interrupt while the record is drawn and committed only sets the flag: raised at the
        # next experiment, so no record is ever half drawn or half committed.
        with signals_handled(self.note_interrupt, interrupt=False):
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
def interrupts_noted(steps: Steps) -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM set ``steps.pending_interrupt`` and raise
    ``KeyboardInterrupt``; an interrupt Python drops (inside a finalizer) still stops the run at
    the next experiment through the flag."""
    with signals_handled(steps.note_interrupt, interrupt=True):
        yield
