"""Compute the next experiments while the current one is drawn and committed.

Most of a short run's time is XLA compiling programs, and XLA:CPU compiles one program on one
core. :class:`Ahead` keeps up to ``jobs`` experiments' ``compute`` running at once, each in a
thread of its own (JAX's tracing, compiling and running release the GIL), in the run's order; the
caller takes the results in that order and draws the figures in its own thread (matplotlib is not
thread-safe). An experiment marked ``exclusive`` (it measures wall-clock time) computes with
nothing beside it. The numbers do not depend on ``jobs``: every experiment compiles and runs the
same programs on the same inputs.

Example:
  >>> from jaxopt_lectures.experiments.ahead import Ahead
  >>> ahead = Ahead(["a", "b"], lambda name: name.upper(), exclusive=lambda name: False, jobs=2)
  >>> ahead.result("a"), ahead.result("b")
  ('A', 'B')
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from typing import Generic, TypeVar

__all__ = ["Ahead"]

T = TypeVar("T")


class Ahead(Generic[T]):
    """``compute(name)`` for every name of ``names``, up to ``jobs`` at a time, in order.

    Args:
      names: the experiments, in the order their results are taken.
      compute: returns what the caller needs of one experiment (it should not raise: a raised
        exception comes back from :meth:`result`).
      exclusive: names that must compute alone (nothing else computing beside them).
      jobs: how many compute at once; 1 computes each in the calling thread when its result is
        asked for, as a plain loop would.
    """

    def __init__(
        self,
        names: Sequence[str],
        compute: Callable[[str], T],
        *,
        exclusive: Callable[[str], bool],
        jobs: int,
    ) -> None:
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        self._names = list(names)
        self._compute = compute
        self._exclusive = exclusive
        self._jobs = jobs
        self._futures: dict[str, Future[T]] = {}
        self._stopped = False

    def _start(self, name: str) -> None:
        future: Future[T] = Future()
        self._futures[name] = future

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(self._compute(name))
            except BaseException as err:  # handed to the caller by result()
                future.set_exception(err)

        # A daemon thread: an interrupted run exits without waiting for a compute in flight.
        threading.Thread(target=work, name=f"compute {name}", daemon=True).start()

    def _fill(self, position: int, asked: bool) -> None:
        """Start the names from ``position`` on, up to ``jobs`` in flight; an exclusive name
        starts only when its result is ``asked`` for (everything before it taken and drawn),
        and nothing starts beside it."""
        if self._stopped:
            return
        for name in self._names[position : position + self._jobs]:
            if name in self._futures:
                if self._exclusive(name):
                    return
                continue
            if self._exclusive(name) and not (asked and name == self._names[position]):
                return
            self._start(name)
            if self._exclusive(name):
                return

    def result(self, name: str) -> T:
        """The result of ``compute(name)`` (waiting for it); ``name`` must be the next name in
        order whose result was not taken yet."""
        position = self._names.index(name)
        if self._jobs == 1 or (self._stopped and name not in self._futures):
            return self._compute(name)
        self._fill(position, asked=True)
        out = self._futures[name].result()  # an interrupt here starts nothing more
        del self._futures[name]
        self._fill(position + 1, asked=False)
        return out

    def done_soon(self, name: str, seconds: float) -> bool:
        """Whether ``compute(name)``, started ahead, finishes within ``seconds`` (never with
        ``jobs=1``, where nothing computes ahead)."""
        future = self._futures.get(name)
        return future is not None and not wait([future], timeout=seconds).not_done

    def cancel(self) -> None:
        """Start nothing more (computes in flight finish in their daemon threads)."""
        self._stopped = True
