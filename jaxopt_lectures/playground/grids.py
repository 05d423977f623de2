"""Precomputed trajectories: every optimizer on every test function, over grids of settings.

For each optimizer ONE program is compiled: ``jit(vmap(trajectory))`` over a flat batch of
cases (hyperparameters x start points), with the test function chosen by an unbatched index
through ``lax.switch``, so the same compiled program serves every function. Inside, the
optimizer is the library's own transform (``jl.adam(learning_rate, b1, b2, eps)`` and so on),
built with traced hyperparameters, and the trajectory is a ``lax.scan`` of
``tx.update`` / ``optax.apply_updates``: the numbers the page shows are the library's.

The grids are products of a few values per slider; the page snaps every slider, and the start
point, to the nearest grid value (no interpolation: between two grid values an optimizer's path is
not the average of the two paths).
"""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxopt_lectures as jl
from jaxopt_lectures.compile_policy import QUICK_OPTIONS
from jaxopt_lectures.playground.problems import PlaygroundProblem, playground_problems

__all__ = [
    "NUM_STEPS",
    "START_GRID",
    "Grid",
    "Hyper",
    "Method",
    "compute_grids",
    "lr_values",
    "methods",
    "run_direct",
    "start_points",
]

NUM_STEPS = 100
"""Steps per trajectory (the page shows the start and the iterates after 1, ..., NUM_STEPS)."""

START_GRID = 5
"""The number of start points per axis (a START_GRID x START_GRID grid through each function's
default start)."""

LOSS_FLOOR = 1e-12
"""Loss gaps L - L* below this are stored (and drawn) as this: the floor of the log-scale plots."""

# XLA's backend optimizations double the compile time and gain nothing here: the programs run
# for a fraction of a second, compiling them dominates the build. So the page's programs always
# get the quick compile options (jaxopt_lectures.compile_policy), whatever the run.
_COMPILER_OPTIONS = dict(QUICK_OPTIONS)

# The rates offered are consecutive values of the 1-2-5 ladder.
_LADDER = tuple(m * 10.0**e for e in range(-5, 3) for m in (1.0, 2.0, 5.0))


class Hyper(NamedTuple):
    """One slider: the optimizer's argument ``name``, the lecture's symbol, its grid values and
    the index of the value selected when the page opens."""

    name: str
    symbol: str
    values: tuple[float, ...]
    default: int


class Method(NamedTuple):
    """One optimizer of the page.

    ``build(**hyperparameters)`` returns the library's transform (hyperparameters may be traced
    arrays); ``needs_value_fn``: the transform's ``update`` takes ``value_fn`` (Newton);
    ``call`` is how the page spells the call, e.g. ``jl.adam({learning_rate}, b1={b1}, ...)``.
    """

    key: str
    label: str
    build: Callable[..., optax.GradientTransformation]
    needs_value_fn: bool
    hypers: tuple[Hyper, ...]
    call: str


def lr_values(first: float, count: int = 6) -> tuple[float, ...]:
    """``count`` consecutive values of the 1-2-5 ladder starting at ``first``.

    Example:
      >>> lr_values(0.01, 4)
      (0.01, 0.02, 0.05, 0.1)
    """
    index = min(range(len(_LADDER)), key=lambda i: abs(np.log(_LADDER[i] / first)))
    values = _LADDER[index : index + count]
    if len(values) < count:
        raise ValueError(f"lr_values: no {count} ladder values from first={first}")
    return tuple(float(f"{v:.6g}") for v in values)


