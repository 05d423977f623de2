"""Helpers for experiments written as ``compute(config, key) -> result``, ``figure(result)``,
``claims(result)``: timing a compiled program, fitting a power law, Spearman's correlation, and the
adapter that turns the three pieces into the CLI's
:class:`~jaxopt_lectures.experiments.base.Result`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from jaxopt_lectures.experiments import engine, figures
from jaxopt_lectures.experiments.base import Claim, Context, Result, jsonable

__all__ = [
    "as_numbers",
    "compiled_run",
    "fit_mlps",
    "fitted_exponent",
    "rank_correlation",
    "to_result",
]


def compiled_run(what: str, jitted: Any, *args: Any) -> tuple[Any, float, float]:
    """Compile and run ``jitted`` on ``args`` (recorded in the engine's timings, so the CLI reports
    the compile share); return ``(outputs as NumPy, compile seconds, run seconds)``."""
    out = engine.timed(what, jitted, *args)
    _, compile_s, run_s = engine.TIMINGS[-1]
    return engine._to_numpy(out), compile_s, run_s


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
      >>> rank_correlation([1.0, 2.0, 3.0, 4.0], [10.0, 40.0, 30.0, 100.0])
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


def fit_mlps(
    models: Mapping[str, engine.MLP],
    tx: Any,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    steps: int,
    seeds: Sequence[int],
    batch_size: int = 64,
) -> dict[str, tuple[Any, Any]]:
    """Train every model with the optimizer ``tx`` for ``steps`` mini-batch steps per seed, with no
    evaluation along the way, all in one compiled program: the cheapest way to trained parameters
    (the engine's :func:`~jaxopt_lectures.experiments.engine.train` also records curves and keeps
    the best parameters, which costs compile time). NumPy draws the mini-batches from each seed
    (the same for every model); seeds are ``vmap``-ed. Returns ``{name: (params, bn_state)}``
    with a leading seed axis (NumPy)."""
    import jax
    import jax.numpy as jnp

    n = len(x_train)
    num_classes = int(np.max(y_train)) + 1
    batches = np.stack(
        [np.random.default_rng(s).integers(0, n, (steps, batch_size)) for s in seeds]
    )
    x, y = jnp.asarray(x_train), jnp.asarray(y_train)

    def one(model: engine.MLP, seed: jax.Array, idx: jax.Array) -> tuple[Any, Any]:
        carry = engine.init_carry(model, tx, jax.random.key(seed), x.shape[1], num_classes)

        def step(carry: engine.TrainCarry, i: jax.Array) -> tuple[engine.TrainCarry, jax.Array]:
            key = jax.random.fold_in(jax.random.key(seed), carry.step)
            return engine.train_step(model, tx, carry, (x[i], y[i], key))

        carry, _ = jax.lax.scan(step, carry, idx)
        return carry.params, carry.bn_state

    @jax.jit
    def fit_all(seed_arr: jax.Array, batches: jax.Array) -> dict[str, Any]:
        return {
            name: jax.vmap(lambda s, b, m=m: one(m, s, b))(seed_arr, batches)
            for name, m in models.items()
        }

    seed_arr = jnp.asarray(np.asarray(seeds, np.uint32))
    out, _, _ = compiled_run("fit", fit_all, seed_arr, jnp.asarray(batches))
    return dict(out)
