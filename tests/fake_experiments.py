"""Stand-in experiments for the CLI's tests: instant, deterministic, and told to fail or to do
something (start another run, send a signal) at a chosen moment; and a stand-in playground page.
The command line gets them passed in (:data:`APPS`), as it gets the registry's experiments and
the real playground otherwise.

Run as a program, ``python tests/fake_experiments.py run NAMES ...`` is the command line with
the stand-ins, ended as ``python -m jaxopt_lectures`` ends; with ``FAKE_BUSY=NAME`` that
experiment's compute first writes ``$FAKE_BUSY_MARKER`` and then spends about
``$FAKE_BUSY_SECONDS`` inside one XLA program (so that a signal finds a thread in XLA); with
``FAKE_FULL_DISK=1`` as well, ``alpha`` waits for that marker and ``results.json`` cannot be
written (``ENOSPC``).
"""

from __future__ import annotations

import errno
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from jaxopt_lectures._app_common import PLAYGROUND_FILE
from jaxopt_lectures.cli import Apps, exit_process, main
from jaxopt_lectures.experiments.api import Claim, Experiment, Summary


@dataclass
class Fake:
    """What the stand-in experiment ``name`` does: ``before()`` first, then fail or return."""

    value: float
    before: Callable[[], Any] | None = None
    fail: bool = False


FAKES: dict[str, Fake] = {}
NAMES = ("alpha", "beta", "gamma", "delta")


def reset() -> None:
    """Every stand-in back to its plain behaviour: return its value (1, 2, 3, 4)."""
    FAKES.clear()
    for i, name in enumerate(NAMES, 1):
        FAKES[name] = Fake(value=float(i))


class FakeResult(NamedTuple):
    name: str
    value: float
    seed: int
    timings: tuple[Any, ...] = ()


def _experiment(name: str) -> Experiment[FakeResult]:
    def compute(config: Any, seed: int) -> FakeResult:
        fake = FAKES[name]
        if fake.before is not None:
            fake.before()
        time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
        if fake.fail:
            raise RuntimeError(f"{name} was told to fail")
        return FakeResult(name, fake.value, seed)

    def claims(r: FakeResult) -> list[Claim]:
        return [Claim(f"{r.name} holds", True, f"value {r.value:g}", "always")]

    def summarize(r: FakeResult) -> Summary:
        return Summary([("value", f"{r.value:g}")], {"value": r.value, "seed": r.seed}, {})

    return Experiment(
        name, f"stand-in {name}", "-", "-", 0, compute, lambda r: (), claims, summarize
    )


def _playground(out_dir: Path, **options: Any) -> Path:
    """A stand-in for ``jaxopt_lectures.playground.build``: the page file, instantly (the real
    page computes every grid, seconds per fresh output folder; its own tests cover it)."""
    timings = options.get("timings")
    if timings is not None:
        timings |= {"grids_s": 0.0, "page_s": 0.0, "total_s": 0.0}
    path = Path(out_dir) / PLAYGROUND_FILE
    path.write_text("<!doctype html><title>stand-in playground</title>\n")
    return path


APPS = Apps(experiments={name: _experiment(name) for name in NAMES}, playground=_playground)
"""What the command line runs in the tests: the stand-in experiments and playground."""


def run_cli(*args: str) -> int:
    """``jaxopt-lectures run ARGS --no-progress`` with the stand-ins, in this process; the exit
    code."""
    return main(["run", *args, "--no-progress"], apps=APPS)


def one_line(err: str) -> str:
    """Check that ``err`` is one line and no traceback; return it."""
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def _busy() -> None:
    """Write the marker file, then spend about ``$FAKE_BUSY_SECONDS`` in one XLA program."""
    import jax
    import jax.numpy as jnp

    seconds = float(os.environ.get("FAKE_BUSY_SECONDS", "30"))
    x = jnp.full((256, 256), 1e-3, jnp.float32)
    step = jax.jit(lambda x: jnp.tanh(x @ x))
    jax.block_until_ready(step(x))
    start = time.perf_counter()
    jax.block_until_ready(step(x))
    per_step = max(time.perf_counter() - start, 1e-5)
    loop = jax.jit(
        lambda x, n: jax.lax.fori_loop(0, n, lambda i, x: jnp.tanh(x @ x), x),
    )
    n = jnp.int32(seconds / per_step)
    loop.lower(x, n).compile()
    Path(os.environ["FAKE_BUSY_MARKER"]).write_text("in XLA\n")
    jax.block_until_ready(loop(x, n))


def _full_disk() -> None:
    """``alpha`` waits until the busy experiment is in XLA; ``results.json`` cannot be written."""
    marker = Path(os.environ["FAKE_BUSY_MARKER"])
    real_replace = os.replace

    def wait() -> None:
        while not marker.exists():
            time.sleep(0.02)

    def replace(src: Any, dst: Any) -> None:
        if Path(dst).name == "results.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(src, dst)

    FAKES["alpha"].before = wait
    os.replace = replace  # type: ignore[assignment]


if __name__ == "__main__":
    reset()
    busy = os.environ.get("FAKE_BUSY")
    if busy:
        FAKES[busy].before = _busy
    if os.environ.get("FAKE_FULL_DISK") == "1":
        _full_disk()
    exit_process(main(sys.argv[1:], apps=APPS))
