"""What the experiments read off a curve: the first step at which it reaches a level."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["first_reach"]


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
