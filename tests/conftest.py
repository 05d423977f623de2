"""Shared fixtures: a pytree of mixed shapes and streams of random gradients for it, the layouts
the numerical tests run through, and a runner for child processes on 8 simulated devices."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_lectures as jl  # importing the library does not start JAX's backend
from jaxopt_lectures._app_common import usable_cores
from jaxopt_lectures.compile_policy import QUICK_FLAGS


def _unit_tier(config: pytest.Config) -> bool:
    """Whether the marker expression leaves the integration tier out (``-m "not integration"``,
    alone or within a longer expression)."""
    return "not integration" in " ".join(config.option.markexpr.split())


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """The unit tier spreads its tests over the machine's cores (pytest-xdist's ``-n auto``, at
    most :data:`MAX_WORKERS` processes) unless ``-n`` is given: ``-n 0`` runs them in this
    process, as ``--pdb`` needs. The integration tier runs in one process: its tests share one
    run of the main job and start processes of their own."""
    worker = hasattr(config, "workerinput") or "PYTEST_XDIST_WORKER" in os.environ
    if (
        not worker  # a worker runs the tests it is given, it never starts workers of its own
        and _unit_tier(config)
        and config.pluginmanager.hasplugin("xdist")
        and config.getoption("numprocesses", None) is None
    ):
        config.option.numprocesses = "auto"


MAX_WORKERS = 4


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker per usable core, at most :data:`MAX_WORKERS` (each worker starts
    its own JAX, and the unit tier gains little from more)."""
    return max(1, min(MAX_WORKERS, usable_cores()))


QUICK_COMPILES = QUICK_FLAGS  # jaxopt_lectures.compile_policy: the whole-process quick options


def pytest_configure(config: pytest.Config) -> None:
    """The unit tier (``-m "not integration"``, alone or within a longer expression) starts JAX's
    CPU backend with XLA:CPU's quicker compile options, :data:`QUICK_COMPILES`; every other
    selection keeps XLA's defaults.

    The unit tier compiles well over a thousand small programs (every optimizer, option and dtype
    it checks), and compiling is most of its time. XLA:CPU's older loop emitters, without LLVM's
    optimizer, compile such a program two to three times as fast and run large arrays slower,
    which no unit test measures; generating each program's machine code in one piece, rather
    than split for several threads, saves about a fifth more on programs this small. Every
    number a test compares is computed in the same process, so both sides (the library, optax,
    the references run through JAX) are compiled alike.
    ``XLA_FLAGS`` is read once, when the backend starts, and is restored right after, so child
    processes and the integration tier (command line, notebooks, several processes) run with
    XLA's defaults.
    ``JAXOPT_LECTURES_TEST_XLA_DEFAULTS=1`` keeps the defaults in the unit tier too."""
    if not _unit_tier(config) or os.environ.get("JAXOPT_LECTURES_TEST_XLA_DEFAULTS", "") not in (
        "",
        "0",
    ):
        return
    previous = os.environ.get("XLA_FLAGS")
    os.environ["XLA_FLAGS"] = f"{previous or ''} {QUICK_COMPILES}".strip()
    try:
        jax.devices()
    finally:
        if previous is None:
            del os.environ["XLA_FLAGS"]
        else:
            os.environ["XLA_FLAGS"] = previous


def check_each(names: Iterable[str], check: Callable[[str], None]) -> None:
    """Run ``check(name)`` for every name and fail once at the end, naming every name whose check
    failed (so one failure does not hide the next): the checks of a table of cases computed
    together, in one compiled function."""
    failures = []
    for name in names:
        try:
            check(name)
        except AssertionError as err:
            failures.append(f"{name}: {err}")
    assert not failures, "\n".join(failures)


def needs(*modules: str) -> pytest.MarkDecorator:
    """Skip the marked tests when an optional package is missing, found without importing it:
    ``pytest.importorskip`` at module level would import scikit-learn (about a second, with
    SciPy) or orbax while the tests are collected, in every run and every worker, even where
    the module's tests are deselected."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)}")


# PyTorch is a test-time peer (CI installs its CPU build): without it the comparison module is not
# collected at all, except under CI (CI=true), where a missing torch must fail the run, not skip.
_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
collect_ignore = [] if _CI or importlib.util.find_spec("torch") else ["test_torch_equivalence.py"]


@pytest.fixture
def fakes() -> None:
    """The stand-ins of ``tests/fake_experiments.py`` (which ``run_cli`` passes to the command
    line), each back to its plain behaviour."""
    from fake_experiments import reset

    reset()


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One ``run --quick`` of the main job for the whole test session: its output folder and
    ``results.json`` (parsed as strict JSON)."""
    from jaxopt_lectures.__main__ import main

    out = tmp_path_factory.mktemp("lecture-results")
    code = main(["run", "--quick", "--out", str(out), "--no-progress"])
    assert code == 0
    text = (out / "results.json").read_text()

    def no_constants(name: str) -> None:
        raise AssertionError(f"results.json is not strict JSON: {name}")

    return out, json.loads(text, parse_constant=no_constants)


