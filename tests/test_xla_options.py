"""The backend switches of ``jaxopt_lectures.xla_options``."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import pytest

import jaxopt_lectures as jl
from jaxopt_lectures import xla_options

MOF_FLAG = f"--xla_backend_extra_options={xla_options.CPU_MULTI_OUTPUT_FUSION}"


def test_flag_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_foo=1 --xla_backend_extra_options=a,b=2")
    assert not xla_options.cpu_multi_output_fusion_enabled()
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_extra_options=a,xla_cpu_use_multi_output_fusion")
    assert xla_options.cpu_multi_output_fusion_enabled()


def test_refuses_once_backends_started(monkeypatch: pytest.MonkeyPatch) -> None:
    jnp.zeros(1).block_until_ready()  # the backends are up
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_foo=1")
    with pytest.raises(RuntimeError, match="before JAX's first computation"):
        xla_options.use_cpu_multi_output_fusion()
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_foo=1"


def test_optimizers_do_not_read_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    """The traced program of every optimizer is the same with and without the option in
    ``XLA_FLAGS``: the one-loop form is ``jl.one_loop``'s, never the equations' (see
    tests/test_one_loop.py)."""
    txs = {
        "momentum": jl.momentum(0.01),
        "nag": jl.nag(0.01),
        "adam": jl.adam(),
        "nadam": jl.scale_by_adam(nesterov=True),
        "adagrad": jl.adagrad(0.1),
        "rmsprop": jl.rmsprop(0.01, centered=True, momentum=0.9),
        "adadelta": jl.adadelta(1.0),
    }
    p = jnp.ones(4)

    def programs() -> dict[str, str]:
        return {
            name: str(jax.make_jaxpr(lambda g, s, tx=tx: tx.update(g, s, p))(p, tx.init(p)))
            for name, tx in txs.items()
        }

    monkeypatch.delenv("XLA_FLAGS", raising=False)
    plain = programs()
    monkeypatch.setenv("XLA_FLAGS", MOF_FLAG)
    assert xla_options.cpu_multi_output_fusion_enabled()
    assert programs() == plain
