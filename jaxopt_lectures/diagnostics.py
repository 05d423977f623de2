"""Probes of gradient flow and curvature: the lecture's vanishing and exploding gradients, measured.

Lecture: "the gradient contains a multiplicative term dg/dx which can be << 1.0, e.g. for the
sigmoid function" (its derivative is at most 1/4), and in a deep linear network with identical,
diagonalizable layers W with eigenpairs (lambda_i, e_i),

    W^[k] ... W^[1] x = W^k x = lambda_1^k (e_1 . x) e_1 + ... + lambda_d^k (e_d . x) e_d,

so "any lambda_i > 1 leads to explosion while any lambda_i < 1 leads to vanishing". The lecture
also claims batch normalization "makes the loss function smoother": :func:`hessian_top_eigenvalue`
measures the curvature that claim is about.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike

from jaxopt_lectures._checks import check_int
from jaxopt_lectures._tree import tree_norm

__all__ = [
    "deep_linear_network",
    "hessian_top_eigenvalue",
    "per_layer_grad_norms",
    "sigmoid_derivative",
    "sigmoid_derivative_bound",
]


def sigmoid_derivative(x: ArrayLike) -> jax.Array:
    r"""The sigmoid's derivative :math:`\sigma'(x) = \sigma(x)\,(1 - \sigma(x))`.

    It peaks at :math:`\sigma'(0) = 1/4` and decays like :math:`e^{-|x|}`: a saturated unit
    (:math:`|x| = 10`) passes on 4.5e-5 of its gradient.

    Example:
      >>> import jax.numpy as jnp, jaxopt_lectures as jl
      >>> jl.diagnostics.sigmoid_derivative(jnp.array([0.0, 10.0]))
      Array([2.5...e-01, 4.539...e-05], dtype=float32)
    """
    x = jnp.asarray(x)
    return jax.nn.sigmoid(x) * jax.nn.sigmoid(-x)  # = s (1 - s), without cancellation in 1 - s


def sigmoid_derivative_bound(num_layers: int = 1) -> float:
    r"""The largest factor sigmoid derivatives can contribute through ``num_layers`` layers.

    .. math::
        \max_x \sigma'(x) = \sigma'(0) = \frac{1}{4}, \qquad
        \prod_{l=1}^{k} \sigma'(z^{[l]}) \le 4^{-k}

    Backpropagation through k sigmoid layers multiplies the gradient by k such factors (and by the
    weights): unless the weights grow to compensate, the gradient reaching the first layers of a
    deep sigmoid network is at least :math:`4^k` times smaller than at the last one. ReLU's
    derivative is 1 wherever the unit is active, so it has no such shrinking factor.

    Example:
      >>> import jaxopt_lectures as jl
      >>> jl.diagnostics.sigmoid_derivative_bound(), jl.diagnostics.sigmoid_derivative_bound(10)
      (0.25, 9.5367431640625e-07)
    """
    check_int("num_layers", num_layers, minimum=0)
    return 0.25**num_layers


def per_layer_grad_norms(
    loss_fn: Callable[..., jax.Array],
    params: Sequence[Any],
    *args: Any,
    entry: str | None = None,
) -> jax.Array:
    """The Euclidean norm of the loss gradient of every layer: where gradients vanish or explode.

    Args:
      loss_fn: ``loss_fn(params, *args) -> scalar``.
      params: a list (or tuple) with one pytree per layer, as :func:`jaxopt_lectures.nn.mlp_init`
        returns.
      *args: passed on to ``loss_fn`` (a batch, labels, a state ...).
      entry: if given, only the norm of ``layer[entry]`` (``"w"`` for the weight matrices);
        otherwise of every leaf of the layer together.

    Returns:
      An array of shape ``(len(params),)``, first layer (next to the input) first.

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_lectures as jl
      >>> params = [{"w": jnp.ones((2, 2))}, {"w": 2 * jnp.ones((2, 1))}]
      >>> loss = lambda p, x: jnp.sum(x @ p[0]["w"] @ p[1]["w"])
      >>> jl.diagnostics.per_layer_grad_norms(loss, params, jnp.ones((1, 2)))
      Array([4.      , 2.828427], dtype=float32)
    """
    if not isinstance(params, list | tuple):
        raise ValueError(
            f"params must be a list or tuple with one pytree per layer, got {type(params).__name__}"
        )
    grads = jax.grad(loss_fn)(params, *args)
    return jnp.stack([tree_norm(layer if entry is None else layer[entry]) for layer in grads])


def deep_linear_network(
    W: ArrayLike, x: ArrayLike, k: int | jax.Array, *, method: str = "layers"
) -> jax.Array:
    r"""The output :math:`W^k x` of the lecture's deep linear network: k identical layers, g = id.

    .. math::
        W^{[k]} \cdots W^{[1]} x = W^k x
        = \lambda_1^k (e_1 \cdot x)\, e_1 + \cdots + \lambda_d^k (e_d \cdot x)\, e_d

    The component along an eigenvector grows or shrinks like :math:`\lambda_i^k`, and so does the
    gradient flowing back through the layers (it is multiplied by :math:`(W^T)^k`).

    Args:
      W: a ``(d, d)`` matrix; for ``method="eigen"`` it must be symmetric, so that its eigenvectors
        are the orthonormal basis in which the lecture writes :math:`e_i \cdot x`.
      x: an input of shape ``(d,)``, or a batch ``(..., d)``.
      k: the depth, an int >= 0 (a Python int for reverse-mode differentiation of
        ``method="layers"``; a traced int works for the forward computation).
      method: ``"layers"`` applies the k layers one after the other; ``"eigen"`` sums
        :math:`\lambda_i^k (e_i \cdot x) e_i` from ``jnp.linalg.eigh``.

    Returns:
      :math:`W^k x`, shaped like ``x``.

    Example:
      >>> import jax.numpy as jnp, jaxopt_lectures as jl
      >>> W = jnp.array([[1.5, 0.0], [0.0, 0.5]])
      >>> jl.diagnostics.deep_linear_network(W, jnp.array([1.0, 1.0]), 4)
      Array([5.0625, 0.0625], dtype=float32)
    """
    W = jnp.asarray(W)
    x = jnp.asarray(x)
    if W.ndim != 2 or W.shape[0] != W.shape[1] or x.ndim < 1 or x.shape[-1] != W.shape[0]:
        raise ValueError(
            f"deep_linear_network: W must be square (d, d) and x of shape (..., d); got W "
            f"{W.shape} and x {x.shape}"
        )
    if not isinstance(k, jax.Array) and (isinstance(k, bool) or int(k) != k or k < 0):
        raise ValueError(f"k must be an int >= 0, got {k!r}")
    if method == "layers":
        return lax.fori_loop(0, k, lambda _, h: h @ W.T, x)  # h^[l] = W h^[l-1]
    if method == "eigen":
        lam, E = jnp.linalg.eigh(W)  # columns of E: orthonormal eigenvectors e_i
        coefficients = x @ E  # e_i . x
        return (lam**k * coefficients) @ E.T  # sum_i lambda_i^k (e_i . x) e_i
    raise ValueError(f"method must be 'layers' or 'eigen', got {method!r}")


def hessian_top_eigenvalue(
    loss_fn: Callable[..., jax.Array],
    params: Any,
    key: jax.Array,
    *args: Any,
    num_iters: int = 100,
) -> jax.Array:
    r"""The Hessian's eigenvalue of largest magnitude: power iteration on Hessian-vector products.

    .. math::
        v_{j+1} = \frac{H v_j}{\lVert H v_j \rVert}, \qquad
        \lambda \approx v_J \cdot H v_J, \qquad
        H v = \frac{d}{d\varepsilon} \nabla L(\vartheta + \varepsilon v)\Big|_{\varepsilon = 0}

    Each product is one forward-over-reverse pass (``jax.jvp`` of ``jax.grad``), so the Hessian is
    never formed: the cost is a few gradients per iteration whatever the number of parameters.

    Power iteration converges to the eigenvalue of largest *magnitude*, returned with its sign:
    near a minimum that is the sharpest curvature :math:`\lambda_{max}` (the step-size limit
    :math:`\eta < 2/\lambda_{max}` of gradient descent); where a negative eigenvalue is larger in
    magnitude (near a saddle) that one is returned. The error shrinks like
    :math:`|\lambda_2/\lambda_1|^{2J}`; increase ``num_iters`` when the top two are close.

    Args:
      loss_fn: ``loss_fn(params, *args) -> scalar``, twice differentiable.
      params: any pytree of floating-point arrays.
      key: a PRNG key for the random start vector.
      *args: passed on to ``loss_fn`` (a fixed batch: the Hessian of a mini-batch loss depends on
        the batch).
      num_iters: the number J of Hessian-vector products before the final Rayleigh quotient.

    Returns:
      A scalar array.

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_lectures as jl
      >>> loss = lambda w: 0.5 * (1.0 * w[0] ** 2 + 50.0 * w[1] ** 2)
      >>> lam = jl.diagnostics.hessian_top_eigenvalue(loss, jnp.ones(2), jax.random.key(0))
      >>> round(float(lam), 4)
      50.0
    """
    check_int("num_iters", num_iters)
    grad_fn = jax.grad(lambda p: loss_fn(p, *args))

    def hvp(v: Any) -> Any:
        return jax.jvp(grad_fn, (params,), (v,))[1]  # forward-over-reverse: H v

    def normalized(v: Any) -> Any:
        norm = jnp.sqrt(optax.tree_utils.tree_vdot(v, v))
        return jax.tree.map(lambda leaf: leaf / jnp.where(norm > 0, norm, 1), v)

    flat, unravel = ravel_pytree(params)
    v0 = unravel(jax.random.normal(key, flat.shape, flat.dtype))  # one draw, cut into leaves
    v = lax.fori_loop(0, num_iters, lambda _, v: normalized(hvp(v)), normalized(v0))
    return optax.tree_utils.tree_vdot(v, hvp(v))
