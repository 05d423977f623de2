"""The lecture's "bag of tricks" as pure functions: ``jl.nn.batch_norm``, ``jl.nn.dropout``, ...

Every function is pure: state (batch-norm moving averages, normalizer statistics) is passed in
and returned, randomness comes from an explicit PRNG key, and all of it runs under ``jit`` and
``vmap``.

- batch normalization: :func:`batch_norm_init`, :func:`batch_norm`
- dropout: :func:`dropout`
- input normalization: :func:`normalizer_init`, :func:`normalizer_update`, :func:`normalizer_merge`,
  :func:`normalizer_fit`, :func:`normalize`
- a multi-layer perceptron: :func:`mlp_init`, :func:`mlp_apply`, or :class:`MLPConfig`
"""

from jaxopt_lectures.nn.batch_norm import (
    BatchNormParams,
    BatchNormState,
    batch_norm,
    batch_norm_init,
)
from jaxopt_lectures.nn.dropout import dropout
from jaxopt_lectures.nn.mlp import ACTIVATIONS, MLPConfig, mlp_apply, mlp_init
from jaxopt_lectures.nn.normalize import (
    NormalizerState,
    normalize,
    normalizer_fit,
    normalizer_init,
    normalizer_merge,
    normalizer_update,
)

__all__ = [
    "ACTIVATIONS",
    "BatchNormParams",
    "BatchNormState",
    "MLPConfig",
    "NormalizerState",
    "batch_norm",
    "batch_norm_init",
    "dropout",
    "mlp_apply",
    "mlp_init",
    "normalize",
    "normalizer_fit",
    "normalizer_init",
    "normalizer_merge",
    "normalizer_update",
]
