"""Run one registered experiment and turn what it returns into a
:class:`~jaxopt_lectures.experiments.record.RunRecord`.

``compute`` -> ``figure`` (saved into a folder) -> ``claims`` and ``summarize``: the only place
that calls an experiment's parts. A failure in any part gives a failed record with the error and
its traceback, never an exception (except ``KeyboardInterrupt``, which the CLI handles).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

from jaxopt_lectures.compile_policy import quick_compiles
from jaxopt_lectures.experiments.api import Config, Experiment, Figure
from jaxopt_lectures.experiments.record import Json, RunKey, RunRecord, jsonable

__all__ = ["Computed", "compute_experiment", "run_experiment", "save_figures"]


def save_figures(figures: Figure | tuple[Figure, ...], folder: Path) -> tuple[str, ...]:
    """Save each figure atomically into ``folder`` (a GIF for an animation); return the names."""
    from jaxopt_lectures.experiments import figures as drawing

    names = []
    for fig in (figures,) if isinstance(figures, Figure) else figures:
        path = folder / fig.filename
        if fig.animation is None:
            names.append(drawing.save(fig.figure, path))
        else:
            a = fig.animation
            names.append(drawing.save_animation(fig.figure, a.draw_frame, a.frames, path, a.fps))
    return tuple(names)


class Computed(NamedTuple):
    """What an experiment's ``compute`` gave: its result, or the error and its traceback; when
    it started and how many seconds it took."""

    result: Any
    error: str | None
    traceback: str
    seconds: float
    started_at: str


def compute_experiment(experiment: Experiment[Any], config: Config, seed: int) -> Computed:
    """Call ``experiment.compute(config, seed)``; an exception becomes a :class:`Computed` with
    the error (any thread may call this: it draws nothing). In a quick run (``config.quick``) the
    experiment's short programs compile with the quick options
    (:func:`jaxopt_lectures.compile_policy.quick_compiles`, for this call only)."""
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    start = time.perf_counter()
    try:
        with quick_compiles(config.quick):
            result = experiment.compute(config, seed)
    except Exception as err:  # one experiment failing must not lose the others
        error, trace = f"{type(err).__name__}: {err}", traceback.format_exc()
        return Computed(None, error, trace, time.perf_counter() - start, started_at)
    return Computed(result, None, "", time.perf_counter() - start, started_at)


def run_experiment(
    experiment: Experiment[Any],
    config: Config,
    key: RunKey,
    *,
    folder: Path,
    data: str,
    environment: Mapping[str, Json],
    computed: Computed | None = None,
) -> RunRecord:
    """Run ``experiment`` with ``config`` and ``key.seed``; figures go into ``folder``.

    ``computed`` is the result of :func:`compute_experiment` when it ran already (in another
    thread); the figures, claims and summary are made here, in the calling thread. Returns a good
    record (claims, headlines, numbers, settings, figure names, wall and compile time; the wall
    time is the compute's plus the drawing's) or a failed one (the error in one line and the
    traceback).
    """
    if computed is None:
        computed = compute_experiment(experiment, config, key.seed)
    start = time.perf_counter()
    # What every outcome shares; the failed or good record fills in the rest.
    begun = RunRecord(
        experiment=experiment.name,
        key=key,
        status="failed",
        data=data,
        started_at=computed.started_at,
        finished_at=computed.started_at,  # stamped again when the record is committed
        wall_time_s=0.0,
        environment=environment,
    )
    error, trace, result = computed.error, computed.traceback, computed.result
    if error is None:
        try:
            names = save_figures(experiment.figure(result), folder)
            config.advance(1)
            claims = experiment.claims(result)
            summary = experiment.summarize(result)
        except Exception as err:  # one experiment failing must not lose the others
            error, trace = f"{type(err).__name__}: {err}", traceback.format_exc()
    wall = computed.seconds + time.perf_counter() - start
    if error is not None:
        return replace(begun, wall_time_s=wall, error=error, traceback=trace)
    return replace(
        begun,
        status="ok",
        wall_time_s=wall,
        compile_time_s=sum(t.compile_s for t in result.timings),
        figures=names,
        headlines=tuple((str(k), str(v)) for k, v in summary.headlines),
        claims=tuple(claims),
        settings=jsonable(summary.settings),
        numbers=jsonable(summary.numbers),
    )
