"""Backend code-generation switches, each behind one named function with its measured reason.

What a backend needs to emit a faster step is set here, for the whole process, and documented
with the measurement that justifies it (``benchmarks/bench_optimizers.py``, tables in
``docs/performance.md``). Without a switch the optimizers compute their equations as written;
with XLA:CPU's multi-output fusion on they compute the same equations in the one-loop form
described at :func:`use_cpu_multi_output_fusion`, and nowhere else.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp

__all__ = [
    "CPU_MULTI_OUTPUT_FUSION",
    "cpu_multi_output_fusion_enabled",
    "use_cpu_multi_output_fusion",
]

CPU_MULTI_OUTPUT_FUSION = "xla_cpu_use_multi_output_fusion"
_EXTRA = "--xla_backend_extra_options="


def _backend_options(flags: str) -> list[str]:
    options: list[str] = []
    for flag in flags.split():
        if flag.startswith(_EXTRA):
            options += [o for o in flag[len(_EXTRA) :].split(",") if o]
    return options


def cpu_multi_output_fusion_enabled() -> bool:
    """Whether ``XLA_FLAGS`` asks XLA:CPU for multi-output fusion (see
    :func:`use_cpu_multi_output_fusion`).

    Example:
      >>> from jaxopt_lectures.xla_options import cpu_multi_output_fusion_enabled
      >>> isinstance(cpu_multi_output_fusion_enabled(), bool)
      True
    """
    return any(
        o.split("=", 1)[0] == CPU_MULTI_OUTPUT_FUSION
        for o in _backend_options(os.environ.get("XLA_FLAGS", ""))
    )


def _backends_initialized() -> bool:
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover - jax always has it today
        return False
    initialized = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(initialized()) if initialized is not None else False


def use_cpu_multi_output_fusion() -> None:
    """Ask XLA:CPU to merge sibling loops into one multi-output loop, for this whole process.

    XLA:CPU emits one loop per output array of an elementwise step by default: Adam's donated
    step (update + ``optax.apply_updates``) reads the gradient once for the first moment and
    again for the second, and the parameter loop reads the new moments back. With the backend
    option ``xla_cpu_use_multi_output_fusion`` XLA's sibling multi-output fusion pass merges
    loops that read the same operand and do not depend on one another (at most 20 operands per
    loop) into one loop with several outputs, so the shared inputs are read once. It never fuses
    a producer with its consumer; so with the option on, the library's momentum, NAG, Adam,
    AdaGrad, RMSprop and AdaDelta compute their update from the old state in a copy that XLA
    does not merge back, and the whole step, ``optax.apply_updates`` included, becomes one loop
    that reads and writes every array once (:func:`jaxopt_lectures.trace` on its own cannot: it
    only sees the updates of the transform before it). ``docs/performance.md`` has the step
    times with and without the option for every optimizer (``bench_optimizers.py
    --multi-output-fusion both``), and how far the numbers move: by float32 rounding, because
    XLA contracts a multiply and an add into one fused multiply-add differently in the merged
    loop.

    The option is a map entry of XLA's debug options, which JAX passes to XLA only through the
    ``XLA_FLAGS`` environment variable when it starts its backends: ``jax.jit(...,
    compiler_options=...)`` and ``.compile(compiler_options=...)`` reject it ("not a valid
    message value"). So call this before the first computation of the process (importing jax is
    fine), or set ``XLA_FLAGS=--xla_backend_extra_options=xla_cpu_use_multi_output_fusion`` in
    the shell. Other options already in ``--xla_backend_extra_options`` are kept. GPU backends
    fuse multi-output loops by default and ignore the option.

    Raises:
      RuntimeError: JAX's backends already started, so the option could no longer take effect.

    Example:
      >>> import os, subprocess, sys
      >>> code = (
      ...     "from jaxopt_lectures.xla_options import use_cpu_multi_output_fusion\\n"
      ...     "use_cpu_multi_output_fusion()\\n"
      ...     "import os; print(os.environ['XLA_FLAGS'])"
      ... )
      >>> env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
      >>> subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
      ...                text=True).stdout.strip()
      '--xla_backend_extra_options=xla_cpu_use_multi_output_fusion'
    """
    if cpu_multi_output_fusion_enabled():
        return
    if _backends_initialized():
        raise RuntimeError(
            "use_cpu_multi_output_fusion() must run before JAX's first computation in this "
            "process (JAX reads XLA_FLAGS once, when it starts its backends); call it at the "
            f"start of the program or set XLA_FLAGS={_EXTRA}{CPU_MULTI_OUTPUT_FUSION}"
        )
    flags = os.environ.get("XLA_FLAGS", "").split()
    options = _backend_options(" ".join(flags))
    kept = [f for f in flags if not f.startswith(_EXTRA)]
    kept.append(_EXTRA + ",".join([*options, CPU_MULTI_OUTPUT_FUSION]))
    os.environ["XLA_FLAGS"] = " ".join(kept)


def _one_loop_constants(dtype: Any, *values: Any, copy: int = 0) -> tuple[jax.Array, ...] | None:
    """The scalars ``values`` as ``dtype`` constants that XLA does not merge with the same
    constants elsewhere in the program, when multi-output fusion is on (else ``None``).

    Used by transforms whose update reads a state it also writes (Adam's moments): XLA:CPU's
    multi-output fusion merges sibling loops only, so the parameter loop, a consumer of the new
    moments, stays a loop of its own that reads them back from memory. Computing the step a
    second time from the *old* state, with these constants, makes the step's loop a sibling of
    the state's loop (both read the gradient and the old state), and the pass merges them into
    one loop that reads every array once. With the ordinary constants XLA's common-subexpression
    elimination would find the two copies equal and merge them back into one producer; the
    constants pass through an optimization barrier, so it cannot (``copy`` tells apart the
    constants of several copies, which would otherwise merge with one another). The copy
    computes the same operations on the same values; inside the merged loop LLVM may contract a
    multiply and an add into a fused multiply-add differently, so results move by float32
    rounding.
    """
    if not cpu_multi_output_fusion_enabled() or not jnp.issubdtype(dtype, jnp.floating):
        return None
    tagged = [jnp.asarray(v, dtype) for v in (*values, copy)]
    packed = jax.lax.optimization_barrier(jnp.stack(tagged))
    return tuple(packed[i] for i in range(len(values)))
