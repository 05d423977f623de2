"""``jaxopt_lectures._linalg.eigh``: ``jnp.linalg.eigh``'s numbers, and no hang when several
programs with a batched eigh run at once (jaxlib's batched LAPACK kernel waits inside XLA:CPU's
thread pool; on a 2-core machine two such programs at once hang the process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxopt_lectures._linalg import eigh


def _symmetric(shape: tuple[int, ...]) -> jax.Array:
    x = jax.random.normal(jax.random.key(0), shape)
    return x + jnp.swapaxes(x, -1, -2)


def test_eigh_gives_jnp_linalg_eigh_numbers_batched_or_not() -> None:
    a = _symmetric((3, 4, 6, 6))

    @jax.jit
    def both(a: jax.Array) -> tuple[object, object, object]:
        batched = jax.vmap(jax.vmap(eigh))(a)
        reference = jnp.linalg.eigh(a)
        return batched, reference, eigh(a[1, 2])

    (w, v), (w_ref, v_ref), (w_one, v_one) = both(a)
    np.testing.assert_array_equal(w, w_ref)
    np.testing.assert_array_equal(v, v_ref)
    np.testing.assert_array_equal(w_one, w_ref[1, 2])
    np.testing.assert_array_equal(v_one, v_ref[1, 2])


def test_eigh_under_vmap_of_another_argument() -> None:
    a = _symmetric((5, 5))
    scaled = jax.jit(jax.vmap(lambda s: eigh(a)[0] * s))(jnp.arange(3.0))
    np.testing.assert_array_equal(scaled[2], 2 * jnp.linalg.eigh(a)[0])


_CONCURRENT = textwrap.dedent(
    """
    import threading, time
    import jax, jax.numpy as jnp
    from jaxopt_lectures._linalg import eigh

    f = jax.jit(jax.vmap(jax.vmap(eigh)))
    x = jax.random.normal(jax.random.key(0), (8, 16, 30, 30))
    x = x + jnp.swapaxes(x, -1, -2)
    jax.block_until_ready(f(x))
    done = []

    def work():
        for _ in range(100):
            jax.block_until_ready(f(x))
        done.append(1)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    start = time.monotonic()
    while len(done) < 3 and time.monotonic() - start < 60:
        time.sleep(0.1)
    print("finished" if len(done) == 3 else "hung")
    """
)


@pytest.mark.integration
def test_batched_eigh_in_concurrent_programs_does_not_hang() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _CONCURRENT], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "finished", result.stderr[-2000:]
