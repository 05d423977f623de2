"""Newton-Raphson: precondition the gradient by the inverse Hessian, densely or matrix-free.

Lecture: theta_t = theta_{t-1} - eta H^-1 g, with H = d/dtheta (dL/dtheta)(B, theta_{t-1}) and
g = dL/dtheta(B, theta_{t-1}). On a quadratic the second-order Taylor expansion is exact, so one
step with eta = 1 lands on the minimizer; in general it costs O(d^3) time against O(d) for g.

Two versions, each a gradient transformation that needs the loss itself (``value_fn``) to get H:

- :func:`scale_by_newton` / :func:`newton`: the dense Hessian (``jax.hessian``) and a Cholesky
  solve; O(d^2) memory and O(d^3) time, exact. For d up to a few thousand.
- :func:`scale_by_newton_cg` / :func:`newton_cg`: Hessian-vector products and truncated conjugate
  gradient; O(d) memory and O(k d) time for k CG iterations. For anything larger.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.flatten_util import ravel_pytree
from jax.scipy.linalg import cho_factor, cho_solve

from jaxopt_lectures._checks import check_bool, check_non_negative, check_unit_interval
from jaxopt_lectures._tree import (
    check_tree_match,
    compute_dtype,
    replicate_explicit,
    reshard_like,
    safe_increment,
    update_dtype,
)
from jaxopt_lectures.optimizers.transform import descent

__all__ = [
    "ScaleByNewtonCGState",
    "ScaleByNewtonState",
    "newton",
    "newton_cg",
    "scale_by_newton",
    "scale_by_newton_cg",
]


class ScaleByNewtonState(NamedTuple):
    """Diagnostics of the dense Newton transform (int32 counters that saturate).

    Attributes:
      num_fallbacks: steps whose Newton direction was not finite (a NaN or infinite Hessian), so
        the incoming gradient was returned instead.
      num_negative_curvature: steps at which ``H + damping I`` was not numerically positive
        definite (indefinite or singular): plain Newton then heads for a saddle or a maximum as
        readily as for a minimum.
    """

    num_fallbacks: jax.Array
    num_negative_curvature: jax.Array


class ScaleByNewtonCGState(NamedTuple):
    """Diagnostics of the matrix-free Newton transform (int32; the counters saturate).

    Attributes:
      num_fallbacks: steps whose direction was not finite, so the incoming gradient was returned.
      num_negative_curvature: steps at which conjugate gradient met a direction of non-positive
        curvature and stopped there (Steihaug's rule).
      cg_iterations: Hessian-vector products spent by the last step (its cost in HVPs).
    """

    num_fallbacks: jax.Array
    num_negative_curvature: jax.Array
    cg_iterations: jax.Array


# --------------------------------------------------------------------------------------------
# Shared plumbing: the loss on the raveled parameters, dtypes, validation.
# --------------------------------------------------------------------------------------------


class _Raveled(NamedTuple):
    """The step's problem in one flat vector: the loss f, the point x, the gradient g."""

    f: Callable[[jax.Array], jax.Array]
    x: jax.Array
    g: jax.Array
    to_updates: Callable[[jax.Array], optax.Updates]


def _check_count(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer >= 1 (a JAX integer scalar passes)."""
    if isinstance(value, jax.Array):
        if value.ndim != 0 or not jnp.issubdtype(value.dtype, jnp.integer):
            raise ValueError(f"{name} must be an integer scalar, got {value!r}")
        return
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise ValueError(
            f"{name} must be an int >= 1, got {value!r} of type {type(value).__name__}"
        )
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value}")


def _bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"


def _check_size(transform: str, d: int, max_params: Any, itemsize: int) -> None:
    """Refuse a dense Hessian of more than ``max_params`` rows (when max_params is known)."""
    try:  # a Python int, or a concrete array from optax.inject_hyperparams' init
        limit = int(max_params)
    except jax.errors.ConcretizationTypeError:  # traced inside jit: init has checked it
        return
    if d > limit:
        raise ValueError(
            f"{transform}: the parameters have d = {d:,} entries, more than "
            f"max_params = {limit:,}. The dense Hessian would take d^2 floats "
            f"({_bytes(d * d * itemsize)}) and its factorization O(d^3) time per step. Pass "
            f"max_params={d} to newton() / scale_by_newton() if that fits, or use the "
            "matrix-free newton_cg() / scale_by_newton_cg(), whose cost is linear in d."
        )


def _value_fn_kwargs(value_fn: Callable[..., Any], extra_args: dict[str, Any]) -> dict[str, Any]:
    """The extra keyword arguments that ``value_fn`` accepts (optax's line-search convention).

    ``tx.update(g, state, params, value_fn=loss, batch=b)`` calls ``loss(params, batch=b)``, so a
    loss of the mini-batch, L(B, theta), needs no closure, and the same call feeds an optax line
    search later in the chain.
    """
    try:
        names = list(inspect.signature(value_fn).parameters)[1:]
    except (TypeError, ValueError):  # a builtin or C function without a signature
        return {}
    return {k: v for k, v in extra_args.items() if k in names}


def _raveled_problem(
    transform: str,
    updates: optax.Updates,
    params: optax.Params | None,
    value_fn: Callable[..., Any] | None,
    extra_args: dict[str, Any],
) -> _Raveled:
    """Check the call, upcast to the compute dtype and flatten everything into one vector."""
    if value_fn is None or params is None:
        missing = [n for n, v in (("value_fn", value_fn), ("params", params)) if v is None]
        raise ValueError(
            f"{transform} needs the loss and the current parameters to compute the Hessian, but "
            f"{' and '.join(missing)} {'was' if len(missing) == 1 else 'were'} not given. Call\n"
            "    updates, state = tx.update(grads, state, params, value_fn=loss)\n"
            "where loss(params) returns the scalar loss whose gradient is grads (optax's "
            "line-search convention; extra keyword arguments that loss accepts are passed on)."
        )
    if not callable(value_fn):
        raise ValueError(f"{transform}: value_fn must be callable, got {value_fn!r}")
    check_tree_match(updates, params, transform)
    leaves = jax.tree.leaves(updates) + jax.tree.leaves(params)
    if any(jnp.iscomplexobj(leaf) for leaf in leaves):
        raise TypeError(
            f"{transform} does not support complex parameters or gradients: the curvature of a "
            "real loss of complex parameters is not a complex Hessian matrix. Optimize the real "
            "and imaginary parts as separate real parameters ({'re': z.real, 'im': z.imag}), or "
            "use a first-order method (adam, rmsprop, adagrad, momentum, sgd), which accept "
            "complex parameters."
        )
    cd = compute_dtype(*(jnp.result_type(leaf) for leaf in leaves))
    # value_fn sees the parameters upcast to the compute dtype: a bf16 model's Hessian is then
    # taken in float32 (unless the loss itself casts back down).
    x, unravel = ravel_pytree(
        replicate_explicit(jax.tree.map(lambda p: jnp.asarray(p, cd), params))
    )
    g, _ = ravel_pytree(replicate_explicit(jax.tree.map(lambda u: jnp.asarray(u, cd), updates)))
    kwargs = _value_fn_kwargs(value_fn, extra_args)

    def f(z: jax.Array) -> jax.Array:
        value = jnp.asarray(value_fn(unravel(z), **kwargs))
        if value.shape != ():
            raise ValueError(
                f"{transform}: value_fn must return a scalar loss, got an array of shape "
                f"{value.shape}"
            )
        return value.astype(cd)

    def to_updates(direction: jax.Array) -> optax.Updates:
        def leaf(d: jax.Array, u: Any) -> jax.Array:
            d = d.astype(update_dtype(jnp.result_type(u)))
            return reshard_like(d, u)

        return jax.tree.map(leaf, unravel(direction), updates)

    return _Raveled(f=f, x=x, g=g, to_updates=to_updates)


def _fall_back_if_not_finite(
    direction: jax.Array, g: jax.Array, num_fallbacks: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Return g instead of a non-finite direction, and count it.

    A non-finite gradient counts too, and is returned as it is: the update is then NaN or
    infinite, visibly (``optax.apply_if_finite`` skips it), never a silent zero step.
    """
    finite = jnp.all(jnp.isfinite(direction)) & jnp.all(jnp.isfinite(g))
    direction = jnp.where(finite, direction, g)
    num_fallbacks = jnp.where(finite, num_fallbacks, safe_increment(num_fallbacks))
    return direction, num_fallbacks


def _count_if(flag: jax.Array, counter: jax.Array) -> jax.Array:
    return jnp.where(flag, safe_increment(counter), counter)


# --------------------------------------------------------------------------------------------
# Dense Newton.
# --------------------------------------------------------------------------------------------


def _dense_direction(
    H: jax.Array, g: jax.Array, damping: Any, saddle_free: bool
) -> tuple[jax.Array, jax.Array]:
    """Solve the damped (or saddle-free) Newton system; return (direction, negative_curvature)."""
    d = g.shape[0]
    # Rounding noise of the eigenvalues of a d x d matrix stored to relative precision eps, as a
    # fraction of its norm: |E|_2 <= |E|_F ~ eps |H|_F <= eps sqrt(d) |H|_2 (Weyl's inequality).
    noise = math.sqrt(d) * jnp.finfo(g.dtype).eps
    damping = jnp.asarray(damping, g.dtype)

    def spectral() -> tuple[jax.Array, jax.Array]:
        # H = Q diag(lam) Q^T. Plain: (H + damping I)^+ g. Saddle-free: (|H| + damping I)^+ g.
        # Eigenvalues within rounding noise of zero are not inverted (a pseudo-inverse): no step
        # is taken along a flat direction, instead of an infinite one.
        lam, Q = jnp.linalg.eigh(H)
        mu = (jnp.abs(lam) if saddle_free else lam) + damping
        cutoff = noise * jnp.max(jnp.abs(mu))
        keep = jnp.abs(mu) > cutoff
        inv_mu = jnp.where(keep, 1.0 / jnp.where(keep, mu, 1.0), 0.0)
        direction = Q @ (inv_mu * (Q.T @ g))
        negative = jnp.min(lam + damping) <= cutoff  # False for a NaN Hessian: a fallback instead
        return direction, negative

    if saddle_free:
        return spectral()

    # Fast path: Cholesky of H + damping I, about twice as fast as LU and 5-10x faster than eigh.
    # It is trusted only if every pivot is clearly positive. Every pivot is >= the smallest
    # eigenvalue, so a pivot within rounding noise of zero proves a numerically singular matrix,
    # where the triangular solve would return a huge, meaningless (yet finite) step.
    A = H + damping * jnp.eye(d, dtype=g.dtype)
    c, lower = cho_factor(A, lower=True)
    pivots = jnp.diagonal(c) ** 2
    chol_direction = cho_solve((c, lower), g)
    positive_definite = (
        jnp.all(jnp.isfinite(c))
        & (jnp.min(pivots) > noise * jnp.max(jnp.diagonal(A)))
        & jnp.all(jnp.isfinite(chol_direction))
    )
    return lax.cond(
        positive_definite,
        lambda: (chol_direction, jnp.array(False)),
        spectral,
    )


# Long: a 71-line docstring; init and update share the checked arguments (optax's closure).
def scale_by_newton(
    damping: float = 0.0,
    saddle_free: bool = False,
    max_params: int = 10_000,
) -> optax.GradientTransformationExtraArgs:
    r"""The Newton direction :math:`(H + \lambda I)^{-1} g` from the dense Hessian of the loss.

    .. math::
        H = \tfrac12 (\nabla^2 L + \nabla^2 L^\top), \qquad
        x_t = (H + \lambda I)^{-1} g_t \quad\text{or, saddle-free,}\quad
        x_t = (|H| + \lambda I)^{-1} g_t

    with :math:`\lambda` = ``damping``, :math:`g_t` the incoming updates and
    :math:`|H| = Q\,|\Lambda|\,Q^\top` for the eigendecomposition :math:`H = Q \Lambda Q^\top`.
    The direction is positive (gradient-like); :func:`newton` applies the descent sign.

    The loss is passed to every update as the keyword extra argument ``value_fn`` (params ->
    scalar, the convention of optax's line searches), together with the current ``params``::

        updates, state = tx.update(grads, state, params, value_fn=loss)

    The incoming ``updates`` are used as g (so this composes after, say,
    ``optax.clip_by_global_norm``); ``value_fn`` is used only for the curvature at ``params``, by
    ``jax.hessian`` on the raveled parameter pytree. Extra keyword arguments of ``update`` that
    ``value_fn`` accepts by name (a mini-batch, say) are passed on to it.

    How the system is solved:

    - ``H + damping I`` by Cholesky when it is numerically positive definite, the convex case;
    - otherwise through the eigendecomposition of H, as the pseudo-inverse: an indefinite H gets
      the exact textbook Newton step (which is attracted by saddle points and maxima as much as by
      minima); a singular one the minimum-norm step, with no move along flat directions
      (eigenvalues within ``sqrt(d) * eps * max|eigenvalue|`` of zero, the rounding noise of a
      float Hessian) instead of an infinite one.
      ``state.num_negative_curvature`` counts these steps;
    - a direction that is still not finite (the Hessian had NaN or infinite entries) is replaced
      by g itself, and ``state.num_fallbacks`` counts that; a non-finite gradient counts too and
      is passed through, so the update is visibly non-finite (``optax.apply_if_finite`` skips
      it), never a silent zero step;
    - parameters without entries (``{}``, or only zero-size arrays) get empty updates and an
      unchanged state, as optax's transforms give.

    Args:
      damping: lambda >= 0, Levenberg-Marquardt damping added to the Hessian's diagonal (to its
        absolute eigenvalues with ``saddle_free``). It makes an indefinite or singular H
        positive definite once lambda exceeds minus its smallest eigenvalue, turns the step
        towards gradient descent with rate 1 / lambda as lambda grows, and moves along flat
        directions that the undamped step leaves alone.
      saddle_free: use ``|H|`` (Dauphin et al., 2014): each eigenvalue becomes its absolute value,
        so negative curvature pushes *away* from saddle points and maxima and the step is always
        a descent direction. Always goes through ``jnp.linalg.eigh`` (several times the cost of
        Cholesky).
      max_params: refuse (``ValueError`` from ``init`` and when ``update`` is traced) parameter
        pytrees with more entries than this; the Hessian takes d^2 floats (10,000 parameters:
        400 MB in float32).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with a ``ScaleByNewtonState``.

    Cost: one Hessian (d Hessian-vector products, batched by ``jax.hessian``: d times the memory
    of one, and O(d^2) for H) and one O(d^3) factorization per step. Use
    :func:`scale_by_newton_cg` beyond a few thousand parameters. On sharded parameters the
    raveled vector and the whole d x d Hessian are gathered (replicated), not sharded: the dense
    step does not scale out, which is what ``max_params`` guards against.

    Dtypes: float and bf16/f16 (the Hessian and the solve run in at least float32: ``value_fn``
    receives the parameters upcast, bf16 to float32); the updates come back in the gradient's
    dtype. Complex parameters raise ``TypeError``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_lectures as jl
      >>> loss = lambda w: jnp.sum(jnp.array([1.0, 100.0]) * w**2)
      >>> w = jnp.array([1.0, 1.0])
      >>> tx = jl.scale_by_newton()
      >>> direction, state = tx.update(jax.grad(loss)(w), tx.init(w), w, value_fn=loss)
      >>> bool(jnp.allclose(direction, w))  # H^-1 g = w on a quadratic: w - direction = 0
      True
    """
    check_non_negative("damping", damping)
    check_bool("saddle_free", saddle_free)
    _check_count("max_params", max_params)

    def init_fn(params: optax.Params) -> ScaleByNewtonState:
        leaves = jax.tree.leaves(params)
        d = sum(int(np.prod(jnp.shape(p))) for p in leaves)
        itemsize = max((compute_dtype(jnp.result_type(p)).itemsize for p in leaves), default=4)
        _check_size("scale_by_newton", d, max_params, itemsize)
        zero = jnp.zeros([], jnp.int32)
        return ScaleByNewtonState(num_fallbacks=zero, num_negative_curvature=zero)

    def update_fn(
        updates: optax.Updates,
        state: ScaleByNewtonState,
        params: optax.Params | None = None,
        *,
        value_fn: Callable[..., Any] | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, ScaleByNewtonState]:
        problem = _raveled_problem("scale_by_newton", updates, params, value_fn, extra_args)
        if problem.x.size == 0:  # no entries (an empty tree): empty updates, as optax gives
            return problem.to_updates(problem.g), state
        _check_size("scale_by_newton", problem.x.size, max_params, problem.x.dtype.itemsize)
        H = jax.hessian(problem.f)(problem.x)
        H = 0.5 * (H + H.T)  # symmetric to rounding: the solvers assume it
        direction, negative = _dense_direction(H, problem.g, damping, saddle_free)
        direction, num_fallbacks = _fall_back_if_not_finite(
            direction, problem.g, state.num_fallbacks
        )
        new_state = ScaleByNewtonState(
            num_fallbacks=num_fallbacks,
            num_negative_curvature=_count_if(negative, state.num_negative_curvature),
        )
        return problem.to_updates(direction), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# Long for its docstring (69 of 79 lines: equation, symbols, equivalents, example).
def newton(
    learning_rate: optax.ScalarOrSchedule = 1.0,
    damping: float = 0.0,
    saddle_free: bool = False,
    max_params: int = 10_000,
) -> optax.GradientTransformationExtraArgs:
    r"""Newton-Raphson's method with the exact (dense) Hessian.

    Lecture:

    .. math::
        \vartheta^{(t)} = \vartheta^{(t-1)} - \eta\, H^{-1}
        \frac{\partial}{\partial\vartheta} L(B, \vartheta^{(t-1)}), \qquad
        H := \frac{\partial}{\partial\vartheta}\Big(\frac{\partial}{\partial\vartheta}
        L(B, \vartheta^{(t-1)})\Big)

    Lecture symbols: eta = ``learning_rate`` (1 is the pure Newton step, exact on a quadratic),
    L(B, .) = ``value_fn`` given to every update, H its Hessian at the current parameters. The
    inverse Hessian rescales each eigen-direction by its curvature: "a smaller curvature leads to
    a bigger update step", which is why one step solves the lecture's ill-conditioned quadratic
    :math:`\vartheta \cdot A \vartheta` where gradient descent zig-zags for hundreds.

    Dense or matrix-free? This version builds H (O(d^2) memory, 400 MB at d = 10^4 in float32) and
    factorizes it (O(d^3) time, the lecture's objection to Newton): exact whatever the
    conditioning, and affordable up to a few thousand parameters (on one CPU core about 8 ms a
    step at d = 10^3 and 6 s at d = 10^4, see ``benchmarks/bench_newton.py``). :func:`newton_cg`
    never forms H; it costs k Hessian-vector products (each a small multiple of a gradient) per
    step, O(k d), and is the one to use for neural networks, or whenever a few CG iterations
    suffice.

    Non-convex losses: plain Newton solves :math:`\nabla L = 0`, so near a saddle point or a
    maximum it is attracted to it. Safety options: ``damping`` (Levenberg-Marquardt,
    :math:`H + \lambda I`), ``saddle_free=True`` (:math:`|H|`, always a descent direction), an
    optax line search after it in a chain (``optax.scale_by_backtracking_linesearch``, which uses
    the same ``value_fn``), or :func:`newton_cg`, which stops at negative curvature. See
    :func:`scale_by_newton` for how singular and non-finite cases are handled.

    Args:
      learning_rate: eta >= 0, a number or a schedule.
      damping: lambda >= 0 added to the Hessian's diagonal.
      saddle_free: use the absolute eigenvalues of H (Dauphin et al., 2014).
      max_params: the largest parameter count accepted (a ``ValueError`` names the remedy).

    Returns:
      ``chain(scale_by_newton(damping, saddle_free, max_params),
      scale_by_learning_rate(learning_rate))``; its ``update`` needs ``params`` and the keyword
      argument ``value_fn``.

    Peers: optax ships no Newton transform. On a convex problem the float64 NumPy loop
    ``theta -= np.linalg.solve(H, g)`` takes the same steps, and
    ``scipy.optimize.minimize(method="Newton-CG", jac=..., hess=...)`` (truncated CG plus a line
    search) reaches the same minimizer; the tests check both on logistic regression.

    Dtypes: float32/float64; bf16/f16 with the Hessian and the solve in float32 (``value_fn``
    sees float32 parameters), the updates in the gradient's dtype; integer parameters get float
    updates; complex parameters raise ``TypeError``.

    References:
      Nocedal and Wright, *Numerical Optimization*, 2nd ed., 2006: section 3.4 (Hessian
      modification) and 10.3 (Levenberg-Marquardt).
      Dauphin et al., `Identifying and attacking the saddle point problem in high-dimensional
      non-convex optimization <https://arxiv.org/abs/1406.2572>`_, NeurIPS 2014.

    Example:
      >>> import jax, jax.numpy as jnp, optax, jaxopt_lectures as jl
      >>> A = jnp.array([1.0, 100.0])  # the lecture's diagonal A, a1 << a2
      >>> loss = lambda theta: jnp.sum(theta * A * theta)
      >>> tx = jl.newton()
      >>> theta = jnp.array([1.0, 1.0])
      >>> state = tx.init(theta)
      >>> updates, state = tx.update(jax.grad(loss)(theta), state, theta, value_fn=loss)
      >>> theta = optax.apply_updates(theta, updates)  # one step to the minimizer (0, 0)
      >>> float(jnp.max(jnp.abs(theta))) < 1e-6
      True
    """
    return optax.chain(
        scale_by_newton(damping=damping, saddle_free=saddle_free, max_params=max_params),
        descent(learning_rate),
    )


# --------------------------------------------------------------------------------------------
# Matrix-free Newton: Hessian-vector products and truncated conjugate gradient.
# --------------------------------------------------------------------------------------------


class _CGState(NamedTuple):
    iteration: jax.Array  # Hessian-vector products spent so far
    x: jax.Array  # current approximation of (H + damping I)^-1 g
    r: jax.Array  # residual g - (H + damping I) x
    p: jax.Array  # search direction
    rr: jax.Array  # r . r
    pp: jax.Array  # p . p, by the recurrence |r_new|^2 + beta^2 |p|^2 (r_new is orthogonal to p)
    scale: jax.Array  # the largest Rayleigh quotient p.Hp / p.p seen: a lower bound on |H|
    negative: jax.Array  # stopped at a direction of non-positive curvature
    broken: jax.Array  # a Hessian-vector product was not finite


# Long: one algorithm (Nocedal-Wright 7.1); its loop's state, test and body read together.
def _truncated_cg(
    hvp: Callable[[jax.Array], jax.Array],
    g: jax.Array,
    max_iters: Any,
    tol: Any,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Nocedal and Wright's Algorithm 7.1: approximately solve H x = g, stop at negative curvature.

    Returns (x, negative_curvature, iterations); x is NaN if a product was not finite. A direction
    of non-positive curvature met at the first iteration gives x = g, the steepest-descent
    direction; met later, the last x (a descent direction: every x built so far only saw positive
    curvature).

    The solve runs on g / 2^e, with 2^e the power of two of max|g|: x is linear in g, so this
    changes no bit of x, but the squared norms stay in range (for |g| of 1e20, |g|^2 overflows
    float32, and for 1e-25 it underflows to 0, either of which stopped CG before its first step).
    """
    g_exponent = jnp.frexp(jnp.max(jnp.abs(g), initial=0.0))[1]  # 0 for a zero or non-finite g
    g = _times_power_of_two(g, -g_exponent)
    eps = jnp.finfo(g.dtype).eps
    gg = g @ g
    # Default forcing term min(0.5, sqrt(|g|)) (|g| of the gradient itself, not the scaled one):
    # superlinear convergence near a minimum.
    g_norm = _times_power_of_two(jnp.sqrt(gg), g_exponent)
    forcing = jnp.minimum(0.5, jnp.sqrt(g_norm)) if tol is None else jnp.asarray(tol, g.dtype)
    threshold = forcing**2 * gg  # stop when |r|^2 <= threshold

    def cond_fn(s: _CGState) -> jax.Array:
        return (s.iteration < max_iters) & (s.rr > threshold) & ~s.negative & ~s.broken

    def body_fn(s: _CGState) -> _CGState:
        Hp = hvp(s.p)
        curvature = s.p @ Hp
        scale = jnp.maximum(s.scale, curvature / s.pp)
        broken = ~jnp.isfinite(curvature)
        # Non-positive to working precision: below rounding of the largest curvature seen so far.
        negative = ~broken & (curvature <= eps * scale * s.pp)
        # On a stop, alpha = 0 leaves x, r and rr as they were (p is not used again): no selects,
        # so XLA fuses each update into one pass over memory.
        alpha = jnp.where(negative | broken, 0.0, s.rr / curvature)
        x = s.x + alpha * s.p
        r = s.r - alpha * Hp
        rr = r @ r
        beta = rr / s.rr
        return _CGState(
            iteration=s.iteration + 1,
            x=x,
            r=r,
            p=r + beta * s.p,
            rr=rr,
            pp=rr + beta**2 * s.pp,
            scale=scale,
            negative=negative,
            broken=broken,
        )

    zero = jnp.zeros_like(g)
    init = _CGState(
        iteration=jnp.zeros([], jnp.int32),
        x=zero,
        r=g,
        p=g,
        rr=gg,
        pp=gg,
        scale=jnp.zeros([], g.dtype),
        negative=jnp.array(False),
        broken=jnp.array(False),
    )
    s = lax.while_loop(cond_fn, body_fn, init)
    x = jnp.where(s.negative & (s.iteration == 1), g, s.x)
    # Back to the gradient's scale; a solution beyond the dtype's range overflows to infinity.
    x = _times_power_of_two(x, g_exponent)
    x = jnp.where(s.broken, jnp.nan, x)  # reported as a non-finite solve: the caller falls back
    return x, s.negative, s.iteration


def _times_power_of_two(x: jax.Array, exponent: jax.Array) -> jax.Array:
    """x * 2**exponent, exactly (unless the result leaves the dtype's range), for |exponent| up to
    twice the dtype's largest: applied in two halves, each a power of two the dtype can hold."""
    half = exponent // 2
    for k in (half, exponent - half):
        x = x * _power_of_two(k, x.dtype)
    return x


def _power_of_two(k: jax.Array, dtype: Any) -> jax.Array:
    """2**k in ``dtype`` for an integer k within its normal exponent range, built from its bits
    (exp2 of a float may be an approximation on some backends)."""
    info = jnp.finfo(dtype)
    int_dtype = jnp.int64 if info.bits == 64 else jnp.int32
    biased = (k.astype(int_dtype) + (info.maxexp - 1)) << info.nmant
    return lax.bitcast_convert_type(biased, dtype)


# Long: a 59-line docstring; init and update share the checked arguments (optax's closure).
def scale_by_newton_cg(
    damping: float = 0.0,
    max_iters: int = 50,
    tol: float | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""A matrix-free Newton direction: truncated conjugate gradient on Hessian-vector products.

    Approximately solves :math:`(H + \lambda I)\, x_t = g_t` (:math:`\lambda` = ``damping``,
    :math:`g_t` the incoming updates) by conjugate gradient, never forming H: each iteration
    needs one Hessian-vector product :math:`Hv`, computed forward-over-reverse (a JVP of
    ``jax.grad(value_fn)``), linearized once per step with ``jax.linearize`` so the forward and
    backward pass are not redone for every v. The direction is positive (gradient-like);
    :func:`newton_cg` applies the descent sign. ``update`` needs ``params`` and the keyword
    argument ``value_fn``, as for :func:`scale_by_newton`.

    Conjugate gradient stops (Steihaug 1983; Nocedal and Wright's Algorithm 7.1, the one
    ``scipy.optimize.minimize(method="Newton-CG")`` runs) when

    - the residual is small: :math:`\|g - (H + \lambda I)x\| \le \text{tol}\,\|g\|`;
    - a search direction p has non-positive curvature, :math:`p^\top (H + \lambda I) p \le 0`
      (to rounding: at most eps times the largest curvature :math:`p^\top H p / p^\top p` seen
      so far): the quadratic model has no minimum along p, so CG returns the x built so far,
      which is a descent direction, or g itself (steepest descent) if that happens on the first
      iteration. ``state.num_negative_curvature`` counts these steps. This is what keeps the
      step away from saddle points: it never follows negative curvature towards them;
    - or after ``max_iters`` Hessian-vector products (``state.cg_iterations`` is the count).

    A non-finite result is replaced by g and counted in ``state.num_fallbacks``; so is a
    non-finite gradient, which then gives a visibly non-finite update (``optax.apply_if_finite``
    skips it) instead of CG's silent zero step. The solve does not depend on the gradient's
    scale: CG runs on g divided by the power of two of its largest entry (exact, so no bit
    changes), so a gradient of 1e20 or 1e-25, whose squared norm leaves the float32 range, gets
    its Newton step; a step that itself has no value in the dtype (beyond about 3e38 in
    float32) is a non-finite result, replaced by g and counted.

    Args:
      damping: lambda >= 0, added as ``damping * v`` to each Hessian-vector product
        (Levenberg-Marquardt; the "Hessian-free" method of Martens (2010) adapts it per step).
      max_iters: k >= 1, the most Hessian-vector products per step: the cost bound. 50 solves
        problems of moderate conditioning to the default tolerance; the exact solve needs at most
        d (in exact arithmetic).
      tol: relative residual in [0, 1) at which CG stops. ``None`` (default) uses the forcing
        term :math:`\min(0.5, \sqrt{\|g\|})` of Nocedal and Wright and scipy: loose far from a
        minimum, where an exact solve is wasted, and tightening as :math:`\|g\| \to 0`, which
        gives superlinear local convergence. A fixed number (1e-5, say) approaches the exact
        Newton step, at up to ``max_iters`` HVPs.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with a ``ScaleByNewtonCGState``.

    Cost: one linearization of the gradient (about a forward and a backward pass), then at most
    ``max_iters`` Hessian-vector products (the tangent pass only, about one gradient each) and
    O(d) vector operations per iteration: O(k d) time, O(d) memory beyond what the linearized
    gradient keeps (the activations of one forward pass).

    Dtypes: float and bf16/f16 (everything runs in at least float32: ``value_fn`` receives the
    parameters upcast); the updates come back in the gradient's dtype. Complex parameters raise
    ``TypeError``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_lectures as jl
      >>> loss = lambda w: jnp.sum(jnp.array([1.0, 100.0]) * w**2)
      >>> w = jnp.array([1.0, 1.0])
      >>> tx = jl.scale_by_newton_cg(tol=1e-6)  # never forms H: CG on Hessian-vector products
      >>> direction, state = tx.update(jax.grad(loss)(w), tx.init(w), w, value_fn=loss)
      >>> bool(jnp.allclose(direction, w, atol=1e-4))  # H^-1 g, as the dense step
      True
    """
    check_non_negative("damping", damping)
    _check_count("max_iters", max_iters)
    if tol is not None:
        check_unit_interval("tol", tol)

    def init_fn(params: optax.Params) -> ScaleByNewtonCGState:
        del params
        zero = jnp.zeros([], jnp.int32)
        return ScaleByNewtonCGState(
            num_fallbacks=zero, num_negative_curvature=zero, cg_iterations=zero
        )

    def update_fn(
        updates: optax.Updates,
        state: ScaleByNewtonCGState,
        params: optax.Params | None = None,
        *,
        value_fn: Callable[..., Any] | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, ScaleByNewtonCGState]:
        problem = _raveled_problem("scale_by_newton_cg", updates, params, value_fn, extra_args)
        # Forward-over-reverse, linearized once: hessian_vp(v) replays only the tangent pass.
        _, hessian_vp = jax.linearize(jax.grad(problem.f), problem.x)
        damping_c = jnp.asarray(damping, problem.x.dtype)

        def hvp(v: jax.Array) -> jax.Array:
            return hessian_vp(v) + damping_c * v

        direction, negative, iterations = _truncated_cg(hvp, problem.g, max_iters, tol)
        direction, num_fallbacks = _fall_back_if_not_finite(
            direction, problem.g, state.num_fallbacks
        )
        new_state = ScaleByNewtonCGState(
            num_fallbacks=num_fallbacks,
            num_negative_curvature=_count_if(negative, state.num_negative_curvature),
            cg_iterations=iterations,
        )
        return problem.to_updates(direction), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# Long for its docstring (65 of 75 lines: equation, symbols, equivalents, example).
def newton_cg(
    learning_rate: optax.ScalarOrSchedule = 1.0,
    damping: float = 0.0,
    max_iters: int = 50,
    tol: float | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Matrix-free Newton-Raphson (truncated Newton, "Newton-CG", "Hessian-free").

    Lecture:

    .. math::
        \vartheta^{(t)} = \vartheta^{(t-1)} - \eta\, H^{-1}
        \frac{\partial}{\partial\vartheta} L(B, \vartheta^{(t-1)})

    with :math:`H^{-1} g` replaced by a truncated conjugate-gradient solution that only ever
    multiplies H by vectors. Lecture symbols: eta = ``learning_rate``, L(B, .) = ``value_fn``
    given to every update, H its Hessian at the current parameters.

    The lecture's objection to Newton, O(d^3) time for the inverse Hessian against O(d) for the
    gradient, does not apply here: a Hessian-vector product costs a small multiple of a
    gradient, so a step costs O(k d) for k <= ``max_iters`` CG iterations and memory stays O(d).
    Pick this for anything beyond a few thousand parameters, or when the loss is non-convex;
    pick :func:`newton` for small problems where the exact solve is cheap.

    Non-convex losses: conjugate gradient stops at the first direction of non-positive curvature
    (Steihaug), so every step is a descent direction and the method is not attracted to saddle
    points the way plain Newton is; ``damping`` adds Levenberg-Marquardt regularization. When
    the very first CG direction has negative curvature the step is g itself, whose length is in
    the gradient's units: at ``learning_rate=1`` it can overshoot badly (in Rosenbrock's valley,
    say), so on strongly non-convex losses chain an optax line search after it
    (``optax.scale_by_backtracking_linesearch``, which takes the same ``value_fn``) or clip g
    before it (``optax.clip_by_global_norm``).

    Args:
      learning_rate: eta >= 0, a number or a schedule.
      damping: lambda >= 0 added to the Hessian's diagonal (as ``damping * v`` in each product).
      max_iters: the most Hessian-vector products per step.
      tol: relative CG residual in [0, 1), or ``None`` for the forcing term
        :math:`\min(0.5, \sqrt{\|g\|})` (see :func:`scale_by_newton_cg`).

    Returns:
      ``chain(scale_by_newton_cg(damping, max_iters, tol), scale_by_learning_rate(learning_rate))``;
      its ``update`` needs ``params`` and the keyword argument ``value_fn``.

    Peer: ``scipy.optimize.minimize(fun, x0, jac=..., hessp=..., method="Newton-CG")`` runs the
    same inner loop (Algorithm 7.1 with the same forcing term, measured there in the 1-norm) and
    follows it with a Wolfe line search; here the step length is ``learning_rate``, or chain an
    optax line search. optax has no Newton transform.

    Dtypes: as :func:`newton` (complex parameters raise ``TypeError``).

    References:
      Steihaug, `The conjugate gradient method and trust regions in large scale optimization
      <https://doi.org/10.1137/0720042>`_, SIAM J. Numer. Anal., 1983.
      Nocedal and Wright, *Numerical Optimization*, 2nd ed., 2006, Algorithm 7.1.
      Pearlmutter, Fast exact multiplication by the Hessian, Neural Computation, 1994.
      Martens, Deep learning via Hessian-free optimization, ICML 2010.

    Example:
      >>> import jax, jax.numpy as jnp, optax, jaxopt_lectures as jl
      >>> loss = lambda w: jnp.sum(jnp.log(jnp.cosh(w - 1.0))) + 0.5 * jnp.sum(w**2)
      >>> tx = jl.newton_cg()
      >>> w = jnp.zeros(1000)
      >>> state = tx.init(w)
      >>> step = jax.jit(lambda w, s: tx.update(jax.grad(loss)(w), s, w, value_fn=loss))
      >>> for _ in range(5):
      ...     updates, state = step(w, state)
      ...     w = optax.apply_updates(w, updates)
      >>> float(jnp.max(jnp.abs(jax.grad(loss)(w)))) < 1e-6
      True
    """
    return optax.chain(
        scale_by_newton_cg(damping=damping, max_iters=max_iters, tol=tol),
        descent(learning_rate),
    )
