"""Backend code-generation switches, each behind one named function with its measured reason.

What a backend needs to emit a faster step is set here, for the whole process, and documented
with the measurement that justifies it (``benchmarks/bench_optimizers.py``, tables in
``docs/performance.md``). The optimizers never read these switches: their traced programs are the
same with or without them. The one-loop form that multi-output fusion rewards is the separate
wrapper :func:`jaxopt_lectures.one_loop`, which serves any transform.
"""

from __future__ import annotations

import os

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
    a producer with its consumer: wrap the transform in :func:`jaxopt_lectures.one_loop`, which
    computes each output from its own copy of the inputs, and the whole step of any elementwise
    transform, ``optax.apply_updates`` included, becomes one loop that reads and writes every
    array once. The option changes no transform's traced program; ``docs/performance.md`` has the
    step times with and without it, wrapped and not (``bench_optimizers.py``).

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