# The first rate of each ladder, per function family: step-length methods (sgd, momentum, NAG)
# need rates below 2 / (largest curvature), the adaptive ones take steps of about the rate in
# every coordinate, so their rates follow the size of the plotting window.
_FIRST_RATE: dict[str, dict[str, float]] = {
    "quadratic": {"gd": 0.01, "heavy": 0.01, "adagrad": 0.05, "adaptive": 0.005},
    "rosenbrock": {"gd": 2e-5, "heavy": 5e-5, "adagrad": 0.02, "adaptive": 0.002},
    "beale": {"gd": 5e-4, "heavy": 5e-4, "adagrad": 0.05, "adaptive": 0.005},
    "saddle": {"gd": 0.01, "heavy": 0.01, "adagrad": 0.05, "adaptive": 0.005},
    "himmelblau": {"gd": 5e-4, "heavy": 5e-4, "adagrad": 0.1, "adaptive": 0.01},
}


def _family(problem: PlaygroundProblem) -> str:
    return problem.problem.name


# Long: a table, one declaration per optimizer on the page.
def methods(family: str) -> list[Method]:
    """The page's optimizers with their slider grids for one function family (``"quadratic"``,
    ``"rosenbrock"``, ``"beale"``, ``"saddle"``, ``"himmelblau"``); only the rates depend on it.

    The grids of the other hyperparameters are the same everywhere; each has the library's
    default among its values (the one selected when the page opens), except where a default
    would make the method stall in a hundred steps on these functions.

    Example:
      >>> from jaxopt_lectures.playground.grids import methods
      >>> adam = next(m for m in methods("rosenbrock") if m.key == "adam")
      >>> [(h.name, len(h.values)) for h in adam.hypers]
      [('learning_rate', 6), ('b1', 3), ('b2', 2), ('eps', 2)]
    """
    first = _FIRST_RATE[family]

    def lr(key: str, count: int = 6, default: int = 3) -> Hyper:
        return Hyper("learning_rate", "η", lr_values(first[key], count), default)

    gamma = Hyper("momentum", "\N{GREEK SMALL LETTER GAMMA}", (0.0, 0.5, 0.8, 0.9, 0.99), 3)
    damping = Hyper("damping", "λ", (0.0, 0.1, 1.0, 10.0), 0)
    newton_rates = Hyper("learning_rate", "η", (0.05, 0.1, 0.2, 0.5, 1.0, 2.0), 4)
    return [
        Method(
            "sgd",
            "gradient descent",
            lambda learning_rate: jl.sgd(learning_rate),
            False,
            (lr("gd", 8, 4),),
            "jl.sgd({learning_rate})",
        ),
        Method(
            "momentum",
            "momentum",
            lambda learning_rate, momentum: jl.momentum(learning_rate, momentum=momentum),
            False,
            (lr("heavy", 6, 2), gamma),
            "jl.momentum({learning_rate}, momentum={momentum})",
        ),
        Method(
            "nag",
            "Nesterov (NAG)",
            lambda learning_rate, momentum: jl.nag(learning_rate, momentum=momentum),
            False,
            (lr("heavy", 6, 2), gamma),
            "jl.nag({learning_rate}, momentum={momentum})",
        ),
        Method(
            "adagrad",
            "AdaGrad",
            lambda learning_rate, eps: jl.adagrad(learning_rate, eps=eps),
            False,
            (lr("adagrad"), Hyper("eps", "ε", (1e-10, 0.1), 0)),
            "jl.adagrad({learning_rate}, eps={eps})",
        ),
        Method(
            "rmsprop",
            "RMSprop",
            lambda learning_rate, decay, eps: jl.rmsprop(learning_rate, decay=decay, eps=eps),
            False,
            (
                lr("adaptive"),
                Hyper("decay", "\N{GREEK SMALL LETTER RHO}", (0.5, 0.9, 0.99), 1),
                Hyper("eps", "ε", (1e-8, 0.1), 0),
            ),
            "jl.rmsprop({learning_rate}, decay={decay}, eps={eps})",
        ),
        Method(
            "adadelta",
            "AdaDelta",
            lambda learning_rate, rho, eps: jl.adadelta(learning_rate, rho=rho, eps=eps),
            False,
            (
                Hyper("learning_rate", "η", (0.5, 1.0, 2.0, 5.0, 10.0, 20.0), 1),
                Hyper("rho", "\N{GREEK SMALL LETTER RHO}", (0.5, 0.9, 0.99), 1),
                Hyper("eps", "ε", (1e-6, 1e-4, 1e-2), 0),
            ),
            "jl.adadelta({learning_rate}, rho={rho}, eps={eps})",
        ),
        Method(
            "adam",
            "Adam",
            lambda learning_rate, b1, b2, eps: jl.adam(learning_rate, b1=b1, b2=b2, eps=eps),
            False,
            (
                lr("adaptive"),
                Hyper("b1", "b₁", (0.0, 0.9, 0.99), 1),
                Hyper("b2", "b₂", (0.99, 0.999), 1),
                Hyper("eps", "ε", (1e-8, 0.1), 0),
            ),
            "jl.adam({learning_rate}, b1={b1}, b2={b2}, eps={eps})",
        ),
        Method(
            "newton",
            "Newton-Raphson",
            lambda learning_rate, damping: jl.newton(learning_rate, damping=damping),
            True,
            (newton_rates, damping),
            "jl.newton({learning_rate}, damping={damping})",
        ),
        Method(
            "saddle_free_newton",
            "saddle-free Newton",
            lambda learning_rate, damping: jl.newton(
                learning_rate, damping=damping, saddle_free=True
            ),
            True,
            (newton_rates, damping),
            "jl.newton({learning_rate}, damping={damping}, saddle_free=True)",
        ),
    ]


