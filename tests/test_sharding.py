"""Optimizer state follows the sharding of its parameters on a 2 x 4 device mesh.

The device count of a JAX process is fixed when the backend starts, so the checks run in a
subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``; the other tests keep their
single CPU device.
"""

from __future__ import annotations

import json
import textwrap

import pytest
from conftest import run_on_eight_devices

SCRIPT = textwrap.dedent(
    r"""
    import json

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.sharding import NamedSharding, PartitionSpec as P

    import jaxopt_lectures as jl

    import contextlib
    import sys

    from jax.sharding import AxisType

    assert jax.device_count() == 8, jax.devices()
    # Explicit axes (sharding in types, jax's default for make_mesh now) need the mesh set as
    # context for jit; Auto axes (the classic GSPMD mode) do not.
    axis_type = AxisType.Explicit if sys.argv[1] == "explicit" else AxisType.Auto
    mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(axis_type, axis_type))
    context = jax.set_mesh(mesh) if axis_type == AxisType.Explicit else contextlib.nullcontext()
    context.__enter__()

    def put(x, spec):
        return jax.device_put(x, NamedSharding(mesh, spec))

    rng = np.random.default_rng(0)
    params = {
        "w": put(jnp.asarray(rng.standard_normal((16, 8)), jnp.float32), P(None, "model")),
        "b": put(jnp.asarray(rng.standard_normal(8), jnp.float32), P("model")),
        "v": put(jnp.asarray(rng.standard_normal((4, 12)), jnp.float32), P("data", "model")),
        "s": put(jnp.asarray(0.5, jnp.float32), P()),
    }
    params_def = jax.tree.structure(params)

    def param_like_subtrees(state):
        # Every subtree of the state with the parameters' structure holds per-parameter state.
        return [
            t
            for t in jax.tree.leaves(
                state, is_leaf=lambda x: jax.tree.structure(x) == params_def
            )
            if jax.tree.structure(t) == params_def
        ]

    def same_sharding(a, b):
        return a.sharding.is_equivalent_to(b.sharding, a.ndim)

    def check(state, where):
        trees = param_like_subtrees(state)
        assert trees, f"{where}: no per-parameter state found"
        for tree in trees:
            for name in params:
                assert same_sharding(tree[name], params[name]), (
                    f"{where}: state leaf for {name!r} has {tree[name].sharding}, "
                    f"parameter has {params[name].sharding}"
                )
        return len(trees)

    optimizers = {
        "momentum": jl.momentum(0.1),
        "nag": jl.nag(0.1),
        "adagrad": jl.adagrad(0.1),
        "rmsprop": jl.rmsprop(0.01),
        "adadelta": jl.adadelta(),
        "adam": jl.adam(0.01),
        "adam_f32_acc": jl.adam(0.01, accumulator_dtype=jnp.float32),
        "clip_then_nag": optax.chain(optax.clip_by_global_norm(1.0), jl.nag(0.1)),
        "sgd_momentum": jl.sgd(0.1, momentum=0.9, nesterov=True),
        "rmsprop_momentum": jl.rmsprop(0.01, momentum=0.9, bias_correction=True),
        "nadam_schedule": jl.adam(optax.linear_schedule(0.01, 0.0, 10), nesterov=True),
        "blocks": optax.chain(
            jl.scale_by_adagrad(),
            jl.scale_by_adadelta(),
            jl.scale_by_rms(bias_correction=True),
            jl.scale_by_adam(mu_dtype=jnp.bfloat16),
            jl.trace(decay=0.9),
            jl.scale_by_learning_rate(0.1),
        ),
        "one_loop_adam": jl.one_loop(jl.adam(0.01)),
        "one_loop_optax_adadelta": jl.one_loop(optax.adadelta(1.0)),
    }
    report = {}
    loss = lambda p: sum(jnp.sum(jnp.sin(x) ** 2) for x in jax.tree.leaves(p))
    for name, tx in optimizers.items():
        eager = tx.init(params)
        n = check(eager, f"{name} eager init")
        if axis_type == AxisType.Explicit:
            state = jax.jit(tx.init)(params)  # the mesh context carries the shardings
            check(state, f"{name} jit init")
        state = jl.init_sharded(tx, params)
        check(state, f"{name} init_sharded")
        traces = 0

        def step(p, s):
            global traces
            traces += 1
            updates, s = tx.update(jax.grad(loss)(p), s, p)
            return optax.apply_updates(p, updates), s

        jstep = jax.jit(step, donate_argnums=(0, 1))
        p = jax.tree.map(jnp.copy, params)
        for _ in range(3):
            p, state = jstep(p, state)
            check(state, f"{name} after update")
            for k in params:
                assert same_sharding(p[k], params[k]), (name, k, p[k].sharding)
        report[name] = {"traces": traces, "param_like_subtrees": n}
    print(json.dumps(report))
    """
)


@pytest.mark.integration  # a child process on 8 simulated devices
@pytest.mark.parametrize("axis_types", ["explicit", "auto"])
def test_optimizer_state_is_sharded_like_the_parameters(axis_types: str) -> None:
    result = run_on_eight_devices("-c", SCRIPT, axis_types)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(report) == {
        "momentum",
        "nag",
        "adagrad",
        "rmsprop",
        "adadelta",
        "adam",
        "adam_f32_acc",
        "clip_then_nag",
        "sgd_momentum",
        "rmsprop_momentum",
        "nadam_schedule",
        "blocks",
        "one_loop_adam",
        "one_loop_optax_adadelta",
    }
    for name, entry in report.items():
        assert entry["traces"] == 1, (name, entry)  # three steps, one compilation
        assert entry["param_like_subtrees"] >= 1, (name, entry)


