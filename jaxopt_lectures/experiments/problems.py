"""The experiments' 2-D test problems: :mod:`jaxopt_lectures.problems`, where they are defined
(below both apps, the optimizer playground uses them too); this module keeps the import path
``jaxopt_lectures.experiments.problems`` working."""

from __future__ import annotations

from jaxopt_lectures.problems import (
    HIMMELBLAU_MINIMA,
    PROBLEMS,
    Problem,
    beale,
    himmelblau,
    quadratic,
    rosenbrock,
    saddle,
)

__all__ = [
    "HIMMELBLAU_MINIMA",
    "PROBLEMS",
    "Problem",
    "beale",
    "himmelblau",
    "quadratic",
    "rosenbrock",
    "saddle",
]