def start_points(
    x0: tuple[float, float], xlim: tuple[float, float], ylim: tuple[float, float], n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Grid coordinates through the default start ``x0``: ``n`` per axis, spaced by a ``1/n`` of
    the window and as central as the window allows. Returns ``(xs, ys)``, each of length n.

    Example:
      >>> from jaxopt_lectures.playground.grids import start_points
      >>> xs, ys = start_points((-1.0, 0.8), (-1.2, 1.2), (-1.0, 1.0), 3)
      >>> xs.round(3).tolist(), ys.round(3).tolist()
      ([-1.0, -0.2, 0.6], [-0.533, 0.133, 0.8])
    """

    def axis(start: float, lo: float, hi: float) -> np.ndarray:
        step = (hi - lo) / n
        ks = np.arange(-2 * n, 2 * n + 1)
        ks = ks[ks != 0]
        while True:
            points = start + ks * step
            others = points[(points >= lo + step / 4) & (points <= hi - step / 4)]
            if len(others) >= n - 1:
                break
            step *= 0.9
        centre = 0.5 * (lo + hi)
        nearest = others[np.argsort(np.abs(others - centre), kind="stable")[: n - 1]]
        return np.sort(np.concatenate([[start], nearest]))

    return axis(x0[0], *xlim), axis(x0[1], *ylim)


def _trajectory_program(
    method: Method, losses: Sequence[Callable[[jax.Array], jax.Array]], num_steps: int
) -> Any:
    """``program(index, hypers, theta0) -> (thetas (N, T+1, 2), losses (N, T+1))``: one compiled
    program for all functions (``index`` picks one) and N cases at once."""

    def run_one(index: jax.Array, hypers: dict[str, jax.Array], theta0: jax.Array) -> Any:
        def loss(theta: jax.Array) -> jax.Array:
            return jax.lax.switch(index, losses, theta)

        return _scan(method, loss, hypers, theta0, num_steps)

    batched = jax.vmap(run_one, in_axes=(None, 0, 0))
    return jax.jit(batched, compiler_options=_COMPILER_OPTIONS)


def _scan(
    method: Method,
    loss: Callable[[jax.Array], jax.Array],
    hypers: Mapping[str, Any],
    theta0: jax.Array,
    num_steps: int,
) -> tuple[jax.Array, jax.Array]:
    tx = method.build(**hypers)
    value_and_grad = jax.value_and_grad(loss)
    extra = {"value_fn": loss} if method.needs_value_fn else {}

    def step(
        carry: tuple[jax.Array, Any], _: None
    ) -> tuple[tuple[jax.Array, Any], tuple[jax.Array, jax.Array]]:
        theta, state = carry
        value, grad = value_and_grad(theta)
        updates, state = tx.update(grad, state, theta, **extra)
        return (optax.apply_updates(theta, updates), state), (theta, value)

    (last, _), (thetas, values) = jax.lax.scan(step, (theta0, tx.init(theta0)), length=num_steps)
    thetas = jnp.concatenate([thetas, last[None]])
    values = jnp.concatenate([values, loss(last)[None]])
    return thetas, values


def run_direct(
    method: Method,
    loss: Callable[[jax.Array], jax.Array],
    hypers: Mapping[str, Any],
    theta0: Sequence[float],
    num_steps: int = NUM_STEPS,
) -> tuple[np.ndarray, np.ndarray]:
    """One trajectory the way a user writes it, for checking the precomputed grids: the transform
    built from plain floats, a Python loop over ``tx.update`` and ``optax.apply_updates`` (each
    step compiled on its own; no ``vmap``, no ``scan``, no ``switch``).

    Compiled with the grids' compiler options: a chaotic path (RMSprop bouncing across a valley
    floor) amplifies any difference in float32 rounding, and XLA's optimization level changes
    the rounding of a few operations; with the same options the paths agree to the last digits.

    Returns:
      ``(thetas (num_steps + 1, 2), losses (num_steps + 1,))``, start included.

    Example, one step of gradient descent (eta = 0.2) on the lecture's quadratic with
    A = diag(1/20, 1), where x shrinks by 1 - 2 eta / 20 and y by 1 - 2 eta:

      >>> from jaxopt_lectures.playground.grids import methods, run_direct
      >>> from jaxopt_lectures.problems import quadratic
      >>> sgd = methods("quadratic")[0]
      >>> thetas, losses = run_direct(sgd, quadratic(1 / 20, 1.0).loss, {"learning_rate": 0.2},
      ...                             (-1.0, 0.8), num_steps=1)
      >>> [round(float(v), 4) for v in thetas[1]]
      [-0.98, 0.48]
    """
    tx = method.build(**hypers)
    extra = {"value_fn": loss} if method.needs_value_fn else {}

    @functools.partial(jax.jit, compiler_options=_COMPILER_OPTIONS)
    def step(theta: jax.Array, state: Any) -> tuple[jax.Array, Any, jax.Array]:
        updates, state = tx.update(jax.grad(loss)(theta), state, theta, **extra)
        theta = optax.apply_updates(theta, updates)
        return theta, state, loss(theta)

    theta = jnp.asarray(theta0, jnp.float32)
    state = tx.init(theta)
    thetas, values = [theta], [loss(theta)]
    for _ in range(num_steps):
        theta, state, value = step(theta, state)
        thetas.append(theta)
        values.append(value)
    return np.asarray(jnp.stack(thetas)), np.asarray(jnp.stack(values))


class Grid(NamedTuple):
    """The trajectories of one optimizer on one function.

    ``thetas``: ``(*hyper_shape, START_GRID (y), START_GRID (x), T+1, 2)`` float32;
    ``losses``: the same without the last axis; ``hyper_shape`` follows ``method.hypers``.
    """

    problem: PlaygroundProblem
    method: Method
    xs: np.ndarray
    ys: np.ndarray
    thetas: np.ndarray
    losses: np.ndarray


def _checked_arguments(
    problems: Sequence[PlaygroundProblem],
    num_steps: int,
    start_grid: int,
    method_keys: Sequence[str] | None,
) -> list[str]:
    """Check :func:`compute_grids`'s arguments; the optimizers' keys (default: all)."""
    if not problems:
        raise ValueError("problems: give at least one function (or None for all)")
    for name, value in (("num_steps", num_steps), ("start_grid", start_grid)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    keys = [m.key for m in methods("quadratic")] if method_keys is None else list(method_keys)
    unknown = sorted(set(keys) - {m.key for m in methods("quadratic")})
    if unknown:
        raise ValueError(
            f"method_keys: unknown {unknown}; choose from {[m.key for m in methods('quadratic')]}"
        )
    return keys


# Long for its docstring (22 of 76 lines: arguments, returns, example).
def compute_grids(
    problems: Sequence[PlaygroundProblem] | None = None,
    num_steps: int = NUM_STEPS,
    start_grid: int = START_GRID,
    method_keys: Sequence[str] | None = None,
    timings: dict[str, float] | None = None,
) -> list[Grid]:
    """Every (function, optimizer) grid: one compiled program per optimizer, called once per
    function.

    Args:
      problems: the functions (default: every one of
        :func:`~jaxopt_lectures.playground.problems.playground_problems`).
      num_steps: steps per trajectory.
      start_grid: start points per axis.
      method_keys: a subset of the optimizers (default: all of :func:`methods`).
      timings: if given, filled with seconds per optimizer (compile and run).

    Returns:
      One :class:`Grid` per (function, optimizer), functions outermost.

    Example:
      >>> from jaxopt_lectures.playground.grids import compute_grids
      >>> from jaxopt_lectures.playground.problems import playground_problems
      >>> [grid] = compute_grids(playground_problems()[:1], num_steps=5, start_grid=2,
      ...                        method_keys=["sgd"])
      >>> grid.thetas.shape  # 8 rates, 2 x 2 starts, 6 points, (x, y)
      (8, 2, 2, 6, 2)
    """
    problems = list(playground_problems() if problems is None else problems)
    keys = _checked_arguments(problems, num_steps, start_grid, method_keys)
    losses = [p.problem.loss for p in problems]
    starts = [
        start_points(p.problem.x0, p.problem.xlim, p.problem.ylim, start_grid) for p in problems
    ]

    def cases(index: int, key: str) -> tuple[Method, dict[str, jax.Array], jax.Array]:
        method = next(m for m in methods(_family(problems[index])) if m.key == key)
        xs, ys = starts[index]
        table = np.asarray(
            list(itertools.product(*(h.values for h in method.hypers), ys, xs)), np.float32
        )
        hypers = {h.name: jnp.asarray(table[:, i]) for i, h in enumerate(method.hypers)}
        return method, hypers, jnp.asarray(table[:, [-1, -2]])

    def compiled(key: str) -> tuple[Any, float]:
        t0 = time.perf_counter()
        method, hypers, theta0 = cases(0, key)
        program = _trajectory_program(method, losses, num_steps)
        executable = program.lower(jnp.int32(0), hypers, theta0).compile()
        return executable, time.perf_counter() - t0

    # XLA compiles in C++ without the GIL: two programs at a time use both cores of a laptop.
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        programs = dict(zip(keys, pool.map(compiled, keys), strict=True))
    grids: list[Grid] = []
    for index, p in enumerate(problems):
        xs, ys = starts[index]
        for key in keys:
            t0 = time.perf_counter()
            method, hypers, theta0 = cases(index, key)
            thetas, values = programs[key][0](jnp.int32(index), hypers, theta0)
            shape = (*(len(h.values) for h in method.hypers), len(ys), len(xs), num_steps + 1)
            grids.append(
                Grid(
                    problem=p,
                    method=method,
                    xs=xs,
                    ys=ys,
                    thetas=np.asarray(thetas).reshape(*shape, 2),
                    losses=np.asarray(values).reshape(shape),
                )
            )
            if timings is not None:
                timings[key] = timings.get(key, programs[key][1]) + time.perf_counter() - t0
    return grids
