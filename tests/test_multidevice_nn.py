"""Synchronized batch norm and normalizer on 8 simulated CPU devices equal one device on the batch.

The device count of a JAX process is fixed when its backend starts, so the 8-device code runs in a
child process (``XLA_FLAGS=--xla_force_host_platform_device_count=8``) and prints its measurements
as JSON; this process, and every other test, keeps its own devices.
"""

from __future__ import annotations

import json
import textwrap

import pytest
from conftest import run_on_eight_devices

SCRIPT = textwrap.dedent(
    """
    import json

    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax
    from jax.sharding import Mesh, PartitionSpec as P

    from jaxopt_lectures import nn

    try:
        shard_map = jax.shard_map
    except AttributeError:  # jax < 0.6
        from jax.experimental.shard_map import shard_map

    mesh = Mesh(np.array(jax.devices()), ("batch",))
    rng = np.random.default_rng(0)
    num_features = 3
    batches = [
        jnp.asarray(rng.standard_normal((32, 2, num_features)) * [1.0, 4.0, 0.5] + [3.0, -2.0, 1e3],
                    jnp.float32)
        for _ in range(3)
    ]
    weights = jnp.asarray(rng.standard_normal((32, 2, num_features)), jnp.float32)
    params, state = nn.batch_norm_init(num_features)
    params = nn.BatchNormParams(scale=jnp.array([0.5, 2.0, -1.0]), bias=jnp.array([0.1, 0.0, 3.0]))

    def loss(params, state, x, w, axis_name):
        y, new_state = nn.batch_norm(params, state, x, training=True, decay=0.8,
                                     axis_name=axis_name)
        value = jnp.sum(jnp.sin(y) * w)
        if axis_name is not None:
            value = lax.psum(value, axis_name)  # the loss of the whole, global batch
        return value, (y, new_state)

    def step(params, state, x, w, axis_name=None):
        grad_fn = jax.grad(loss, argnums=(0, 2), has_aux=True)
        (g_params, g_x), (y, new_state) = grad_fn(params, state, x, w, axis_name)
        return y, new_state, g_params, g_x

    single = jax.jit(step)
    sharded = jax.jit(
        shard_map(
            lambda p, s, x, w: step(p, s, x, w, "batch"),
            mesh=mesh,
            in_specs=(P(), P(), P("batch"), P("batch")),
            out_specs=(P("batch"), P(), P(), P("batch")),
        )
    )

    def max_diff(a, b):
        return max(float(jnp.max(jnp.abs(u - v))) for u, v in
                   zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))

    report = {"devices": jax.device_count(), "y": 0.0, "state": 0.0, "grad_params": 0.0,
              "grad_x": 0.0}
    s_single = s_sharded = state
    for x in batches:
        y1, s_single, gp1, gx1 = single(params, s_single, x, weights)
        y8, s_sharded, gp8, gx8 = sharded(params, s_sharded, x, weights)
        report["y"] = max(report["y"], max_diff(y1, y8))
        report["state"] = max(report["state"], max_diff(s_single, s_sharded))
        report["grad_params"] = max(report["grad_params"], max_diff(gp1, gp8))
        report["grad_x"] = max(report["grad_x"], max_diff(gx1, gx8))
    report["count"] = int(s_sharded.count)
    # A per-device batch of one example is fine when the global batch is larger ...
    one_each = jax.jit(shard_map(
        lambda x: nn.batch_norm(params, state, x, training=True, axis_name="batch")[1].var,
        mesh=mesh, in_specs=P("batch"), out_specs=P()))
    report["one_each_var"] = max_diff(one_each(batches[0][:8, 0]),
                                      jnp.var(batches[0][:8, 0], axis=0))

    # The normalizer: every device merges the statistics of the global batch.
    norm_single = jax.jit(lambda s, x: nn.normalizer_update(s, x))
    norm_sharded = jax.jit(shard_map(
        lambda s, x: nn.normalizer_update(s, x, axis_name="batch"),
        mesh=mesh, in_specs=(P(), P("batch")), out_specs=P()))
    n1 = n8 = nn.normalizer_init((2, num_features))
    for x in batches:
        n1, n8 = norm_single(n1, x), norm_sharded(n8, x)
    report["normalizer_mean"] = max_diff(n1.mean, n8.mean)
    report["normalizer_var_rel"] = float(jnp.max(jnp.abs(n8.var / n1.var - 1)))
    report["normalizer_count"] = float(n8.count)
    print("REPORT" + json.dumps(report))
    """
)


@pytest.mark.integration  # a child process on 8 simulated devices
def test_eight_devices_give_the_statistics_output_and_gradients_of_one() -> None:
    result = run_on_eight_devices("-c", SCRIPT)
    line = next(line for line in result.stdout.splitlines() if line.startswith("REPORT"))
    report = json.loads(line[len("REPORT") :])
    assert report["devices"] == 8
    assert report["count"] == 3
    # Same numbers up to float32 summation order (the third feature has mean 1e3).
    assert report["y"] < 1e-5
    assert report["state"] < 1e-3  # a few float32 ulps of the feature with mean 1e3
    assert report["grad_params"] < 1e-4
    assert report["grad_x"] < 1e-5
    assert report["one_each_var"] < 1e-4
    assert report["normalizer_mean"] < 1e-3
    assert report["normalizer_var_rel"] < 1e-5
    assert report["normalizer_count"] == 3 * 32
