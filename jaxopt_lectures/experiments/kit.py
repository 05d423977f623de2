"""Helpers for experiments written as ``compute(config, key) -> result``, ``figure(result)``,
``claims(result)``: timing a compiled program, fitting a power law, Spearman's correlation, and the
adapter that turns the three pieces into the CLI's
:class:`~jaxopt_lectures.experiments.base.Result`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from jaxopt_lectures.experiments import engine, figures
from jaxopt_lectures.experiments.base import Claim, Context, Result, jsonable

__all__ = ["as_numbers", "compiled_run", "fitted_exponent", "rank_correlation", "to_result"]


def compiled_run(what: str, jitted: Any, *args: Any) -> tuple[Any, float, float]:
    """Compile and run ``jitted`` on ``args`` (recorded in the engine's timings, so the CLI reports
    the compile share); return ``(outputs as NumPy, compile seconds, run seconds)``."""
    out = engine.timed(what, jitted, *args)
    _, compile_s, run_s = engine.TIMINGS[-1]
    return engine._to_numpy(out), compile_s, run_s


def fitted_exponent(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """The slope of the least-squares line through ``(log x, log y)``: the p of ``y ~ c x^p``.

    Example:
      >>> from jaxopt_lectures.experiments.kit import fitted_exponent
      >>> round(fitted_exponent([1, 2, 4, 8], [3, 24, 192, 1536]), 6)
      3.0
    """
    lx, ly = np.log(np.asarray(x, np.float64)), np.log(np.asarray(y, np.float64))
    if lx.shape != ly.shape or lx.size < 2:
        raise ValueError(f"need two equal-length series of >= 2 points, got {lx.shape}, {ly.shape}")
    return float(np.polyfit(lx, ly, 1)[0])


def rank_correlation(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman's rank correlation (Pearson's correlation of the ranks; ties get their mean rank).

    Example:
      >>> from jaxopt_lectures.experiments.kit import rank_correlation
      >>> rank_correlation([1.0, 2.0, 3.0, 4.0], [10.0, 40.0, 30.0, 100.0])
      0.8
    """
    ra, rb = _ranks(np.asarray(a, np.float64)), _ranks(np.asarray(b, np.float64))
    if ra.shape != rb.shape or ra.size < 3:
        raise ValueError("need two equal-length series of >= 3 points")
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    return np.bincount(inverse, weights=ranks)[inverse] / counts[inverse]  # ties: mean rank


def as_numbers(result: Any) -> dict[str, Any]:
    """A result dataclass as a JSON-ready dict (arrays become lists, inf/NaN strings)."""
    return jsonable({f.name: getattr(result, f.name) for f in dataclasses.fields(result)})


def to_result(
    ctx: Context,
    result: Any,
    *,
    figure: Callable[[Any], Any],
    claims: Callable[[Any], list[Claim]],
    file_name: str,
    headlines: list[tuple[str, str]],
    config: Any,
) -> Result:
    """The CLI's :class:`Result` for ``result``: its numbers, its figure saved under ``file_name``
    in the run's folder, its claims, ``headlines``, and the config (a dataclass) as settings."""
    name = figures.save(figure(result), ctx.figure_path(file_name))
    return Result(
        numbers=as_numbers(result),
        figures=[name],
        headlines=headlines,
        claims=claims(result),
        settings=jsonable(dataclasses.asdict(config)),
    )
