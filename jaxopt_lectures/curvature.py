r"""The shape of the loss around a point: curvature and landscape measures for any JAX model.

The lecture's second half reads the loss surface: gradients that vanish with depth, curvature that
Newton's method uses and adaptive methods approximate, rougher surfaces for deeper networks, batch
normalization making the loss "smoother". This module measures those things for a loss

.. math::
    L(\vartheta) = \mathrm{loss\_fn}(\vartheta, \mathrm{batch}),

with ``params`` (:math:`\vartheta`) any pytree of floating-point arrays: a plain dict or list, a
flax linen variable dict (``loss_fn = lambda p, b: xent(model.apply(p, b[0]), b[1])``), or the
parameter state of a flax nnx model (``graphdef, state = nnx.split(model, nnx.Param, ...)`` and
``loss_fn = lambda s, b: xent(nnx.merge(graphdef, s, rest)(b[0]), b[1])``).

``batch`` is one batch, any pytree ``loss_fn`` takes as its second argument (an ``(x, y)`` tuple,
a dict, ``None``). To average the Hessian over several batches, pass them as the keyword
``batches=`` (an iterable) instead: the measures are then those of the mean loss
:math:`\frac{1}{B} \sum_b L_b`, whose Hessian is the mean of the batches' Hessians.

Every measure is built on the Hessian-vector product :func:`hvp` (forward-over-reverse, the
Hessian is never formed):

- :func:`hessian_eigenvalues`: the largest and/or smallest eigenvalues and their eigenvectors,
  by Lanczos with full reorthogonalization;
- :func:`hessian_trace`: Hutchinson's estimator with its standard error;
- :func:`hessian_spectrum`: the eigenvalue density by stochastic Lanczos quadrature;
- :func:`filter_normalized_direction` and :func:`loss_slice`: Li et al.'s 1-D and 2-D slices;
- :func:`smoothness_along_gradient`: Santurkar et al.'s loss range, gradient predictiveness and
  effective beta-smoothness;
- :func:`per_layer_grad_norms` (from :mod:`jaxopt_lectures.diagnostics`, re-exported here): where
  gradients vanish or explode.

Every function traces under :func:`jax.jit` and :func:`jax.vmap` (counts such as ``k`` and
``num_iterations`` are static), works in float32 and float64, and on parameters and batches
sharded over a device mesh: the functions only combine ``loss_fn``'s gradients, so the mean over a
batch sharded along a data axis becomes XLA's all-reduce, and the Hessian-vector product of a
data-parallel loss is the average over the data axis.

Hutchinson's probes and quadratic forms come from `matfree <https://pnkraemer.github.io/matfree/>`_
(pure JAX, MIT), an optional dependency: ``pip install "jaxopt_lectures[curvature]"``. Lanczos is
written here, tested against matfree's ``decomp.tridiag_sym``, because matfree's version needs
twice the memory (see ``docs/curvature.md``). This module adds the pytree adapters, the batching,
the checks and the lecture's measures.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike

from jaxopt_lectures._checks import check_int
from jaxopt_lectures._linalg import eigh
from jaxopt_lectures.diagnostics import per_layer_grad_norms

__all__ = [
    "SmoothnessMeasures",
    "Spectrum",
    "filter_normalized_direction",
    "hessian_eigenvalues",
    "hessian_spectrum",
    "hessian_trace",
    "hvp",
    "loss_slice",
    "per_layer_grad_norms",
    "smoothness_along_gradient",
]

LossFn = Callable[[Any, Any], jax.Array]
_WHICH = ("largest", "smallest", "both")


# ---------------------------------------------------------------------------------------------
# Input checks and the batch-averaged loss


def _matfree() -> Any:
    """The ``matfree`` package, or an ``ImportError`` that says how to install it."""
    try:
        return importlib.import_module("matfree.stochtrace")
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "jaxopt_lectures.curvature.hessian_trace needs matfree: "
            'pip install "jaxopt_lectures[curvature]" (or pip install matfree)'
        ) from error


def _check_params(params: Any) -> tuple[int, Any]:
    """The number of parameters and their common dtype; a clear error for non-float leaves."""
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError("params must be a pytree with at least one array, got an empty pytree")
    for leaf in leaves:
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"params must hold floating-point arrays (the Hessian is taken with respect to "
                f"them), got a leaf of dtype {dtype}"
            )
    size = sum(int(np.prod(jnp.shape(leaf))) for leaf in leaves)
    return size, jnp.result_type(*leaves)


class _ByIdentity:
    """``loss_fn`` as a static argument of ``jax.jit``, hashed by identity: a callable need not
    be hashable (a flax linen module's ``apply`` is a bound method of a dataclass), and the same
    function reuses its compiled program."""

    __slots__ = ("fn",)

    def __init__(self, fn: LossFn) -> None:
        self.fn = fn

    def __hash__(self) -> int:
        return id(self.fn)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ByIdentity) and other.fn is self.fn

    def __call__(self, params: Any, batch: Any) -> jax.Array:
        return self.fn(params, batch)


def _same_structure(a: Any, b: Any) -> bool:
    return bool(a == b)


def _check_like(name: str, tree: Any, params: Any) -> Any:
    """``tree`` with the structure and leaf shapes of ``params``, cast to its dtypes."""
    tree_def, params_def = jax.tree.structure(tree), jax.tree.structure(params)
    if not _same_structure(tree_def, params_def):
        raise ValueError(
            f"{name} must have the structure of params: got {tree_def}, params have {params_def}"
        )
    out = []
    for path_leaf, p in zip(
        jax.tree_util.tree_leaves_with_path(tree), jax.tree.leaves(params), strict=True
    ):
        path, leaf = path_leaf
        if jnp.shape(leaf) != jnp.shape(p):
            raise ValueError(
                f"{name}{jax.tree_util.keystr(path)} has shape {jnp.shape(leaf)}, the parameter "
                f"has shape {jnp.shape(p)}"
            )
        out.append(jnp.asarray(leaf, jnp.result_type(p)))
    return jax.tree.unflatten(params_def, out)


def _stacked(batches: Sequence[Any]) -> Any | None:
    """The batches stacked along a new leading axis, or None where their shapes differ."""
    first = jax.tree.structure(batches[0])
    if not all(_same_structure(jax.tree.structure(b), first) for b in batches):
        return None
    shapes = [tuple(jnp.shape(leaf) for leaf in jax.tree.leaves(b)) for b in batches]
    if any(s != shapes[0] for s in shapes):
        return None
    return jax.tree.map(lambda *xs: jnp.stack(xs), *batches)


def _evaluate(loss_fn: LossFn, mode: str, params: Any, data: Any) -> jax.Array:
    """The loss at ``params``: on one batch (``mode="one"``), or the mean over batches stacked
    along a leading axis (``"stacked"``: one loss program, mapped) or kept in a tuple
    (``"tuple"``: batches of different shapes, one loss term each)."""
    if mode == "one":
        return loss_fn(params, data)
    if mode == "stacked":
        return jnp.mean(lax.map(lambda b: loss_fn(params, b), data))
    return sum(loss_fn(params, b) for b in data) / len(data)  # type: ignore[return-value]


def _data(
    loss_fn: LossFn, params: Any, batch: Any, batches: Iterable[Any] | None
) -> tuple[str, Any]:
    """``(mode, data)`` for :func:`_evaluate`, after checking that the loss is a scalar."""
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(params, batch), got {loss_fn!r}")
    if batches is None:
        mode, data = "one", batch
    else:
        if batch is not None:
            raise ValueError("pass either batch or batches=, not both")
        many = tuple(batches)
        if not many:
            raise ValueError("batches must hold at least one batch, got an empty iterable")
        stacked = _stacked(many)
        mode, data = ("tuple", many) if stacked is None else ("stacked", stacked)
    out = jax.eval_shape(lambda p: _evaluate(loss_fn, mode, p, data), params)
    if not hasattr(out, "shape") or out.shape != ():
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(
            f"loss_fn must return a scalar (the loss, averaged over the batch), got shape {shape}"
        )
    return mode, data


def _hvp_of(objective: Callable[[Any], jax.Array], params: Any) -> Callable[[Any], Any]:
    """``v -> H v`` at ``params``: forward-mode derivative of the reverse-mode gradient,
    linearized once so that the gradient's forward pass is shared by every product."""
    _, hvp_lin = jax.linearize(jax.grad(objective), params)
    return hvp_lin


def _check_key(key: Any) -> jax.Array:
    if not isinstance(key, jax.Array) or not (
        jnp.issubdtype(key.dtype, jax.dtypes.prng_key) or (key.dtype == jnp.uint32)
    ):
        raise TypeError(f"key must be a JAX PRNG key (jax.random.key(seed)), got {key!r}")
    return key


# ---------------------------------------------------------------------------------------------
# Hessian-vector products


def hvp(
    loss_fn: LossFn,
    params: Any,
    v: Any,
    batch: Any = None,
    *,
    batches: Iterable[Any] | None = None,
) -> Any:
    r"""The Hessian-vector product :math:`H v = \nabla^2 L(\vartheta)\, v`, pytree in and out.

    .. math::
        H v = \frac{d}{d\varepsilon} \nabla L(\vartheta + \varepsilon v)\Big|_{\varepsilon = 0}

    computed forward-over-reverse (``jax.jvp`` of ``jax.grad``, through ``jax.linearize``): one
    product costs about as much as two or three gradients, and the Hessian (of size
    :math:`d^2`) is never formed. Newton's method (lecture: :math:`\vartheta - \eta H^{-1} g`)
    needs :math:`H` itself; Newton-CG and every measure of this module need only such products.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``, twice differentiable.
      params: the point :math:`\vartheta`, any pytree of floating-point arrays.
      v: the direction, a pytree with the structure and leaf shapes of ``params`` (cast to their
        dtypes).
      batch: passed to ``loss_fn`` as its second argument.
      batches: instead of ``batch``, several batches: the product is that of the mean loss (the
        mean of the batches' products).

    Returns:
      :math:`H v`, a pytree like ``params``.

    Raises:
      ValueError: ``loss_fn`` does not return a scalar; ``v`` is not shaped like ``params``.

    Equivalent to ``torch.func.jvp(torch.func.grad(f), (p,), (v,))[1]`` (PyTorch's
    forward-over-reverse) and to ``torch.autograd.functional.hvp``.

    Example:
      >>> import jax.numpy as jnp, jaxopt_lectures as jl
      >>> loss = lambda w, x: 0.5 * jnp.sum((x * w) ** 2)  # H = diag(x^2)
      >>> jl.curvature.hvp(loss, jnp.ones(2), jnp.array([1.0, 1.0]), jnp.array([1.0, 3.0]))
      Array([1., 9.], dtype=float32)
    """
    _check_params(params)
    v = _check_like("v", v, params)
    mode, data = _data(loss_fn, params, batch, batches)
    grad_fn = jax.grad(lambda p: _evaluate(loss_fn, mode, p, data))
    return jax.jvp(grad_fn, (params,), (v,))[1]


# ---------------------------------------------------------------------------------------------
# Lanczos


def _flat_operator(objective: Callable[[Any], jax.Array], params: Any) -> tuple[Any, Any, Any]:
    """The flat parameter vector, ``unravel``, and ``u -> H u`` on flat vectors."""
    flat, unravel = ravel_pytree(params)
    hvp_tree = _hvp_of(objective, params)

    def matvec(u: jax.Array) -> jax.Array:
        return ravel_pytree(hvp_tree(unravel(u)))[0]

    return flat, unravel, matvec


def _orthogonalize(Q: jax.Array, w: jax.Array) -> jax.Array:
    """``(I - Q^T Q)^2 w``: rows of Q not yet written are zero and contribute nothing."""
    w = w - (Q @ w) @ Q
    return w - (Q @ w) @ Q


def _extend(
    matvec: Callable[[jax.Array], jax.Array],
    start: jax.Array | int,
    carry: tuple[jax.Array, jax.Array, jax.Array, jax.Array],
    key: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    r"""Lanczos steps ``start, ..., m - 1`` with full reorthogonalization.

    ``carry = (Q, alphas, betas, q)``: the ``(m, d)`` basis (rows from ``start`` on are zero),
    the diagonal and off-diagonal of T so far and the next unit vector q. Step j writes
    :math:`q_j = q`, :math:`\alpha_j = q_j^\top H q_j` and :math:`\beta_j = \lVert w \rVert`
    for :math:`w = (I - Q Q^\top)^2 H q_j`, and hands on :math:`w / \beta_j`; after step
    m - 1 that is the residual direction and ``betas[m - 1]`` its norm.
    """
    Q = carry[0]
    m, d = Q.shape
    dtype = Q.dtype
    tiny = jnp.finfo(dtype).eps * 10

    def step(j: jax.Array, carry: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        Q, alphas, betas, q = carry
        Q = lax.dynamic_update_slice(Q, q[None, :], (j, jnp.zeros((), j.dtype)))
        Hq = matvec(q)
        alpha = jnp.vdot(q, Hq)
        w = _orthogonalize(Q, Hq)
        beta = jnp.linalg.norm(w)
        scale = jnp.maximum(jnp.max(jnp.abs(alphas)), jnp.abs(alpha))
        exhausted = beta <= tiny * jnp.maximum(scale, jnp.finfo(dtype).tiny)

        def fresh(_: None) -> jax.Array:
            r = _orthogonalize(Q, jax.random.normal(jax.random.fold_in(key, j), (d,), dtype))
            return r / jnp.linalg.norm(r)

        q = lax.cond(exhausted, fresh, lambda _: w / jnp.where(beta > 0, beta, 1), None)
        alphas = alphas.at[j].set(alpha)
        betas = betas.at[j].set(jnp.where(exhausted, 0, beta))
        return Q, alphas, betas, q

    return lax.fori_loop(start, m, step, carry)


def _tridiagonal(alphas: jax.Array, betas: jax.Array) -> jax.Array:
    off = betas[:-1]
    return jnp.diag(alphas) + jnp.diag(off, 1) + jnp.diag(off, -1)


def _lanczos(
    matvec: Callable[[jax.Array], jax.Array], v0: jax.Array, m: int, key: jax.Array
) -> tuple[jax.Array, jax.Array]:
    r"""``m`` steps of Lanczos with full reorthogonalization from ``v0``: the ``(m, d)`` basis Q
    (orthonormal rows :math:`q_1 = v_0 / \lVert v_0 \rVert, \ldots`) and the ``(m, m)``
    tridiagonal :math:`T = Q H Q^\top`.

    .. math::
        \alpha_j = q_j^\top H q_j, \qquad
        w = (I - Q Q^\top)^2\, H q_j, \qquad
        \beta_j = \lVert w \rVert, \qquad q_{j+1} = w / \beta_j

    The projection :math:`(I - Q Q^\top)` against every stored vector is applied twice ("twice is
    enough"), which keeps Q orthonormal to rounding and the Ritz values free of ghost copies; it
    subsumes the three-term recurrence. Where the Krylov space is exhausted (:math:`\beta_j`
    at rounding level: H has fewer than m distinct eigenvalues along v0), the next vector is a
    random one orthogonalized against Q and :math:`\beta_j = 0`, so T splits into blocks whose
    eigenvalues are all eigenvalues of H.

    This is ``matfree.decomp.tridiag_sym(m, reortho="full")`` with the basis stored as rows
    (``tests/test_curvature.py`` checks that both give the same T): matfree's Arnoldi-based
    version keeps the basis as columns and returns it transposed, which costs twice the memory
    (2 m parameter vectors) and about twice the time at a million parameters on a CPU
    (``benchmarks/bench_curvature.py``).
    """
    d = v0.shape[0]
    zeros = jnp.zeros((m,), v0.dtype)
    q0 = v0 / jnp.linalg.norm(v0)
    Q, alphas, betas, _ = _extend(matvec, 0, (jnp.zeros((m, d), v0.dtype), zeros, zeros, q0), key)
    return Q, _tridiagonal(alphas, betas)


def _rotate_rows(Q: jax.Array, Y: jax.Array) -> jax.Array:
    """``Q`` with its first ``l`` rows replaced by ``Y^T Q`` and the rest by zeros, in place:
    block of columns by block of columns (about m blocks), so that the scratch memory is one
    block, about one parameter vector, rather than the l new rows at once."""
    m, d = Q.shape
    l = Y.shape[1]  # noqa: E741
    width = max(1, -(-d // m))
    count, rest = divmod(d, width)

    def rotate(block: jax.Array) -> jax.Array:
        return jnp.zeros_like(block).at[:l].set(Y.T @ block)

    def body(i: jax.Array, Q: jax.Array) -> jax.Array:
        start = i * width
        block = lax.dynamic_slice_in_dim(Q, start, width, axis=1)
        return lax.dynamic_update_slice_in_dim(Q, rotate(block), start, axis=1)

    Q = lax.fori_loop(0, count, body, Q)
    if rest:
        Q = Q.at[:, count * width :].set(rotate(Q[:, count * width :]))
    return Q


def _thick_restart_lanczos(
    matvec: Callable[[jax.Array], jax.Array],
    v0: jax.Array,
    m: int,
    wanted: np.ndarray,
    key: jax.Array,
    tol: float,
    max_restarts: int,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    r"""Thick-restart Lanczos (Wu and Simon 2000) in a basis of at most ``m`` vectors.

    ``wanted`` holds the positions, in the ascending order of the Ritz values, of the l Ritz
    pairs to converge and keep (l < m unless ``max_restarts`` is 0). A cycle runs Lanczos until
    the basis holds m vectors, :math:`H Q_m^\top = Q_m^\top T_m + \beta_m q_{m+1} e_m^\top`;
    the Ritz pair :math:`(\theta_i, Q_m^\top s_i)` has residual norm
    :math:`\lVert H u_i - \theta_i u_i \rVert = |\beta_m s_{m,i}|`. While a wanted residual
    exceeds ``tol`` times the largest :math:`|\theta|` and restarts are left, the basis is
    replaced by the l wanted Ritz vectors and :math:`q_{m+1}`,

    .. math::
        T \leftarrow \begin{pmatrix} \mathrm{diag}(\theta_{\text{wanted}}) & b \\
        b^\top & \alpha_{l+1} \end{pmatrix}, \qquad b_i = \beta_m s_{m,i},

    and m - l fresh Lanczos vectors, reorthogonalized against the whole basis, extend it again:
    T stays tridiagonal apart from the arrow b. The basis never exceeds m vectors, so memory
    does not grow with the number of restarts. The first cycle is plain Lanczos
    (:func:`_lanczos`): where it converges, the result is the same to the last bit.

    Returns ``(Q, theta, S, restarts)``: the last basis, the Ritz values (ascending) and
    vectors of its T, and how many restarts ran.
    """
    d = v0.shape[0]
    dtype = v0.dtype
    l = wanted.shape[0]  # noqa: E741 (Wu and Simon's symbol)
    zeros = jnp.zeros((m,), dtype)

    def project(alphas: jax.Array, betas: jax.Array, arrow: jax.Array) -> jax.Array:
        if l >= m:  # no room to restart: plain Lanczos, no arrow
            return _tridiagonal(alphas, betas)
        bordered = jnp.zeros((m, m), dtype).at[:, l].set(arrow).at[l, :].add(arrow)
        return _tridiagonal(alphas, betas) + bordered

    State = tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]

    def ritz(state: State) -> tuple[jax.Array, jax.Array, jax.Array]:
        _, alphas, betas, arrow, _, _ = state
        theta, S = eigh(project(alphas, betas, arrow))  # _linalg: safe beside other programs
        residual = jnp.abs(betas[m - 1] * S[m - 1, wanted])
        done = jnp.all(residual <= tol * jnp.max(jnp.abs(theta)))
        return theta, S, done

    def cond(state: State) -> jax.Array:
        return (state[-1] < max_restarts) & ~ritz(state)[2]

    def restart(state: State) -> State:
        Q, alphas, betas, _, q, restarts = state
        theta, S, _ = ritz(state)
        Y = S[:, wanted]  # (m, l)
        Q = _rotate_rows(Q, Y)  # rows: the l wanted Ritz vectors, then zeros
        alphas = zeros.at[:l].set(theta[wanted])
        arrow = zeros.at[:l].set(betas[m - 1] * Y[m - 1])
        Q, alphas, betas, q = _extend(
            matvec, l, (Q, alphas, zeros, q), jax.random.fold_in(key, restarts + 1)
        )
        return Q, alphas, betas, arrow, q, restarts + 1

    q0 = v0 / jnp.linalg.norm(v0)
    Q, alphas, betas, q = _extend(matvec, 0, (jnp.zeros((m, d), dtype), zeros, zeros, q0), key)
    state: State = (Q, alphas, betas, zeros, q, jnp.zeros((), jnp.int32))
    if max_restarts > 0 and l < m:
        state = lax.while_loop(cond, restart, state)
    theta, S, _ = ritz(state)
    return state[0], theta, S, state[-1]


def hessian_eigenvalues(
    loss_fn: LossFn,
    params: Any,
    batch: Any = None,
    *,
    k: int,
    which: str = "largest",
    key: jax.Array,
    num_iterations: int | None = None,
    tol: float | None = None,
    max_restarts: int = 10,
    batches: Iterable[Any] | None = None,
) -> tuple[jax.Array, Any]:
    r"""The Hessian's ``k`` largest and/or smallest eigenvalues and their eigenvectors (Lanczos).

    Lanczos builds an orthonormal basis :math:`Q_m = [q_1, \ldots, q_m]` of the Krylov space
    :math:`\mathrm{span}\{q_1, H q_1, \ldots, H^{m-1} q_1\}` from a random start :math:`q_1`,
    one Hessian-vector product per step, in which :math:`H` is tridiagonal:

    .. math::
        T_m = Q_m^\top H Q_m, \qquad T_m s_i = \theta_i s_i, \qquad
        \lambda_i \approx \theta_i, \quad u_i \approx Q_m s_i .

    The Ritz values :math:`\theta_i` at both ends of the spectrum converge first, much faster than
    power iteration (:func:`jaxopt_lectures.diagnostics.hessian_top_eigenvalue`), and Lanczos
    finds the most negative eigenvalue as easily as the largest. Every new basis vector is
    reorthogonalized against all earlier ones (full reorthogonalization), which keeps ghost copies
    of converged eigenvalues out at the price of keeping the m basis vectors.

    The basis never grows beyond m = ``num_iterations`` vectors: where the wanted Ritz pairs have
    not converged after m steps, Lanczos restarts thick (Wu and Simon 2000): it keeps the r wanted
    Ritz vectors (r = k, or 2 k for ``"both"``: both ends are kept), adds the residual direction
    and extends the basis by m - r fresh, fully reorthogonalized vectors, until every wanted Ritz
    pair has residual

    .. math::
        \lVert H u_i - \theta_i u_i \rVert = |\beta_m s_{m,i}|
        \le \mathrm{tol} \cdot \max_j |\theta_j|

    or ``max_restarts`` restarts have run. The memory is the m basis vectors (r Ritz vectors and
    m - r working vectors) plus a few d-sized buffers, whatever the number of restarts (the
    restart rotates the basis in place); each restart costs m - r Hessian-vector products.
    Where the first m steps converge, the result is that of plain Lanczos to the last bit. A
    Ritz value with residual :math:`\rho` is within :math:`\rho` of an eigenvalue, and within
    :math:`\rho^2 / \mathrm{gap}` once it is separated from the rest of the spectrum by gap.

    Li et al.'s (2018) non-convexity ratio :math:`|\lambda_{min} / \lambda_{max}|` is
    ``abs(eigenvalues[-1] / eigenvalues[0])`` for ``which="both"``; Cohen et al.'s "edge of
    stability" compares :math:`\lambda_{max}` with :math:`2/\eta`.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``, twice differentiable.
      params: the point, any pytree of floating-point arrays (d numbers in all).
      batch: passed to ``loss_fn`` as its second argument.
      k: how many eigenvalues from each requested end, an int in [1, d] (``2 k <= d`` for
        ``"both"``).
      which: ``"largest"`` (the k largest, algebraically), ``"smallest"`` (the k smallest, most
        negative first in the lecture's saddle-point pictures) or ``"both"`` (the k largest then
        the k smallest).
      key: a PRNG key for Lanczos' random start vector.
      num_iterations: m, the size of the Lanczos basis (the d-sized vectors kept in memory, and
        the Hessian-vector products of the first cycle), in [r, d] with r the number of
        eigenvalues returned (k, or 2 k for ``"both"``); with m = r there is no room to restart.
        Default: ``min(d, max(30, r + 20))``: r eigenvectors and 20 working vectors at most
        (restarts converge what the first cycle leaves). A larger m converges in fewer products
        (the extreme eigenvalues' error falls geometrically with the basis size); a smaller one
        saves memory and restarts more often. ``m = d`` is exact up to rounding.
      tol: the residual tolerance relative to the largest Ritz value's magnitude, a float >= 0.
        Default (None): the square root of the dtype's machine epsilon (about 1.5e-8 in float64,
        3.5e-4 in float32), which puts the converged eigenvalues at rounding level when they are
        separated. 0 runs every restart.
      max_restarts: how many thick restarts at most, an int >= 0 (0: plain Lanczos with m
        steps, the cost and result of earlier versions). It bounds the time, not the memory;
        the result is returned either way, converged or not.
      batches: instead of ``batch``, several batches (the Hessian of their mean loss).

    Returns:
      ``(eigenvalues, eigenvectors)``: the eigenvalues sorted in descending order, shape ``(k,)``
      (``(2 k,)`` for ``"both"``), and the unit eigenvectors as a pytree like ``params`` with a
      leading axis of the same size (``jax.tree.map(lambda a: a[i], eigenvectors)`` is the i-th).

    Raises:
      ValueError: ``loss_fn`` does not return a scalar; ``k``, ``num_iterations``, ``tol`` or
        ``max_restarts`` out of range; unknown ``which``.

    PyTorch: PyHessian's ``hessian.eigenvalues`` (power iteration with deflation) and
    hessian-eigenthings' Lanczos (``scipy.sparse.linalg.eigsh`` on Hessian-vector products) give
    the same numbers for converged eigenvalues. ``scipy.sparse.linalg.eigsh(H, k, ncv=m,
    maxiter=..., tol=...)`` (ARPACK's implicitly restarted Lanczos) is the closest analogue of
    ``num_iterations``, ``max_restarts`` and ``tol`` (ARPACK's ``tol`` is relative to each Ritz
    value, this one to the largest).

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_lectures as jl
      >>> loss = lambda w, c: 0.5 * jnp.sum(c * w**2)  # H = diag(c)
      >>> c = jnp.array([4.0, -1.0, 2.0, 0.5])
      >>> vals, vecs = jl.curvature.hessian_eigenvalues(
      ...     loss, jnp.ones(4), c, k=1, which="both", key=jax.random.key(0), num_iterations=4)
      >>> vals.round(4)
      Array([ 4., -1.], dtype=float32)
      >>> jnp.abs(vecs[0]).round(4)
      Array([1., 0., 0., 0.], dtype=float32)

    References:
      Lanczos (1950), "An iteration method for the solution of the eigenvalue problem of linear
      differential and integral operators"; Wu and Simon (2000), "Thick-restart Lanczos method
      for large symmetric eigenvalue problems"; Ghorbani, Krishnan and Xiao (2019), "An
      Investigation into Neural Net Optimization via Hessian Eigenvalue Density".
    """
    d, _dtype = _check_params(params)
    if which not in _WHICH:
        raise ValueError(f"which must be one of {_WHICH}, got {which!r}")
    check_int("k", k)
    wanted = 2 * k if which == "both" else k
    if wanted > d:
        raise ValueError(
            f"k must be at most the number of parameters d = {d}"
            + (" divided by 2 for which='both'" if which == "both" else "")
            + f", got k = {k}"
        )
    m = num_iterations if num_iterations is not None else min(d, max(30, wanted + 20))
    check_int("num_iterations", m)
    if not wanted <= m <= d:
        raise ValueError(
            f"num_iterations must be in [{wanted}, d = {d}] (at least the number of eigenvalues "
            f"returned, at most the number of parameters), got {m}"
        )
    if tol is None:
        tol = float(np.sqrt(np.finfo(_dtype).eps))
    if isinstance(tol, bool) or not isinstance(tol, int | float) or not 0 <= tol < np.inf:
        raise ValueError(f"tol must be a float >= 0 (or None for the default), got {tol!r}")
    check_int("max_restarts", max_restarts, minimum=0)
    key = _check_key(key)
    mode, data = _data(loss_fn, params, batch, batches)
    return _eigen(
        _ByIdentity(loss_fn), mode, params, data, key, k, which, m, float(tol), max_restarts
    )


@functools.partial(jax.jit, static_argnums=(0, 1, 5, 6, 7, 8, 9))
def _eigen(
    loss_fn: LossFn,
    mode: str,
    params: Any,
    data: Any,
    key: jax.Array,
    k: int,
    which: str,
    m: int,
    tol: float,
    max_restarts: int,
) -> tuple[jax.Array, Any]:
    objective = functools.partial(_evaluate, loss_fn, mode, data=data)
    flat, unravel, matvec = _flat_operator(objective, params)
    v0 = jax.random.normal(key, flat.shape, flat.dtype)
    top, bottom = np.arange(m - k, m), np.arange(k)
    wanted = {"largest": top, "smallest": bottom, "both": np.concatenate([top, bottom])}[which]
    # ascending Ritz values, columns of S: their vectors in Q's basis
    Q, theta, S, _ = _thick_restart_lanczos(
        matvec, v0, m, wanted, jax.random.fold_in(key, 1), tol, max_restarts
    )
    if which == "largest":
        index = jnp.arange(m - 1, m - 1 - k, -1)
    elif which == "smallest":
        index = jnp.arange(k - 1, -1, -1)
    else:
        index = jnp.concatenate([jnp.arange(m - 1, m - 1 - k, -1), jnp.arange(k - 1, -1, -1)])
    vectors = S[:, index].T @ Q  # (k, d): u_i = Q^T s_i, unit length since Q's rows are orthonormal
    return theta[index], jax.vmap(unravel)(vectors)


# ---------------------------------------------------------------------------------------------
# Hutchinson's trace and the spectral density


def _probe_map(fn: Callable[[jax.Array], Any], keys: jax.Array, batch_size: int | None) -> Any:
    """``fn`` over ``keys``: all at once (``vmap``) or ``batch_size`` at a time (``lax.map``)."""
    if batch_size is None or batch_size >= keys.shape[0]:
        return jax.vmap(fn)(keys)
    return lax.map(fn, keys, batch_size=batch_size)


def hessian_trace(
    loss_fn: LossFn,
    params: Any,
    batch: Any = None,
    *,
    num_samples: int,
    key: jax.Array,
    batches: Iterable[Any] | None = None,
    batch_size: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    r"""Hutchinson's estimate of the Hessian's trace :math:`\sum_i \lambda_i`, with its standard
    error.

    .. math::
        \mathrm{tr}(H) = \mathbb{E}[z^\top H z] \approx \frac{1}{n} \sum_{j=1}^n z_j^\top H z_j,
        \qquad \mathrm{SE} = \frac{s}{\sqrt n}

    with Rademacher probes :math:`z_j` (independent signs :math:`\pm 1`, the lowest-variance
    choice among probes with independent entries: :math:`\mathrm{Var}(z^\top H z) =
    2 \sum_{i \ne j} H_{ij}^2`) and :math:`s` the sample standard deviation of the n values
    :math:`z_j^\top H z_j`. The trace is the sum of the per-parameter curvatures the adaptive
    methods approximate (their diagonal, :math:`\mathrm{tr}(H) = \sum_i H_{ii}`), and the mean
    eigenvalue times d. The probes come from ``matfree.stochtrace.sampler_signs``, the products
    :math:`z^\top H z` from its ``monte_carlo_trace`` integrand; probe j is
    ``jax.random.rademacher(keys[j], (1, d))`` with ``keys = jax.random.split(key, num_samples)``,
    cut into leaves like ``jax.flatten_util.ravel_pytree(params)``, so a peer can redraw them.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``, twice differentiable.
      params: the point, any pytree of floating-point arrays.
      batch: passed to ``loss_fn`` as its second argument.
      num_samples: the number n of probes (Hessian-vector products), an int >= 2.
      key: a PRNG key for the probes.
      batches: instead of ``batch``, several batches (the Hessian of their mean loss).
      batch_size: how many probes are evaluated at once (``lax.map``'s ``batch_size``); ``None``:
        all of them (fastest; memory of ``num_samples`` parameter-sized vectors).

    Returns:
      ``(estimate, standard_error)``, two scalars in the parameters' dtype.

    PyTorch: PyHessian's ``hessian.trace()`` draws the same Rademacher probes and averages
    :math:`z^\top H z` (without a standard error).

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_lectures as jl
      >>> loss = lambda w, c: 0.5 * jnp.sum(c * w**2)  # diagonal H: every probe gives the trace
      >>> t, se = jl.curvature.hessian_trace(
      ...     loss, jnp.ones(3), jnp.array([1.0, 2.0, 3.0]), num_samples=4, key=jax.random.key(0))
      >>> float(t), float(se)
      (6.0, 0.0)

    References:
      Hutchinson (1990), "A stochastic estimator of the trace of the influence matrix for
      Laplacian smoothing splines"; Yao, Gholami, Keutzer and Mahoney (2020), "PyHessian".
    """
    _check_params(params)
    check_int("num_samples", num_samples, minimum=2)
    if batch_size is not None:
        check_int("batch_size", batch_size)
    key = _check_key(key)
    mode, data = _data(loss_fn, params, batch, batches)
    return _trace(_ByIdentity(loss_fn), mode, params, data, key, num_samples, batch_size)


@functools.partial(jax.jit, static_argnums=(0, 1, 5, 6))
def _trace(
    loss_fn: LossFn,
    mode: str,
    params: Any,
    data: Any,
    key: jax.Array,
    n: int,
    batch_size: int | None,
) -> tuple[jax.Array, jax.Array]:
    objective = functools.partial(_evaluate, loss_fn, mode, data=data)
    stochtrace = _matfree()
    hvp_tree = _hvp_of(objective, params)
    sampler = stochtrace.sampler_signs(params, num=1)
    integrand = stochtrace.monte_carlo_trace()

    def quadratic_form(k: jax.Array) -> jax.Array:
        z = jax.tree.map(lambda a: a[0], sampler(k))
        return integrand(hvp_tree, z)  # z^T H z

    values = _probe_map(quadratic_form, jax.random.split(key, n), batch_size)
    return jnp.mean(values), jnp.std(values, ddof=1) / jnp.sqrt(jnp.asarray(n, values.dtype))


class Spectrum(NamedTuple):
    r"""The Hessian's eigenvalue density from stochastic Lanczos quadrature.

    For probe j, the Gauss quadrature nodes :math:`\theta_{j,i}` (Ritz values) and weights
    :math:`w_{j,i}` (squared first components of the Ritz vectors, summing to 1) give
    :math:`\frac{z_j^\top f(H) z_j}{z_j^\top z_j} \approx \sum_i w_{j,i} f(\theta_{j,i})`,
    exactly for polynomials f of degree below 2m; averaged over probes this estimates
    :math:`\frac1d \mathrm{tr} f(H) = \frac1d \sum_i f(\lambda_i)`, the integral of f against the
    spectral density. :meth:`moment` evaluates it for :math:`f(\lambda) = \lambda^p`.
    """

    nodes: jax.Array  # (num_probes, num_iterations): Ritz values of each probe
    weights: jax.Array  # (num_probes, num_iterations): their quadrature weights, rows sum to 1
    grid: jax.Array  # (grid_size,): eigenvalues at which the density is evaluated
    density: jax.Array  # (grid_size,): the Gaussian-smoothed density on the grid (integrates to 1)

    def moment(self, power: int) -> tuple[jax.Array, jax.Array]:
        r"""The spectral moment :math:`\frac1d \mathrm{tr}(H^p) = \frac1d \sum_i \lambda_i^p`:
        ``(estimate, standard_error)`` over the probes (exact per probe for ``2 m > p``)."""
        per_probe = jnp.sum(self.weights * self.nodes**power, axis=-1)
        n = per_probe.shape[0]
        se = jnp.std(per_probe, ddof=1) / np.sqrt(n) if n > 1 else jnp.full((), jnp.nan)
        return jnp.mean(per_probe), se


def hessian_spectrum(
    loss_fn: LossFn,
    params: Any,
    batch: Any = None,
    *,
    num_probes: int,
    num_iterations: int,
    key: jax.Array,
    batches: Iterable[Any] | None = None,
    grid_size: int = 512,
    sigma: float | None = None,
    batch_size: int | None = None,
) -> Spectrum:
    r"""The Hessian's eigenvalue spectral density by stochastic Lanczos quadrature (SLQ).

    For each of ``num_probes`` random unit vectors :math:`z_j` (Rademacher signs / :math:`\sqrt d`),
    ``num_iterations`` = m Lanczos steps from :math:`z_j` give :math:`T_j = S_j \Theta_j S_j^\top`;
    the density

    .. math::
        \phi(t) = \frac1d \sum_{i=1}^d \delta(t - \lambda_i)
        \approx \frac{1}{n} \sum_{j=1}^{n} \sum_{i=1}^{m} w_{j,i}\,
        \mathcal{N}(t;\, \theta_{j,i}, \sigma^2), \qquad w_{j,i} = (S_j)_{1i}^2,

    is the quadrature's sum of point masses, smoothed by a Gaussian of width :math:`\sigma`
    (Ghorbani, Krishnan and Xiao, 2019; Lin, Saad and Yang, 2016). Outliers (the few large
    eigenvalues of a trained network) appear as separate bumps with weight about 1/d each: read
    them off ``nodes`` and ``weights`` or with :func:`hessian_eigenvalues`; the bulk near zero
    carries almost all the mass.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``, twice differentiable.
      params: the point, any pytree of floating-point arrays.
      batch: passed to ``loss_fn`` as its second argument.
      num_probes: the number n of random probes, an int >= 1 (the moments' Monte Carlo error
        shrinks like :math:`1/\sqrt n`; it is small already for n of a few when d is large).
      num_iterations: m, Lanczos steps per probe, in [1, d] (80-100 resolve a network's
        spectrum in Ghorbani et al.).
      key: a PRNG key for the probes.
      batches: instead of ``batch``, several batches (the Hessian of their mean loss).
      grid_size: points of the grid, from the smallest node minus :math:`5\sigma` to the largest
        plus :math:`5\sigma`.
      sigma: the smoothing width; ``None``: 1% of the nodes' range.
      batch_size: how many probes run at once (``lax.map``); ``None``: all of them.

    Returns:
      A :class:`Spectrum` ``(nodes, weights, grid, density)``.

    PyTorch: PyHessian's ``hessian.density()`` (SLQ with full reorthogonalization, the same
    quadrature and Gaussian smoothing).

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_lectures as jl
      >>> c = jnp.array([1.0, 2.0, 3.0, 10.0])
      >>> spec = jl.curvature.hessian_spectrum(lambda w, c: 0.5 * jnp.sum(c * w**2), jnp.ones(4),
      ...     c, num_probes=8, num_iterations=4, key=jax.random.key(0))
      >>> round(float(spec.moment(1)[0]), 4)  # tr(H) / d: exact for every Rademacher probe
      4.0

    References:
      Ghorbani, Krishnan and Xiao (2019), "An Investigation into Neural Net Optimization via
      Hessian Eigenvalue Density"; Golub and Meurant (2009), "Matrices, Moments and Quadrature".
    """
    d, _ = _check_params(params)
    check_int("num_probes", num_probes)
    check_int("num_iterations", num_iterations)
    if num_iterations > d:
        raise ValueError(
            f"num_iterations must be at most the number of parameters d = {d}, got {num_iterations}"
        )
    check_int("grid_size", grid_size, minimum=2)
    if sigma is not None and not (isinstance(sigma, int | float) and sigma > 0):
        raise ValueError(f"sigma must be a number > 0 or None, got {sigma!r}")
    if batch_size is not None:
        check_int("batch_size", batch_size)
    key = _check_key(key)
    mode, data = _data(loss_fn, params, batch, batches)
    return _spectrum(
        _ByIdentity(loss_fn),
        mode,
        params,
        data,
        key,
        num_probes,
        num_iterations,
        grid_size,
        sigma,
        batch_size,
    )


@functools.partial(jax.jit, static_argnums=(0, 1, 5, 6, 7, 8, 9))
def _spectrum(
    loss_fn: LossFn,
    mode: str,
    params: Any,
    data: Any,
    key: jax.Array,
    n: int,
    m: int,
    grid_size: int,
    sigma: float | None,
    batch_size: int | None,
) -> Spectrum:
    objective = functools.partial(_evaluate, loss_fn, mode, data=data)
    flat, _, matvec = _flat_operator(objective, params)

    def quadrature(k: jax.Array) -> tuple[jax.Array, jax.Array]:
        z = jax.random.rademacher(k, flat.shape, flat.dtype)
        _, T = _lanczos(matvec, z, m, jax.random.fold_in(k, 1))
        theta, S = eigh(T)
        return theta, S[0, :] ** 2  # Gauss quadrature: nodes and weights

    nodes, weights = _probe_map(quadrature, jax.random.split(key, n), batch_size)
    lo, hi = jnp.min(nodes), jnp.max(nodes)
    width = (
        jnp.asarray(sigma, nodes.dtype)
        if sigma is not None
        else 0.01 * jnp.where(hi > lo, hi - lo, jnp.maximum(jnp.abs(hi), 1.0))
    )
    grid = jnp.linspace(lo - 5 * width, hi + 5 * width, grid_size, dtype=nodes.dtype)
    gauss = jnp.exp(-0.5 * ((grid[:, None, None] - nodes) / width) ** 2) / (
        width * jnp.sqrt(2 * jnp.pi)
    )
    density = jnp.sum(gauss * weights, axis=(1, 2)) / n
    return Spectrum(nodes=nodes, weights=weights, grid=grid, density=density)


# ---------------------------------------------------------------------------------------------
# Landscape slices (Li et al., 2018)


def filter_normalized_direction(key: jax.Array, params: Any) -> Any:
    r"""A random direction in parameter space, filter-normalized (Li et al., 2018).

    Every array with two or more axes (a dense ``(n_in, n_out)`` kernel, a convolution's
    ``(h, w, c_in, c_out)`` kernel) gets a Gaussian direction whose filter j (everything along the
    last axis' index j: the incoming weights of unit or channel j) is rescaled to the norm of the
    same filter in ``params``:

    .. math::
        d_j \leftarrow \frac{d_j}{\lVert d_j \rVert}\, \lVert \vartheta_j \rVert ;

    vectors and scalars (biases, batch norm's scale and shift) get a zero direction, as in Li et
    al.'s plots. A step :math:`\alpha d` then moves every unit by the same fraction of its weights,
    so networks of different scales and depths are compared in their own units (a scale-invariant
    network, as with batch norm, would otherwise look flatter for larger weights).

    Args:
      key: a PRNG key.
      params: the point, any pytree of floating-point arrays (kernels with the output axis last,
        as in flax and ``jl.nn``).

    Returns:
      A pytree like ``params``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_lectures as jl
      >>> p = {"w": jnp.array([[3.0, 0.0], [4.0, 1.0]]), "b": jnp.ones(2)}
      >>> d = jl.curvature.filter_normalized_direction(jax.random.key(0), p)
      >>> [round(float(n), 4) for n in jnp.linalg.norm(d["w"], axis=0)], d["b"].tolist()
      ([5.0, 1.0], [0.0, 0.0])

    References:
      Li, Xu, Taylor, Studer and Goldstein (2018), "Visualizing the Loss Landscape of Neural
      Nets".
    """
    _check_key(key)
    _check_params(params)
    flat, unravel = ravel_pytree(params)
    noise = unravel(jax.random.normal(key, flat.shape, flat.dtype))  # one draw, cut into leaves
    leaves, treedef = jax.tree.flatten(params)
    out = []
    for d, leaf in zip(jax.tree.leaves(noise), leaves, strict=True):
        if jnp.ndim(leaf) < 2:
            out.append(jnp.zeros_like(leaf))
            continue
        filters = leaf.shape[-1]  # the norms of d_j and theta_j, one per filter j
        norm_d = jnp.linalg.norm(jnp.reshape(d, (-1, filters)), axis=0)
        norm_w = jnp.linalg.norm(jnp.reshape(leaf, (-1, filters)), axis=0)
        out.append(d * norm_w / jnp.where(norm_d > 0, norm_d, 1.0))
    return jax.tree.unflatten(treedef, out)


def loss_slice(
    loss_fn: LossFn,
    params: Any,
    batch: Any,
    directions: Any,
    alphas: ArrayLike | Sequence[ArrayLike],
) -> jax.Array:
    r"""The loss on a 1-D line or 2-D plane through ``params`` (Li et al., 2018).

    .. math::
        f(\alpha) = L(\vartheta + \alpha\, d_1), \qquad
        f(\alpha, \beta) = L(\vartheta + \alpha\, d_1 + \beta\, d_2)

    evaluated on a grid of coefficients, all points in one vectorized program.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``.
      params: the point :math:`\vartheta`, any pytree of floating-point arrays.
      batch: passed to ``loss_fn`` as its second argument.
      directions: a tuple or list of one direction (a 1-D slice) or two (a 2-D slice), each a
        pytree like ``params``, e.g. from :func:`filter_normalized_direction`; or one pytree
        (a 1-D slice).
      alphas: the coefficients, a 1-D array used along every direction, or a sequence of one 1-D
        array per direction.

    Returns:
      For one direction, shape ``(len(alphas),)``; for two, shape ``(len(betas), len(alphas))``
      with ``out[j, i]`` at :math:`\alpha_i d_1 + \beta_j d_2` (rows along the second direction,
      as ``matplotlib``'s ``contour(alphas, betas, out)`` and ``imshow`` expect).

    Raises:
      ValueError: a direction not shaped like ``params``; more than two directions; coefficients
        not 1-D; ``loss_fn`` not returning a scalar.

    Example:
      >>> import jax.numpy as jnp, jaxopt_lectures as jl
      >>> loss = lambda w, _: jnp.sum(w**2)
      >>> jl.curvature.loss_slice(loss, jnp.zeros(2), None, [jnp.array([1.0, 0.0])],
      ...                         jnp.array([-1.0, 0.0, 2.0]))
      Array([1., 0., 4.], dtype=float32)
    """
    _check_params(params)
    mode, data = _data(loss_fn, params, batch, None)

    def objective(p: Any) -> jax.Array:
        return _evaluate(loss_fn, mode, p, data)

    params_def = jax.tree.structure(params)
    if (
        isinstance(directions, list | tuple)
        and 1 <= len(directions) <= 2
        and all(_same_structure(jax.tree.structure(d), params_def) for d in directions)
    ):
        directions = list(directions)
    elif _same_structure(jax.tree.structure(directions), params_def):
        directions = [directions]  # one direction: a 1-D slice
    elif isinstance(directions, list | tuple) and len(directions) > 2:
        raise ValueError(
            f"directions must hold one direction (a 1-D slice) or two (a 2-D slice), got "
            f"{len(directions)}"
        )
    else:
        directions = [directions]  # checked against params below
    dirs = [_check_like(f"directions[{i}]", d, params) for i, d in enumerate(directions)]
    if isinstance(alphas, list | tuple) and alphas and jnp.ndim(alphas[0]) == 1:
        coefficients = [jnp.asarray(a) for a in alphas]
    else:
        coefficients = [jnp.asarray(alphas)] * len(dirs)
    if len(coefficients) != len(dirs) or any(c.ndim != 1 for c in coefficients):
        raise ValueError(
            "alphas must be a 1-D array of coefficients, or one 1-D array per direction; got "
            f"shapes {[tuple(c.shape) for c in coefficients]} for {len(dirs)} direction(s)"
        )
    dtypes = [jnp.result_type(leaf) for leaf in jax.tree.leaves(params)]
    coefficients = [c.astype(dtypes[0]) for c in coefficients]

    if len(dirs) == 1:
        (d1,) = dirs
        return jax.vmap(lambda a: objective(jax.tree.map(lambda p, u: p + a * u, params, d1)))(
            coefficients[0]
        )
    d1, d2 = dirs
    return jax.vmap(  # rows: beta (second direction), columns: alpha
        lambda b: jax.vmap(
            lambda a: objective(jax.tree.map(lambda p, u, v: p + a * u + b * v, params, d1, d2))
        )(coefficients[0])
    )(coefficients[1])


# ---------------------------------------------------------------------------------------------
# Santurkar et al.'s smoothness along the gradient


class SmoothnessMeasures(NamedTuple):
    """Santurkar et al.'s (2018) measures at one point, along the gradient."""

    loss_range: jax.Array  # max_s L(theta - s g) - min_s L(theta - s g)
    gradient_change: jax.Array  # max_s ||g - grad L(theta - s g)||: gradient predictiveness
    beta_smoothness: jax.Array  # max_s ||g - grad L(theta - s g)|| / ||s g||
    losses: jax.Array  # (len(step_sizes),): L(theta - s g)
    gradient_changes: jax.Array  # (len(step_sizes),): ||g - grad L(theta - s g)||


def smoothness_along_gradient(
    loss_fn: LossFn,
    params: Any,
    batch: Any,
    step_sizes: ArrayLike,
) -> SmoothnessMeasures:
    r"""How much the loss and its gradient change along a gradient step (Santurkar et al., 2018).

    With :math:`g = \nabla L(\vartheta)` and the points :math:`\vartheta - s g` for the step sizes
    s:

    .. math::
        \text{loss range} = \max_s L(\vartheta - s g) - \min_s L(\vartheta - s g), \qquad
        \text{gradient change} = \max_s \lVert g - \nabla L(\vartheta - s g) \rVert,

    .. math::
        \beta_{\text{eff}} = \max_s
        \frac{\lVert g - \nabla L(\vartheta - s g) \rVert}{\lVert s g \rVert}

    (an empirical Lipschitz constant of the gradient along the step, the :math:`\beta` of
    :math:`\beta`-smoothness). Santurkar, Tsipras, Ilyas and Madry measure these along training,
    with and without batch norm, for the lecture's claim that batch norm "makes the loss function
    smoother": smaller values mean a gradient that stays predictive over larger steps.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``, differentiable.
      params: the point, any pytree of floating-point arrays.
      batch: passed to ``loss_fn`` as its second argument (a fixed batch, in training mode for
        batch norm: the measure is about the loss the optimizer sees).
      step_sizes: a 1-D array of step sizes s > 0 (e.g. multiples of the learning rate).

    Returns:
      :class:`SmoothnessMeasures` ``(loss_range, gradient_change, beta_smoothness, losses,
      gradient_changes)``; where the gradient is zero, ``beta_smoothness`` divides by ``s`` alone.

    Example:
      >>> import jax.numpy as jnp, jaxopt_lectures as jl
      >>> loss = lambda w, c: 0.5 * jnp.sum(c * w**2)  # beta-smooth with beta = max(c) = 3
      >>> m = jl.curvature.smoothness_along_gradient(
      ...     loss, jnp.array([0.0, 1.0]), jnp.array([1.0, 3.0]), jnp.array([0.1, 0.2]))
      >>> round(float(m.beta_smoothness), 4)
      3.0
    """
    _check_params(params)
    mode, data = _data(loss_fn, params, batch, None)

    def objective(p: Any) -> jax.Array:
        return _evaluate(loss_fn, mode, p, data)

    sizes = jnp.asarray(step_sizes)
    if sizes.ndim != 1 or sizes.shape[0] == 0:
        raise ValueError(f"step_sizes must be a non-empty 1-D array, got shape {sizes.shape}")
    sizes = sizes.astype(jnp.result_type(*jax.tree.leaves(params)))
    value_and_grad = jax.value_and_grad(objective)
    g = jax.grad(objective)(params)

    def along(s: jax.Array) -> tuple[jax.Array, Any]:
        return value_and_grad(jax.tree.map(lambda p, gi: p - s * gi, params, g))

    values, grads = jax.vmap(along)(sizes)
    changes = jnp.sqrt(
        sum(
            jnp.sum(jnp.reshape(gs - gi, (sizes.shape[0], -1)) ** 2, axis=-1)
            for gs, gi in zip(jax.tree.leaves(grads), jax.tree.leaves(g), strict=True)
        )
    )
    gnorm = jnp.sqrt(sum(jnp.sum(gi**2) for gi in jax.tree.leaves(g)))
    return SmoothnessMeasures(
        loss_range=jnp.max(values) - jnp.min(values),
        gradient_change=jnp.max(changes),
        beta_smoothness=jnp.max(changes / (sizes * jnp.where(gnorm > 0, gnorm, 1.0))),
        losses=values,
        gradient_changes=changes,
    )
