"""Compile time and run time of the engine's programs, collected by whoever asks for them.

Every engine function that compiles a program takes an optional :class:`Timer`; an experiment
makes one, passes it to each call, and keeps ``timer.timings`` in its result, so the timings
travel with the result (nothing is kept in module-level state).
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import jax

__all__ = ["Timer", "Timing", "timed"]


class Timing(NamedTuple):
    """One compiled program: what it was, seconds to compile it, seconds to run it."""

    what: str
    compile_s: float
    run_s: float


class Timer:
    """Collects the :class:`Timing` of every program run through :func:`timed` with it.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxopt_lectures.experiments.engine import Timer, timed
      >>> timer = Timer()
      >>> float(timed("square", jax.jit(lambda x: x * x), jnp.float32(3.0), timer=timer))
      9.0
      >>> [t.what for t in timer.timings]
      ['square']
    """

    def __init__(self) -> None:
        self.timings: list[Timing] = []

    @property
    def compile_s(self) -> float:
        """The total compile time."""
        return sum(t.compile_s for t in self.timings)


def timed(what: str, jitted: Any, *args: Any, timer: Timer | None = None) -> Any:
    """Compile ``jitted`` (a ``jax.jit`` function) for ``args``, run it, record both times in
    ``timer`` (when given) and return the outputs, ready."""
    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    middle = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    if timer is not None:
        timer.timings.append(Timing(what, middle - start, time.perf_counter() - middle))
    return out
