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
from typing import Any

from jaxopt_lectures.experiments.api import Config, Experiment, Figure
from jaxopt_lectures.experiments.record import Json, RunKey, RunRecord, jsonable

__all__ = ["run_experiment", "save_figures"]


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


def run_experiment(
    experiment: Experiment[Any],
    config: Config,
    key: RunKey,
    *,
    folder: Path,
    data: str,
    environment: Mapping[str, Json],
) -> RunRecord:
    """Run ``experiment`` with ``config`` and ``key.seed``; figures go into ``folder``.

    Returns a good record (claims, headlines, numbers, settings, figure names, wall and compile
    time) or a failed one (the error in one line and the traceback).
    """
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    start = time.perf_counter()
    # What every outcome shares; the failed or good record fills in the rest.
    begun = RunRecord(
        experiment=experiment.name,
        key=key,
        status="failed",
        data=data,
        started_at=started_at,
        finished_at=started_at,  # stamped again when the record is committed
        wall_time_s=0.0,
        environment=environment,
    )
    try:
        result = experiment.compute(config, key.seed)
        names = save_figures(experiment.figure(result), folder)
        config.advance(1)
        claims = experiment.claims(result)
        summary = experiment.summarize(result)
    except Exception as err:  # one experiment failing must not lose the others
        return replace(
            begun,
            wall_time_s=time.perf_counter() - start,
            error=f"{type(err).__name__}: {err}",
            traceback=traceback.format_exc(),
        )
    return replace(
        begun,
        status="ok",
        wall_time_s=time.perf_counter() - start,
        compile_time_s=sum(t.compile_s for t in result.timings),
        figures=names,
        headlines=tuple((str(k), str(v)) for k, v in summary.headlines),
        claims=tuple(claims),
        settings=jsonable(summary.settings),
        numbers=jsonable(summary.numbers),
    )
