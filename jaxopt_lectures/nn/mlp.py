"""A multi-layer perceptron as two pure functions, for the experiments and the tests, and
:class:`MLPConfig`, the architecture in one value that builds and applies them.

    h^[0] = x,   h^[l] = dropout(g(BN(W^[l] h^[l-1] + b^[l]))),   logits = W^[L] h^[L-1] + b^[L]

with g the sigmoid, tanh or ReLU, batch norm (before the non-linearity, as Ioffe and Szegedy place
it) and dropout (after it) both optional. The parameters are a plain list of dicts, one per linear
layer, so optax and this library's transforms apply to them directly; the batch-norm state is a list
threaded through :func:`mlp_apply` like any other explicit state.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxopt_lectures._checks import check_bool, check_dtype, check_int, check_unit_interval
from jaxopt_lectures.nn._axis import AxisName
from jaxopt_lectures.nn.batch_norm import BatchNormState, batch_norm, batch_norm_init
from jaxopt_lectures.nn.dropout import dropout

__all__ = ["ACTIVATIONS", "mlp_apply", "mlp_init"]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
}
_DEFAULT_INIT = {"relu": "he", "sigmoid": "glorot", "tanh": "glorot"}

MLPParams = list[dict[str, Any]]
MLPState = list[BatchNormState]


def _activation(name: str) -> Callable[[jax.Array], jax.Array]:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


# Long for its docstring (32 of 79 lines: equations, equivalents, example).
def mlp_init(
    key: jax.Array,
    sizes: Sequence[int],
    *,
    activation: str = "relu",
    batch_norm: bool = False,
    init: str | None = None,
    dtype: Any = jnp.float32,
) -> tuple[MLPParams, MLPState]:
    r"""Random parameters and an initial batch-norm state for an MLP with layer ``sizes``.

    Initialization keeps the variance of the signal (and of the gradient) roughly constant from
    layer to layer, the cure for the lecture's "problem of initial values":

    - ``"he"`` (He et al., 2015, for ReLU): :math:`W_{ij} \sim \mathcal{N}(0, 2 / n_{in})`;
    - ``"glorot"`` (Glorot and Bengio, 2010, for sigmoid and tanh):
      :math:`W_{ij} \sim U(-a, a)`, :math:`a = \sqrt{6 / (n_{in} + n_{out})}`;

    biases start at 0. Even with Glorot's scale a sigmoid network's gradient shrinks by
    :math:`\sigma'(0) = 1/4` per layer (see :mod:`jaxopt_lectures.diagnostics`).

    Args:
      key: a PRNG key.
      sizes: ``[n_inputs, hidden_1, ..., hidden_k, n_outputs]``, at least two entries.
      activation: ``"relu"``, ``"sigmoid"`` or ``"tanh"``; here it only picks the default ``init``.
      batch_norm: give every hidden layer a batch-norm layer. Its linear layer then has no bias
        ``b`` (batch norm subtracts the mean, so ``b`` would get no gradient; beta replaces it).
      init: ``"he"`` or ``"glorot"``; ``None`` picks He for ReLU and Glorot otherwise.
      dtype: a floating dtype for all parameters and state.

    Returns:
      ``(params, state)``: ``params[l]`` is ``{"w": (n_in, n_out), "b": (n_out,)}``, or
      ``{"w", "bn": BatchNormParams}`` for a hidden layer with batch norm; ``state`` is a list of
      one ``BatchNormState`` per hidden layer with batch norm (empty without).

    Example:
      >>> import jax, jaxopt_lectures as jl
      >>> params, state = jl.nn.mlp_init(jax.random.key(0), [64, 32, 10], activation="sigmoid")
      >>> [jax.tree.map(lambda a: a.shape, layer) for layer in params]
      [{'b': (32,), 'w': (64, 32)}, {'b': (10,), 'w': (32, 10)}]
    """
    _activation(activation)
    check_bool("batch_norm", batch_norm)
    check_dtype("dtype", dtype)
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes must be at least two ints [in, ..., out], got {sizes}")
    for i, n in enumerate(sizes):
        check_int(f"sizes[{i}]", n)
    init = _DEFAULT_INIT[activation] if init is None else init
    if init not in ("he", "glorot"):
        raise ValueError(f"init must be 'he', 'glorot' or None, got {init!r}")

    # One random draw for all the weights, cut into layers: a single RNG kernel compiles several
    # times faster than one per layer.
    shapes = list(itertools.pairwise(sizes))
    total = sum(n_in * n_out for n_in, n_out in shapes)
    if init == "he":
        noise = jax.random.normal(key, (total,), dtype)
    else:
        noise = jax.random.uniform(key, (total,), dtype, -1.0, 1.0)
    params: MLPParams = []
    state: MLPState = []
    offset = 0
    for layer, (n_in, n_out) in enumerate(shapes):
        block = noise[offset : offset + n_in * n_out].reshape(n_in, n_out)
        offset += n_in * n_out
        if init == "he":
            w = block * jnp.asarray(math.sqrt(2.0 / n_in), dtype)  # std sqrt(2 / n_in)
        else:
            w = block * jnp.asarray(math.sqrt(6.0 / (n_in + n_out)), dtype)  # U(-a, a)
        hidden = layer < len(sizes) - 2
        if batch_norm and hidden:
            bn_params, bn_state = batch_norm_init(n_out, dtype)
            params.append({"w": w, "bn": bn_params})
            state.append(bn_state)
        else:
            params.append({"w": w, "b": jnp.zeros(n_out, dtype)})
    return params, state


# Long for its docstring (31 of 80 lines: equation, symbols, equivalents, example).
def mlp_apply(
    params: MLPParams,
    state: MLPState,
    x: ArrayLike,
    *,
    activation: str,
    training: bool,
    key: jax.Array | None = None,
    dropout_rate: float | jax.Array = 0.0,
    bn_decay: float = 0.9,
    bn_eps: float = 1e-5,
    axis_name: AxisName | None = None,
) -> tuple[jax.Array, MLPState]:
    """The MLP's logits, and the batch-norm state after this call.

    Each hidden layer computes ``dropout(g(BN(h @ w)))`` (or ``dropout(g(h @ w + b))`` without batch
    norm); the last layer is linear, ``h @ w + b``. With ``training=False`` batch norm uses its
    moving averages and dropout is the identity.

    Args:
      params, state: from :func:`mlp_init` (or updated by an optimizer / a previous call).
      x: inputs of shape ``(batch, n_inputs)`` (or ``(..., n_inputs)``).
      activation: ``"relu"``, ``"sigmoid"`` or ``"tanh"``; required, so that it cannot silently
        differ from the one the parameters were initialized for.
      training: a Python bool.
      key: a PRNG key, required when training with ``dropout_rate`` > 0; each layer folds in its
        index, so one fresh key per mini-batch is enough.
      dropout_rate: the drop probability of hidden units, in [0, 1).
      bn_decay, bn_eps: :func:`~jaxopt_lectures.nn.batch_norm`'s ``decay`` and ``eps``.
      axis_name: synchronize the batch-norm statistics across this mapped axis.

    Returns:
      ``(logits, new_state)``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_lectures as jl
      >>> params, state = jl.nn.mlp_init(jax.random.key(0), [4, 8, 3], batch_norm=True)
      >>> x = jnp.ones((5, 4))
      >>> logits, state = jl.nn.mlp_apply(
      ...     params, state, x, activation="relu", training=True,
      ...     key=jax.random.key(1), dropout_rate=0.5)
      >>> logits.shape, int(state[0].count)
      ((5, 3), 1)
    """
    g = _activation(activation)
    check_bool("training", training)
    check_unit_interval("dropout_rate", dropout_rate)
    use_dropout = training and (isinstance(dropout_rate, jax.Array) or float(dropout_rate) > 0)
    if use_dropout and key is None:
        raise ValueError("mlp_apply: training with dropout_rate > 0 needs a PRNG key (key=...)")
    num_bn = sum("bn" in layer for layer in params)
    if len(state) != num_bn:
        raise ValueError(
            f"mlp_apply: the parameters have {num_bn} batch-norm layers but the state has "
            f"{len(state)} entries; pass the state returned by mlp_init or the previous call."
        )

    h = jnp.asarray(x)
    new_state: MLPState = []
    for index, layer in enumerate(params[:-1]):
        z = h @ layer["w"]
        if "bn" in layer:
            z, bn_state = batch_norm(
                layer["bn"],
                state[len(new_state)],
                z,
                training=training,
                decay=bn_decay,
                eps=bn_eps,
                axis_name=axis_name,
            )
            new_state.append(bn_state)
        else:
            z = z + layer["b"]
        h = g(z)
        if use_dropout:
            assert key is not None
            h = dropout(jax.random.fold_in(key, index), h, dropout_rate, training=True)
    last = params[-1]
    return h @ last["w"] + last["b"], new_state


class MLPConfig(NamedTuple):
    """An MLP's architecture in one value: the hidden layer sizes (the input and output sizes come
    from the data), the activation, batch norm before every activation, dropout after it, and the
    initialization (``None``: He for ReLU, Glorot otherwise).

    :meth:`init_params` and :meth:`apply` call :func:`mlp_init` and :func:`mlp_apply` with these
    settings, so the activation is given once and cannot differ between the two.

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_lectures as jl
      >>> mlp = jl.nn.MLPConfig(hidden=(8,), activation="tanh", dropout_rate=0.5)
      >>> params, state = mlp.init_params(jax.random.key(0), num_inputs=4, num_outputs=3)
      >>> logits, state = mlp.apply(params, state, jnp.ones((5, 4)), training=False)
      >>> logits.shape, mlp.describe()
      ((5, 3), '1x8 tanh + dropout 0.5')
    """

    hidden: tuple[int, ...]
    activation: str = "relu"
    batch_norm: bool = False
    dropout_rate: float = 0.0
    init: str | None = None

    def init_params(
        self, key: jax.Array, num_inputs: int, num_outputs: int, dtype: Any = jnp.float32
    ) -> tuple[MLPParams, MLPState]:
        """Parameters and batch-norm state (:func:`mlp_init`) for these input and output sizes."""
        return mlp_init(
            key,
            [num_inputs, *self.hidden, num_outputs],
            activation=self.activation,
            batch_norm=self.batch_norm,
            init=self.init,
            dtype=dtype,
        )

    def apply(
        self,
        params: MLPParams,
        state: MLPState,
        x: ArrayLike,
        *,
        training: bool,
        key: jax.Array | None = None,
        axis_name: AxisName | None = None,
    ) -> tuple[jax.Array, MLPState]:
        """The logits and the new batch-norm state (:func:`mlp_apply`); dropout only when
        ``training``."""
        return mlp_apply(
            params,
            state,
            x,
            activation=self.activation,
            training=training,
            key=key,
            dropout_rate=self.dropout_rate if training else 0.0,
            axis_name=axis_name,
        )

    def describe(self) -> str:
        """For instance ``"2x128 relu"`` or ``"3x100 sigmoid + batch norm"``."""
        sizes = set(self.hidden)
        shape = (
            f"{len(self.hidden)}x{self.hidden[0]}"
            if len(sizes) == 1
            else "-".join(map(str, self.hidden))
        )
        extras = [" + batch norm" if self.batch_norm else ""]
        if self.dropout_rate:
            extras.append(f" + dropout {self.dropout_rate:g}")
        return f"{shape} {self.activation}" + "".join(extras)