# A pytree of mixed shapes and nesting: scalar, vector, matrix, 3-D, inside dicts and a tuple.
SHAPES: dict[str, Any] = {
    "dense": {"w": (5, 3), "b": (3,)},
    "conv": ((2, 3, 4), ()),
}


def tree_of(fn: Callable[[tuple[int, ...]], Any]) -> Any:
    """Build a tree shaped like SHAPES with ``fn(shape)`` at every leaf."""
    return jax.tree.map(
        fn, SHAPES, is_leaf=lambda x: isinstance(x, tuple) and all(isinstance(d, int) for d in x)
    )


def random_tree(rng: np.random.Generator, scale: float = 1.0) -> Any:
    """A float64 NumPy tree shaped like SHAPES with normal entries of the given scale."""
    return tree_of(lambda shape: scale * rng.standard_normal(shape))


def random_gradients(seed: int, num_steps: int, scale: float = 1.0) -> list[Any]:
    """``num_steps`` independent float64 gradient trees (some entries exactly zero)."""
    rng = np.random.default_rng(seed)
    grads = []
    for _ in range(num_steps):
        g = random_tree(rng, scale)
        # An exact zero now and then exercises the 0/0 guards of the adaptive methods.
        g = jax.tree.map(lambda x: np.where(rng.random(x.shape) < 0.05, 0.0, x), g)
        grads.append(g)
    return grads


def enable_x64() -> Any:
    """A context manager that enables float64 (``jax.enable_x64`` or, on older jax, the
    ``jax.experimental`` one)."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64 as experimental_enable_x64  # jax < 0.7

    return experimental_enable_x64()


def to_f32(tree: Any) -> Any:
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)


# Every alias with settings that make each step do something visible; used by generic tests.
ALIASES: dict[str, Callable[..., Any]] = {
    "sgd": lambda lr=0.1: jl.sgd(lr),
    "momentum": lambda lr=0.05: jl.momentum(lr, momentum=0.9),
    "nag": lambda lr=0.05: jl.nag(lr, momentum=0.9),
    "adagrad": lambda lr=0.1: jl.adagrad(lr),
    "rmsprop": lambda lr=0.01: jl.rmsprop(lr, decay=0.9),
    "adadelta": lambda lr=1.0: jl.adadelta(lr),
    "adam": lambda lr=0.01: jl.adam(lr),
}


@pytest.fixture(params=sorted(ALIASES))
def alias_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


Wrap = Callable[[Any], Any]

# The layouts every numerical test runs through: the default, everything packed into one vector
# per dtype, and a mix. SHAPES has leaves of 15, 3, 24 and 1 entries: max_leaf_size=4 packs the 3
# and the 1 into one vector and leaves the 15 and the 24 as they are.
LAYOUTS: dict[str, Wrap] = {
    "default": lambda tx: tx,
    "packed": jl.packed,
    "packed-mixed": lambda tx: jl.packed(tx, max_leaf_size=4),
    "one_loop": lambda tx: jl.one_loop(tx, enabled=True),
}
# JAXOPT_LECTURES_TEST_ONE_LOOP=1 wraps the default layout (and the optax-idiom tables) in
# jl.one_loop with its copies on: tests/test_one_loop.py runs the unit tier of the contract
# files so, with XLA:CPU's multi-output fusion on.
ONE_LOOP = os.environ.get("JAXOPT_LECTURES_TEST_ONE_LOOP") == "1"
if ONE_LOOP:
    LAYOUTS["default"] = LAYOUTS["one_loop"]


# The unit tier runs the default layout: tests/test_packed.py checks there, for every alias and
# both packed layouts, that packing changes no number (tests/test_one_loop.py does for one_loop).
# The integration tier runs every test that takes this fixture in every layout.
LAYOUT_PARAMS = [
    pytest.param("default"),
    pytest.param("packed", marks=pytest.mark.integration),
    pytest.param("packed-mixed", marks=pytest.mark.integration),
    pytest.param("one_loop", marks=pytest.mark.integration),
]


@pytest.fixture(params=LAYOUT_PARAMS)
def layout(request: pytest.FixtureRequest) -> Wrap:
    """Wraps a transformation in one of the :data:`LAYOUTS` (the test runs once for each)."""
    return LAYOUTS[request.param]


def run_python(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` in a child process with the environment ``env``; assert that it
    exited with 0 (the message shows the end of its stderr, then of its stdout) and return it."""
    result = subprocess.run(
        [sys.executable, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{result.stderr[-4000:]}\n{result.stdout[-4000:]}"
    return result


def run_on_eight_devices(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` in a child process that sees 8 simulated CPU devices (XLA reads the
    device count once, at start-up, so multi-device tests need their own process); assert that it
    exited with 0 and return it (see :func:`run_python`)."""
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
    }
    return run_python(*args, env=env, timeout=timeout)
