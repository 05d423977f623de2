"""``jl.nn.MLPConfig`` builds and applies the same network as ``mlp_init`` / ``mlp_apply`` with
its settings, so the activation is given once."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxopt_lectures import nn


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_config_matches_the_functions(activation: str) -> None:
    mlp = nn.MLPConfig((16, 8), activation, batch_norm=True, dropout_rate=0.25)

    @jax.jit
    def both(key: jax.Array, x: jax.Array) -> tuple[Any, Any]:
        """The config's and the functions' parameters, then outputs and states in training and
        inference, in one program per activation."""
        params, state = mlp.init_params(key, num_inputs=5, num_outputs=4)
        ref_params, ref_state = nn.mlp_init(
            key, [5, 16, 8, 4], activation=activation, batch_norm=True
        )
        ours, refs = [params], [ref_params]
        for training in (True, False):
            ours.append(mlp.apply(params, state, x, training=training, key=jax.random.key(5)))
            refs.append(
                nn.mlp_apply(
                    ref_params,
                    ref_state,
                    x,
                    activation=activation,
                    training=training,
                    key=jax.random.key(5),
                    dropout_rate=0.25 if training else 0.0,
                )
            )
        return ours, refs

    x = jax.random.normal(jax.random.key(4), (6, 5))
    ours, refs = both(jax.random.key(3), x)
    for got, expected in zip(ours, refs, strict=True):  # parameters, then (logits, new state)
        jax.tree.map(np.testing.assert_array_equal, got, expected)


def test_describe_and_validation() -> None:
    assert nn.MLPConfig((100, 100, 100), "sigmoid", batch_norm=True).describe() == (
        "3x100 sigmoid + batch norm"
    )
    assert nn.MLPConfig((64, 32)).describe() == "64-32 relu"
    with pytest.raises(ValueError, match="activation must be one of"):
        nn.MLPConfig((4,), "swish").init_params(jax.random.key(0), 2, 2)
    with pytest.raises(ValueError, match=r"sizes\[1\] must be an int >= 1"):
        nn.MLPConfig((0,)).init_params(jax.random.key(0), 2, 2)
    mlp = nn.MLPConfig((4,), dropout_rate=0.5)
    params, state = mlp.init_params(jax.random.key(0), 2, 2)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        mlp.apply(params, state, jnp.ones((3, 2)), training=True)
