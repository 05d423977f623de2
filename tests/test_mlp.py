"""The pure-function MLP: initialization, forward pass, batch-norm state, dropout, training."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_lectures as jl
from jaxopt_lectures import nn

APPLY_STATIC = ("activation", "training", "dropout_rate", "bn_decay", "bn_eps", "axis_name")
mlp_apply = jax.jit(nn.mlp_apply, static_argnames=APPLY_STATIC)
# sizes must be a tuple here (static arguments are hashed).
mlp_init = jax.jit(nn.mlp_init, static_argnames=("sizes", "activation", "batch_norm", "init"))


def test_initialization_scales() -> None:
    params, state = mlp_init(jax.random.key(0), (400, 300, 10), activation="relu")
    assert state == []
    w = np.asarray(params[0]["w"])
    assert abs(w.std() / np.sqrt(2 / 400) - 1) < 0.02  # He: N(0, 2 / n_in)
    np.testing.assert_array_equal(params[0]["b"], 0.0)
    params, _ = mlp_init(jax.random.key(1), (400, 300, 10), activation="sigmoid")
    w = np.asarray(params[0]["w"])
    limit = np.sqrt(6 / 700)  # Glorot: U(-a, a), a = sqrt(6 / (n_in + n_out))
    assert -limit <= w.min() < w.max() <= limit
    assert abs(w.std() / (limit / np.sqrt(3)) - 1) < 0.02
    params, _ = mlp_init(jax.random.key(1), (400, 300, 10), activation="tanh", init="he")
    assert abs(np.asarray(params[0]["w"]).std() / np.sqrt(2 / 400) - 1) < 0.02


def test_forward_pass_is_the_textbook_formula() -> None:
    params, state = mlp_init(jax.random.key(2), (3, 4, 5, 2), activation="tanh")
    params = jax.tree.map(lambda p: np.asarray(p) + np.float32(0.1), params)  # non-zero biases
    x = np.random.default_rng(3).standard_normal((6, 3)).astype(np.float32)
    logits, new_state = mlp_apply(params, state, x, activation="tanh", training=True)
    p64 = jax.tree.map(lambda p: p.astype(np.float64), params)  # a NumPy float64 reference
    h = np.tanh(x.astype(np.float64) @ p64[0]["w"] + p64[0]["b"])
    h = np.tanh(h @ p64[1]["w"] + p64[1]["b"])
    np.testing.assert_allclose(logits, h @ p64[2]["w"] + p64[2]["b"], rtol=1e-5, atol=1e-6)
    assert new_state == []


def test_batch_norm_layers_and_their_state() -> None:
    params, state = mlp_init(jax.random.key(4), (3, 8, 8, 2), batch_norm=True)
    assert [sorted(layer) for layer in params] == [["bn", "w"], ["bn", "w"], ["b", "w"]]
    assert len(state) == 2
    x = (5 + 3 * np.random.default_rng(5).standard_normal((16, 3))).astype(np.float32)
    logits, trained = mlp_apply(params, state, x, activation="relu", training=True, bn_decay=0.5)
    assert [int(s.count) for s in trained] == [1, 1]
    # The first layer's moving average is the first batch's pre-activation mean (MA(1)).
    np.testing.assert_allclose(
        trained[0].mean, np.mean(x @ np.asarray(params[0]["w"]), axis=0), rtol=1e-5, atol=1e-5
    )
    # In inference the moving averages are used and the state is returned unchanged.
    _, same = mlp_apply(params, trained, x, activation="relu", training=False)
    jax.tree.map(np.testing.assert_array_equal, same, trained)
    # With the state equal to this batch's statistics, inference reproduces training's output.
    logits_eval, _ = mlp_apply(params, trained, x, activation="relu", training=False)
    np.testing.assert_allclose(logits_eval, logits, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="batch-norm layers"):
        nn.mlp_apply(params, [], x, activation="relu", training=True)


def test_dropout_needs_a_key_and_changes_with_it() -> None:
    params, state = mlp_init(jax.random.key(6), (4, 32, 3))
    x = np.ones((5, 4), np.float32)
    with pytest.raises(ValueError, match="key"):
        nn.mlp_apply(params, state, x, activation="relu", training=True, dropout_rate=0.5)
    kwargs = {"activation": "relu", "dropout_rate": 0.5}
    a, _ = mlp_apply(params, state, x, training=True, key=jax.random.key(7), **kwargs)
    b, _ = mlp_apply(params, state, x, training=True, key=jax.random.key(8), **kwargs)
    c, _ = mlp_apply(params, state, x, training=True, key=jax.random.key(7), **kwargs)
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, c)
    # Not training: dropout is the identity, with or without a key.
    plain, _ = mlp_apply(params, state, x, activation="relu", training=True)
    evaluated, _ = mlp_apply(params, state, x, training=False, **kwargs)
    np.testing.assert_allclose(evaluated, plain, rtol=1e-6)


def test_bad_arguments_raise() -> None:
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="activation"):
        nn.mlp_init(key, [2, 2], activation="softplus")
    with pytest.raises(ValueError, match="init"):
        nn.mlp_init(key, [2, 2], init="xavier")
    with pytest.raises(ValueError, match="sizes"):
        nn.mlp_init(key, [2])
    with pytest.raises(ValueError, match="sizes"):
        nn.mlp_init(key, [2, 0, 3])
    params, state = mlp_init(key, (2, 2))
    with pytest.raises(ValueError, match="activation"):
        nn.mlp_apply(params, state, np.ones((1, 2), np.float32), activation="gelu", training=False)
    with pytest.raises(ValueError, match="dropout_rate"):
        nn.mlp_apply(params, state, np.ones((1, 2), np.float32), activation="relu", training=True,
                     key=key, dropout_rate=1.0)  # fmt: skip


def test_trains_with_the_library_optimizers_and_vmaps_over_seeds() -> None:
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    x = jax.jit(lambda a: nn.normalize(nn.normalizer_fit(a), a, min_std=1.0))(images[:256])
    y = labels[:256]
    tx = jl.momentum(0.5, momentum=0.9)  # a rate batch norm tolerates with sigmoid units

    def loss_fn(params: list, state: list, key: jax.Array) -> tuple[jax.Array, list]:
        logits, state = nn.mlp_apply(
            params, state, x, activation="sigmoid", training=True, key=key, dropout_rate=0.1
        )
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), state

    @jax.jit
    def train(seed: jax.Array) -> tuple[jax.Array, jax.Array]:
        key = jax.random.key(seed)
        params, state = nn.mlp_init(key, [64, 32, 32, 10], activation="sigmoid", batch_norm=True)
        opt_state = tx.init(params)

        def step(carry: tuple, k: jax.Array) -> tuple:
            params, state, opt_state = carry
            (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, k)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), state, opt_state), loss

        carry, losses = jax.lax.scan(step, (params, state, opt_state), jax.random.split(key, 40))
        logits, _ = nn.mlp_apply(carry[0], carry[1], x, activation="sigmoid", training=False)
        return losses, jnp.mean(jnp.argmax(logits, axis=1) == y)

    losses, accuracy = jax.vmap(train)(jnp.arange(2))
    assert losses.shape == (2, 40)
    assert np.all(losses[:, -1] < 0.3 * losses[:, 0])
    assert np.all(accuracy > 0.9)  # inference with the moving averages works on the training set
