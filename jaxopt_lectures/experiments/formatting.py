"""Numbers as the reports and claims write them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["fmt", "mean_std"]


def fmt(value: float, digits: int = 3) -> str:
    """A number for a report: ``3 sig. digits``, ``"never"`` for inf, ``"diverged"`` for NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "diverged"
    if isinstance(value, float) and math.isinf(value):
        return "never"
    return f"{value:.{digits}g}"


def mean_std(values: Sequence[float] | np.ndarray) -> str:
    """``"mean ± std"`` of finite values (3 significant digits)."""
    arr = np.asarray(values, np.float64).ravel()
    if arr.size == 1:
        return fmt(float(arr[0]))
    return f"{fmt(float(np.mean(arr)))} ± {fmt(float(np.std(arr)), 2)}"
