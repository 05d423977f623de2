"""Helpers for experiments written as ``compute(config, key) -> result``, ``figure(result)``,
``claims(result)``: timing a compiled program, fitting a power law, Spearman's correlation, and the
adapter that turns the three pieces into the CLI's
:class:`~jaxopt_lectures.experiments.base.Result`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxopt_lectures as jl
from jaxopt_lectures.experiments import engine, figures
from jaxopt_lectures.experiments.base import Claim, Context, Result, jsonable
from jaxopt_lectures.experiments.data import Dataset

__all__ = [
    "Fitted",
    "as_numbers",
    "compile_only",
    "compiled_run",
    "fit_mlps",
    "fitted_exponent",
    "rank_correlation",
    "to_result",
]


# XLA:CPU's backend optimization level 0 compiles a program about twice as fast and runs it about
# twice as slowly (same numbers): the better trade for the quick run's short programs.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def compiled_run(
    what: str, jitted: Any, *args: Any, fast_compile: bool = False
) -> tuple[Any, float, float]:
    """Compile and run ``jitted`` (a ``jax.jit`` function) on ``args``, recorded in the engine's
    timings (the CLI reports the compile share); return ``(outputs as NumPy, compile seconds, run
    seconds)``. ``fast_compile`` lowers XLA's backend optimization (:data:`FAST_COMPILE`)."""
    compiled, compile_s = compile_only(what, jitted, *args, fast_compile=fast_compile)
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    run_s = time.perf_counter() - start
    engine.TIMINGS[-1] = (what, compile_s, run_s)
    return jax.tree.map(np.asarray, out), compile_s, run_s


def compile_only(
    what: str, jitted: Any, *args: Any, fast_compile: bool = False
) -> tuple[Any, float]:
    """Compile ``jitted`` for ``args`` (recorded in the engine's timings); return the compiled
    executable (call it with the same ``args`` shapes) and the seconds it took."""
    start = time.perf_counter()
    lowered = jitted.lower(*args)
    compiled = lowered.compile(FAST_COMPILE) if fast_compile else lowered.compile()
    seconds = time.perf_counter() - start
    engine.TIMINGS.append((what, seconds, 0.0))
    return compiled, seconds


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


class Fitted(NamedTuple):
    """What :func:`fit_mlps` returns per run, NumPy arrays with leading axes (rates, seeds,
    checkpoints): parameters and batch-norm state after ``steps[k]`` steps, and the validation
    accuracy and training loss (inference mode, whole splits) there."""

    params: Any
    bn_state: Any
    val_acc: np.ndarray
    train_loss: np.ndarray
    steps: np.ndarray


def fit_mlps(
    runs: Mapping[str, engine.TrainRun],
    data: Dataset,
    *,
    steps: int,
    seeds: Sequence[int],
    checkpoints: int = 1,
    batch_size: int = 64,
    fast_compile: bool = False,
) -> dict[str, Fitted]:
    """Train every run at each of its rates and seeds for ``steps`` mini-batch steps, in one
    compiled program, keeping the parameters at ``checkpoints`` evenly spaced steps (the last
    one at ``steps``) with their validation accuracy and training loss.

    A lighter sibling of :func:`~jaxopt_lectures.experiments.engine.train` (no per-epoch curves,
    no early stopping: less to compile) for experiments that probe trained parameters. NumPy
    draws the mini-batches (with replacement) from each seed, the same for every run and rate.
    ``fast_compile``: see :func:`compiled_run`.
    """
    if steps < 1 or checkpoints < 1 or steps % checkpoints:
        raise ValueError(f"checkpoints ({checkpoints}) must divide steps ({steps}), both >= 1")
    n = len(data.x_train)
    period = steps // checkpoints
    batches = np.stack(
        [np.random.default_rng(s).integers(0, n, (checkpoints, period, batch_size)) for s in seeds]
    )
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    xv, yv = jnp.asarray(data.x_val), jnp.asarray(data.y_val)

    def evaluate(model: engine.MLP, params: Any, bn_state: Any, xs: Any, ys: Any) -> Any:
        """Mean cross-entropy and accuracy in inference mode (batch norm's moving averages)."""
        logits, _ = jl.nn.mlp_apply(
            params, bn_state, xs, activation=model.activation, training=False
        )
        return engine.cross_entropy(logits, ys), jnp.mean(jnp.argmax(logits, -1) == ys)

    def one(run: engine.TrainRun, rate: jax.Array, seed: jax.Array, idx: jax.Array) -> Any:
        tx = run.optimizer(rate)
        key = jax.random.key(seed)
        carry = engine.init_carry(run.model, tx, key, x.shape[1], data.num_classes)

        def step(carry: engine.TrainCarry, i: jax.Array) -> tuple[engine.TrainCarry, jax.Array]:
            k = jax.random.fold_in(key, carry.step)
            return engine.train_step(run.model, tx, carry, (x[i], y[i], k))

        def chunk(carry: engine.TrainCarry, idx: jax.Array) -> tuple[engine.TrainCarry, Any]:
            carry, _ = jax.lax.scan(step, carry, idx)
            train_loss, _ = evaluate(run.model, carry.params, carry.bn_state, x, y)
            _, val_acc = evaluate(run.model, carry.params, carry.bn_state, xv, yv)
            return carry, (carry.params, carry.bn_state, val_acc, train_loss)

        _, saved = jax.lax.scan(chunk, carry, idx)
        return saved

    @jax.jit
    def fit_all(rates: list[jax.Array], seed_arr: jax.Array, batches: jax.Array) -> list[Any]:
        out = []
        for run, r in zip(runs.values(), rates, strict=True):
            per_seed = jax.vmap(lambda lr, s, b, run=run: one(run, lr, s, b), (None, 0, 0))
            out.append(jax.vmap(per_seed, (0, None, None))(r, seed_arr, batches))
        return out

    rates = [jnp.asarray(np.asarray(r.learning_rates, np.float32)) for r in runs.values()]
    seed_arr = jnp.asarray(np.asarray(seeds, np.uint32))
    out, _, _ = compiled_run(
        "fit", fit_all, rates, seed_arr, jnp.asarray(batches), fast_compile=fast_compile
    )
    at = np.arange(1, checkpoints + 1) * period
    return {
        name: Fitted(params=o[0], bn_state=o[1], val_acc=o[2], train_loss=o[3], steps=at)
        for name, o in zip(runs, out, strict=True)
    }