NEWTON_CG_SCRIPT = textwrap.dedent(
    r"""
    import json

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

    import jaxopt_lectures as jl

    import contextlib

    rng = np.random.default_rng(0)
    n, d = 256, 32
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = (X @ rng.standard_normal(d) + 0.5 * rng.standard_normal(n) > 0).astype(np.float32)

    def loss(p):
        z = X @ p["w"] + p["b"]
        nll = jnp.mean(jnp.logaddexp(0.0, z) - y * z)
        return nll + 0.5e-2 * jnp.sum(p["w"] ** 2)

    def solve(tx, params, init):
        state = init(params)

        @jax.jit
        def step(p, s):
            u, s = tx.update(jax.grad(loss)(p), s, p, value_fn=loss)
            return optax.apply_updates(p, u), s

        for _ in range(15):
            params, state = step(params, state)
        return params

    zeros = {"w": jnp.zeros(d), "b": jnp.zeros(())}
    report = {}
    cases = [
        (name, tx, axis_type)
        for name, tx in {"newton": jl.newton(), "newton_cg": jl.newton_cg()}.items()
        for axis_type in (AxisType.Auto, AxisType.Explicit)
    ]
    for name, tx, axis_type in cases:
        mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(axis_type, axis_type))
        explicit = axis_type == AxisType.Explicit
        single = solve(tx, zeros, tx.init)
        with jax.set_mesh(mesh) if explicit else contextlib.nullcontext():
            sharded_start = {
                "w": jax.device_put(zeros["w"], NamedSharding(mesh, P("model"))),
                "b": jax.device_put(zeros["b"], NamedSharding(mesh, P())),
            }
            sharded = solve(tx, sharded_start, lambda p: jl.init_sharded(tx, p))
            grad_norm = float(jnp.linalg.norm(jax.grad(loss)(sharded)["w"]))
        report[f"{name}, {'explicit' if explicit else 'auto'} axes"] = {
            "max_diff": float(jnp.max(jnp.abs(sharded["w"] - single["w"]))),
            "grad_norm": grad_norm,
            "w_spec": str(sharded["w"].sharding.spec),
        }
    print(json.dumps(report))
    """
)


@pytest.mark.integration  # a child process on 8 simulated devices
def test_newton_on_sharded_parameters_reaches_the_single_device_minimizer() -> None:
    """Dense and matrix-free Newton on weights sharded over "model", with automatic axes and
    with explicit ones (sharding in the types, where raveling needs the leaves resharded)."""
    result = run_on_eight_devices("-c", NEWTON_CG_SCRIPT)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(report) == 4, report
    for entry in report.values():
        assert entry["grad_norm"] < 1e-4, report  # a minimizer
        assert entry["max_diff"] < 1e-4, report  # the same one as on a single device
        assert "model" in entry["w_spec"], report  # and the parameters stayed sharded


OPTAX_SHARDING_IDIOMS = textwrap.dedent(
    r"""
    import json

    import jax
    import jax.numpy as jnp
    import optax
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

    import jaxopt_lectures as jl

    optimizers = {
        "sgd": jl.sgd(1.0),
        "sgd_momentum": jl.sgd(1.0, momentum=0.9, nesterov=True),
        "momentum": jl.momentum(1.0),
        "nag": jl.nag(1.0),
        "adagrad": jl.adagrad(1.0),
        "rmsprop": jl.rmsprop(1.0, momentum=0.9),
        "adadelta": jl.adadelta(1.0),
        "adam": jl.adam(1.0),
        "packed_adam": jl.packed(jl.adam(1.0)),
        "blocks": optax.chain(
            jl.scale_by_adagrad(),
            jl.scale_by_adadelta(),
            jl.scale_by_rms(bias_correction=True),
            jl.scale_by_adam(nesterov=True),
            jl.trace(decay=0.9),
            jl.scale_by_learning_rate(optax.exponential_decay(1.0, 1, 0.9)),
        ),
    }
    mesh = jax.make_mesh((8,), ("x",), axis_types=(AxisType.Explicit,))
    sharding = NamedSharding(mesh, P(None, "x"))
    types = lambda tree: jax.tree.map(jax.typeof, tree)
    checked = []
    for name, tx in optimizers.items():
        # Abstract parameters, as jax.eval_shape or a checkpoint restore gives them.
        assert tx.init(jax.ShapeDtypeStruct((2, 4, 8), jnp.float32)) is not None, name
        with jax.set_mesh(mesh):
            params = jnp.zeros((2, 8, 4), dtype=jnp.float16, out_sharding=sharding)
            state0 = tx.init(params)
            _, state1 = tx.update(params, state0, params)
            assert types(state0) == types(state1), (name, types(state0), types(state1))
            assert types(jax.jit(tx.init)(params)) == types(state0), name
            _, state2 = jax.jit(tx.update)(params, state0, params)
            assert types(state2) == types(state1), name
        checked.append(name)
    print(json.dumps(checked))
    """
)


@pytest.mark.integration  # a child process on 8 simulated devices
def test_optax_sharding_idioms_for_every_optimizer() -> None:
    """optax's sharding checks on a mesh with explicit axes: init on abstract parameters, and the
    state's types (shape, dtype, sharding) the same after init and update, eagerly and under jit."""
    result = run_on_eight_devices("-c", OPTAX_SHARDING_IDIOMS)
    assert len(json.loads(result.stdout.strip().splitlines()[-1])) == 10
