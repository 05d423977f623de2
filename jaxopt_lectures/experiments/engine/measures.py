"""What the experiments read off their curves: the first step at which one reaches a level, the
exponent of a power law, and Spearman's rank correlation of two series."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["first_reach", "fitted_exponent", "rank_correlation"]


def first_reach(
    curve: np.ndarray, target: float, steps: np.ndarray | None = None, *, below: bool = False
) -> float:
    """The first entry of ``steps`` at which ``curve >= target`` (``curve <= target`` with
    ``below=True``, for a loss), or inf if it never does. ``steps`` defaults to the indices.

    Example:
      >>> import numpy as np
      >>> from jaxopt_lectures.experiments.engine import first_reach
      >>> first_reach(np.array([0.1, 0.5, 0.95, 0.9]), 0.9, np.array([0, 10, 20, 30]))
      20.0
      >>> first_reach(np.array([4.0, 1.0, 1e-7]), 1e-6, below=True)
      2.0
    """
    curve = np.asarray(curve)
    hits = np.nonzero(curve <= target if below else curve >= target)[0]
    if not len(hits):
        return math.inf
    return float(hits[0] if steps is None else steps[hits[0]])


def fitted_exponent(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """The slope of the least-squares line through ``(log x, log y)``: the p of ``y ~ c x^p``.

    Example:
      >>> from jaxopt_lectures.experiments.engine import fitted_exponent
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
      >>> from jaxopt_lectures.experiments.engine import rank_correlation
      >>> round(rank_correlation([1.0, 2.0, 3.0, 4.0], [10.0, 40.0, 30.0, 100.0]), 6)
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
