"""The backend switches of ``jaxopt_lectures.xla_options``."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from jaxopt_lectures import xla_options


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


PROGRAM = """
import jax, jax.numpy as jnp, optax
from jaxopt_lectures.xla_options import use_cpu_multi_output_fusion
import jaxopt_lectures as jl
if {enable}:
    use_cpu_multi_output_fusion()
tx = jl.adam(1e-3)
def step(p, s, g):
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s
p = jnp.ones(1 << 16)
text = jax.jit(step, donate_argnums=(0, 1)).lower(p, tx.init(p), p).compile().as_text()
print(text.count(" fusion("))
"""


@pytest.mark.integration
@pytest.mark.xla_cpu
@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an XLA:CPU option")
def test_option_merges_the_two_moment_loops() -> None:
    """Adam's first and second moment share the gradient: with the option, one two-output loop."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}

    def loops(enable: bool) -> int:
        out = subprocess.run(
            [sys.executable, "-c", PROGRAM.format(enable=enable)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout
        return int(out)

    assert loops(True) == loops(False) - 1
