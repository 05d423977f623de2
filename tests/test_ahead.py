"""Experiments computed ahead (``jaxopt_lectures.experiments.ahead.Ahead``): results in order,
never more than ``jobs`` computing at once, an exclusive one alone, errors handed to the caller,
and ``--jobs`` on the command line."""

from __future__ import annotations

import threading
import time

import pytest

from jaxopt_lectures.experiments.ahead import Ahead


class Recorder:
    """A stand-in compute that notes which names run at the same time."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.lock = threading.Lock()
        self.running: set[str] = set()
        self.overlaps: list[frozenset[str]] = []
        self.threads: dict[str, str] = {}
        self.seconds = seconds

    def __call__(self, name: str) -> str:
        with self.lock:
            self.running.add(name)
            self.overlaps.append(frozenset(self.running))
            self.threads[name] = threading.current_thread().name
        time.sleep(self.seconds)
        with self.lock:
            self.running.discard(name)
        return name.upper()


NAMES = ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_results_in_order_and_at_most_jobs_at_once(jobs: int) -> None:
    rec = Recorder()
    ahead = Ahead(NAMES, rec, exclusive=lambda n: False, jobs=jobs)
    assert [ahead.result(n) for n in NAMES] == [n.upper() for n in NAMES]
    assert max(map(len, rec.overlaps)) <= jobs
    if jobs > 1:
        assert max(map(len, rec.overlaps)) > 1  # the next one computed while one was taken


def test_jobs_1_computes_in_the_calling_thread() -> None:
    rec = Recorder(seconds=0.0)
    ahead = Ahead(NAMES, rec, exclusive=lambda n: False, jobs=1)
    for n in NAMES:
        ahead.result(n)
    assert set(rec.threads.values()) == {threading.current_thread().name}


def test_an_exclusive_name_computes_alone() -> None:
    rec = Recorder()
    ahead = Ahead(NAMES, rec, exclusive=lambda n: n == "c", jobs=3)
    assert [ahead.result(n) for n in NAMES] == [n.upper() for n in NAMES]
    assert all(len(o) == 1 for o in rec.overlaps if "c" in o)
    assert max(map(len, rec.overlaps)) > 1


def test_an_error_comes_back_from_result() -> None:
    def compute(name: str) -> str:
        if name == "b":
            raise RuntimeError("boom")
        return name

    ahead = Ahead(NAMES, compute, exclusive=lambda n: False, jobs=2)
    assert ahead.result("a") == "a"
    with pytest.raises(RuntimeError, match="boom"):
        ahead.result("b")


def test_cancel_starts_nothing_more() -> None:
    rec = Recorder(seconds=0.0)
    ahead = Ahead(NAMES, rec, exclusive=lambda n: False, jobs=2)
    ahead.result("a")  # b and c start: two in flight
    ahead.cancel()
    assert ahead.done_soon("b", 5.0)  # started before the cancel
    assert ahead.result("b") == "B"
    time.sleep(0.05)
    assert "d" not in rec.threads


def test_jobs_must_be_positive() -> None:
    with pytest.raises(ValueError, match="jobs"):
        Ahead(NAMES, str.upper, exclusive=lambda n: False, jobs=0)
