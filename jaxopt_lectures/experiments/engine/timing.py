"""Compile time and run time of the engine's programs, collected by whoever asks for them.

Every engine function that compiles a program takes an optional :class:`Timer`; an experiment
makes one, passes it to each call, and keeps ``timer.timings`` in its result, so the timings
travel with the result (nothing is kept in module-level state).

Which compiler options a program gets is :mod:`jaxopt_lectures.compile_policy`'s decision: the
caller says whether a program is ``short`` (its run time small next to its compile time), the
runner switches quick compiles on for a ``--quick`` run, and a short program of a quick run
compiles with :data:`~jaxopt_lectures.compile_policy.QUICK_OPTIONS` (same numbers).
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import jax

from jaxopt_lectures.compile_policy import compiler_options

__all__ = ["Timer", "Timing", "compile_timed", "timed"]


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


def compile_timed(
    what: str, jitted: Any, *args: Any, timer: Timer | None = None, short: bool = False
) -> Any:
    """Compile ``jitted`` (a ``jax.jit`` function) for ``args`` and record the compile time in
    ``timer`` (run time 0); return the executable, to be called with arguments of the same
    shapes. A ``short`` program compiles with the quick options in a quick run
    (:func:`jaxopt_lectures.compile_policy.compiler_options`)."""
    start = time.perf_counter()
    lowered = jitted.lower(*args)
    compiled = lowered.compile(compiler_options(short=short))
    if timer is not None:
        timer.timings.append(Timing(what, time.perf_counter() - start, 0.0))
    return compiled


def timed(
    what: str, jitted: Any, *args: Any, timer: Timer | None = None, short: bool = False
) -> Any:
    """Compile ``jitted`` (a ``jax.jit`` function) for ``args``, run it, record both times in
    ``timer`` (when given) and return the outputs, ready. A ``short`` program compiles with the
    quick options in a quick run (same numbers; :mod:`jaxopt_lectures.compile_policy`)."""
    own = Timer()
    compiled = compile_timed(what, jitted, *args, timer=own, short=short)
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    if timer is not None:
        timer.timings.append(own.timings[0]._replace(run_s=time.perf_counter() - start))
    return out
