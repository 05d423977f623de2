"""How XLA compiles the package's programs: XLA's defaults, or options that compile faster.

On a CPU a short program (a few hundred steps of a 2-D problem, a batch of Hessian probes) takes
longer to compile than to run. XLA:CPU's backend optimization level 0 compiles such a program about
twice as fast and runs it about twice as slowly, with the same numbers (LLVM's optimizer is what
it skips; the program XLA builds is the same). That trade is right for a quick run and wrong for
a long training program (half the compile time, four times the run time) or a full run. This
module is the one place that says which options a program gets:

- :data:`QUICK_OPTIONS`: the per-program compiler options of a quick compile;
- :func:`quick_compiles`: switched on by whoever runs a quick job (the experiments' runner does it
  for ``--quick``), for the calling thread only;
- :func:`compiler_options`: what a program gets, from whether it is short (said where the program
  is made) and whether quick compiles are on;
- :data:`QUICK_FLAGS`: the same trade for a whole process, through ``XLA_FLAGS`` (the test
  suite's unit tier starts JAX with it).

Example:
  >>> from jaxopt_lectures.compile_policy import compiler_options, quick_compiles
  >>> compiler_options(short=True) is None  # XLA's defaults unless a quick job asks
  True
  >>> with quick_compiles():
  ...     compiler_options(short=True), compiler_options(short=False)
  ({'xla_backend_optimization_level': 0}, None)
"""

from __future__ import annotations

import contextlib
import contextvars
import types
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "QUICK_FLAGS",
    "QUICK_OPTIONS",
    "compiler_options",
    "quick_compiles",
    "quick_compiles_on",
]

QUICK_OPTIONS: Mapping[str, Any] = types.MappingProxyType({"xla_backend_optimization_level": 0})
"""Per-program options (``jax.jit(..., compiler_options=...)``, ``lowered.compile(...)``):
XLA:CPU's backend optimization level 0, about half the compile time, twice the run time, the
same numbers."""

QUICK_FLAGS = (
    "--xla_cpu_use_fusion_emitters=false --xla_backend_optimization_level=0"
    " --xla_cpu_parallel_codegen_split_count=1"
)
"""``XLA_FLAGS`` for a process whose every program is small: XLA:CPU's older loop emitters
without LLVM's optimizer compile such a program two to three times as fast and run large arrays
slower; generating each program's machine code in one piece saves about a fifth more. Read once,
when JAX starts its backend."""

_QUICK: contextvars.ContextVar[bool] = contextvars.ContextVar("quick_compiles", default=False)


@contextlib.contextmanager
def quick_compiles(enabled: bool = True) -> Iterator[None]:
    """While the block runs (in this thread), short programs compile with :data:`QUICK_OPTIONS`
    when ``enabled``; afterwards the previous setting is back."""
    token = _QUICK.set(bool(enabled))
    try:
        yield
    finally:
        _QUICK.reset(token)


def quick_compiles_on() -> bool:
    """Whether :func:`quick_compiles` is on in this thread."""
    return _QUICK.get()


def compiler_options(*, short: bool) -> dict[str, Any] | None:
    """The compiler options of a program: :data:`QUICK_OPTIONS` for a ``short`` one (its run
    time is small next to its compile time) while :func:`quick_compiles` is on, else ``None``
    (XLA's defaults)."""
    return dict(QUICK_OPTIONS) if short and _QUICK.get() else None
