"""The backend switches of ``jaxopt_lectures.xla_options``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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


PROGRAM = """
import json, sys
import jax, jax.numpy as jnp, numpy as np, optax
from jaxopt_lectures.xla_options import use_cpu_multi_output_fusion
import jaxopt_lectures as jl
if {enable}:
    use_cpu_multi_output_fusion()
N = 1 << 16
out = {{}}
for name, tx in [
    ("momentum", jl.momentum(0.01, momentum=0.9)),
    ("nag", jl.nag(optax.linear_schedule(0.01, 0.001, 3), momentum=0.9)),
    ("adam", jl.adam(1e-3)),
    ("nadam", jl.scale_by_adam(nesterov=True)),
    ("adagrad", jl.adagrad(0.1)),
    ("rmsprop", jl.rmsprop(0.01)),
    ("rmsprop_corrected", jl.rmsprop(0.01, bias_correction=True, eps_in_sqrt=True)),
    ("adadelta", jl.adadelta(1.0)),
]:
    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s
    p = jax.random.normal(jax.random.key(0), (N,))
    program = jax.jit(step, donate_argnums=(0, 1)).lower(p, tx.init(p), p).compile()
    # loops over the leaf's elements (fusions with a leaf-sized array among their results)
    loops = sum(
        1 for line in program.as_text().split("ENTRY")[1].splitlines()
        if " fusion(" in line and f"[{{N}}]" in line.split(" fusion(")[0]
    )
    s = tx.init(p)
    for i in range(4):  # some gradients exactly zero, as in a sparse layer
        g = jax.random.normal(jax.random.key(i + 1), (N,)) * (jnp.arange(N) % 5 != 0)
        p, s = program(p, s, g)
    out[name] = {{"loops": loops, "params": np.asarray(p).tolist()}}
json.dump(out, sys.stdout)
"""


@pytest.mark.integration
@pytest.mark.xla_cpu
@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an XLA:CPU option")
def test_option_gives_one_loop_per_leaf() -> None:
    """With the option, the steps of momentum, NAG, Adam, AdaGrad, RMSprop and AdaDelta (update and
    ``optax.apply_updates``) are one loop that reads and writes every array once; the numbers
    stay those without the option up to float32 rounding."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}

    def run(enable: bool) -> dict[str, dict[str, object]]:
        out = subprocess.run(
            [sys.executable, "-c", PROGRAM.format(enable=enable)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout
        return json.loads(out)

    fused, plain = run(True), run(False)
    for name, result in fused.items():
        assert result["loops"] == 1, name
        assert plain[name]["loops"] >= 2, name
        a, b = np.asarray(result["params"]), np.asarray(plain[name]["params"])
        assert np.all(np.isfinite(a)), name
        # float32 rounding of the largest parameter (fused multiply-adds may differ)
        tolerance = 8 * np.finfo(np.float32).eps * np.abs(b).max()
        np.testing.assert_allclose(a, b, rtol=0, atol=tolerance)


# The optax idioms, the optax and PyTorch equivalences and the float64 references, run again
# with the option on, where the transforms compute their update in the one-loop form. One case
# is left out: it checks that optax's centered RMSprop takes the root of a variance rounded below
# zero, which optax's own merged loop rounds differently.
CONTRACT_FILES = (
    "tests/test_optax_idioms.py",
    "tests/test_transform_contract.py",
    "tests/test_optax_equivalence.py",
    "tests/test_reference.py",
    "tests/test_nag.py",
    "tests/test_torch_equivalence.py",
)


@pytest.mark.integration
@pytest.mark.xla_cpu
@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an XLA:CPU option")
def test_optax_contract_holds_with_the_option() -> None:
    """Masked and partitioned trees, empty subtrees, complex and integer parameters, schedules
    and injected hyperparameters, and every numeric reference, with the option on."""
    root = Path(__file__).resolve().parents[1]
    flags = f"{os.environ.get('XLA_FLAGS', '')} {MOF_FLAG}".strip()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "not integration",
            "-k",
            "not rounding_below_zero",
            *CONTRACT_FILES,
        ],
        cwd=root,
        env=dict(os.environ, XLA_FLAGS=flags),
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout
