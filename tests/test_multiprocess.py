"""Real multi-process runs on JAX's distributed runtime, on one host over loopback.

Two CPU processes (one or two devices each) joined by ``jax.distributed`` run the data-parallel
trainer of ``examples/data_parallel.py``: the batch-norm statistics and the gradient are reduced
across processes by real collectives (Gloo over TCP). Checked here:

- the two processes end with the parameters, batch-norm state and optimizer state of one process
  training on the whole batch (215 Adam steps in float64, where rounding cannot hide a wrong
  gradient), and bit for bit those of one process with the same two devices (float32);
- a checkpoint (orbax) of the state, restored, continues bit for bit;
- ``newton_cg`` with its parameters sharded across the two processes reaches the single-device
  minimizer, and its sharded state round-trips through a checkpoint;
- faults: a process killed mid-run stops the job with a one-line error (launcher), or stops the
  survivor within the heartbeat timeout (the bare runtime); a busy port or an unresolvable
  coordinator fails at once.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_python

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = str(ROOT / "examples" / "data_parallel.py")
# 1,400 training examples in global batches of 32: 43 steps per epoch, 215 steps in all.
ADAM = ["--optimizer", "adam", "--lr", "1e-3", "--batch-size", "32", "--epochs", "5"]
TIMEOUT = 120  # per command; the runs take 10-30 s on 2 shared cores


def _env(devices: int = 1) -> dict[str, str]:
    """This environment for a single JAX process on ``devices`` CPU devices."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAXOPT_LECTURES_")}
    env.pop("JAX_COORDINATOR_ADDRESS", None)
    env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def launch(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """``python -m jaxopt_lectures.launch *args``; asserts success, returns the completed run."""
    return run_python("-m", "jaxopt_lectures.launch", *args, env=_env(), timeout=timeout)


def single(*args: str, devices: int = 1) -> subprocess.CompletedProcess[str]:
    """``python *args`` as one process with ``devices`` CPU devices; asserts success."""
    return run_python(*args, env=_env(devices), timeout=TIMEOUT)


def compare(a_path: Path, b_path: Path) -> dict[str, Any]:
    """How far two saved training states are apart (see the example's ``--save``)."""
    a, b = np.load(a_path), np.load(b_path)
    assert a.files == b.files
    rel, ints_equal = 0.0, True
    for name in a.files:
        x, y = a[name], b[name]
        assert x.shape == y.shape, name
        assert x.dtype == y.dtype, name
        if np.issubdtype(x.dtype, np.integer):
            ints_equal &= bool(np.array_equal(x, y))
        elif name != "losses":
            rel = max(rel, float(np.max(np.abs(x - y)) / max(np.max(np.abs(x)), 1e-3)))
    return {
        "bitwise": all(np.array_equal(a[k], b[k]) for k in a.files),
        "max_state_rel_diff": rel,
        "ints_equal": ints_equal,
        "max_loss_diff": float(np.max(np.abs(a["losses"] - b["losses"]))),
        "losses": a["losses"],
        "leaves": len(a.files) - 1,
    }


@pytest.fixture(scope="module")
def one_process_float64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: one process, one device, the whole batch, float64."""
    path = tmp_path_factory.mktemp("reference") / "one.npz"
    result = single(EXAMPLE, *ADAM, "--x64", "--save", str(path))
    assert "process 0 of 1" in result.stdout
    assert "1 device(s) of cpu" in result.stdout
    return path


@pytest.mark.parametrize("local_devices", [1, 2])
def test_two_processes_train_like_one_process_on_the_whole_batch(
    local_devices: int, one_process_float64: Path, tmp_path: Path
) -> None:
    out = tmp_path / "two.npz"
    result = launch(
        "-n", "2", "--local-devices", str(local_devices), "--",
        EXAMPLE, *ADAM, "--x64", "--save", str(out),
    )  # fmt: skip
    devices = 2 * local_devices
    for p in (0, 1):
        assert f"[p{p}] process {p} of 2 (pid" in result.stdout
        assert f"{devices} device(s) of cpu ({local_devices} here)" in result.stdout
    r = compare(one_process_float64, out)
    assert len(r["losses"]) == 215
    assert r["losses"][-1] < 0.2 * r["losses"][0]  # it trains
    # params, batch-norm state, Adam's moments and its step count (a constant rate keeps none)
    assert r["leaves"] == 31
    assert r["ints_equal"]  # step counters, batch-norm counters
    # float64: one sum over 32 examples versus per-device sums combined across processes
    # differ by rounding (1e-16), which 215 Adam steps amplify to about 1e-13 here. Batch norm
    # with each device's own statistics instead of the global batch's (the likeliest bug) moves
    # the same run by a relative amount of order 1.
    assert r["max_state_rel_diff"] < 1e-9, r
    assert r["max_loss_diff"] < 1e-10, r


def test_two_processes_are_bitwise_one_process_with_as_many_devices(tmp_path: Path) -> None:
    # Two devices in all, in one process or in two: the gradient and the batch-norm statistics
    # are one partial sum per device plus an all-reduce of two values, the same arithmetic
    # whether or not it crosses a process boundary, so the runs agree to the last bit, even in
    # float32 where Adam turns any rounding difference into visible drift (one device versus
    # two: up to 20% of a leaf after 300 steps). With more devices per process the cross-process
    # all-reduce may group the partial sums differently from an in-process one: equal to
    # rounding, not bitwise.
    two, one = tmp_path / "two.npz", tmp_path / "one.npz"
    launch("-n", "2", "--local-devices", "1", "--", EXAMPLE, *ADAM, "--save", str(two))
    single(EXAMPLE, *ADAM, "--save", str(one), devices=2)
    r = compare(one, two)
    assert r["bitwise"], r


def test_checkpoint_restart_continues_bitwise(tmp_path: Path) -> None:
    train = ["--optimizer", "adam", "--lr", "1e-3", "--batch-size", "64", "--epochs", "2"]
    checkpoints = tmp_path / "checkpoints"
    straight, resumed = tmp_path / "straight.npz", tmp_path / "resumed.npz"
    # 2 epochs (42 steps) in one go, saving after each ...
    first = launch(
        "-n", "2", "--local-devices", "2", "--", EXAMPLE, *train,
        "--checkpoint-dir", str(checkpoints), "--save", str(straight),
    )  # fmt: skip
    assert f"[p0] saved {checkpoints / 'epoch_1'}" in first.stdout
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch_1", "epoch_2"]
    # ... and a fresh job that restores epoch 1 and trains epoch 2.
    second = launch(
        "-n", "2", "--local-devices", "2", "--", EXAMPLE, *train,
        "--resume", str(checkpoints / "epoch_1"), "--save", str(resumed),
    )  # fmt: skip
    assert "[p1] resumed from" in second.stdout
    a, b = np.load(straight), np.load(resumed)
    assert len(a["losses"]) == 2 * len(b["losses"]) == 42
    np.testing.assert_array_equal(a["losses"][21:], b["losses"])
    for name in a.files:
        if name != "losses":
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


NEWTON_CG = textwrap.dedent(
    r"""
    import json, sys

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.experimental import multihost_utils
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

    import jaxopt_lectures as jl
    from jaxopt_lectures import checkpoint, distributed

    assert distributed.initialize()
    folder = sys.argv[1]
    # "model" spans the devices of both processes: each holds half of w.
    mesh = jax.make_mesh((jax.device_count(),), ("model",), axis_types=(AxisType.Auto,))
    rng = np.random.default_rng(0)
    n, d = 256, 64
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = (X @ rng.standard_normal(d) + 0.5 * rng.standard_normal(n) > 0).astype(np.float32)

    def loss(p):
        z = X @ p["w"] + p["b"]
        return jnp.mean(jnp.logaddexp(0.0, z) - y * z) + 0.5e-2 * jnp.sum(p["w"] ** 2)

    tx = jl.newton_cg()

    @jax.jit
    def step(p, s):
        u, s = tx.update(jax.grad(loss)(p), s, p, value_fn=loss)
        return optax.apply_updates(p, u), s

    def run(params, state, steps):
        for _ in range(steps):
            params, state = step(params, state)
        return params, state

    def gather(tree):  # every process gets the whole of every array
        return jax.tree.map(
            lambda a: np.asarray(multihost_utils.process_allgather(a, tiled=True)), tree)

    zeros = {"w": np.zeros(d, np.float32), "b": np.zeros((), np.float32)}
    local = jax.tree.map(jnp.asarray, zeros)  # on this process's first device only
    reference, _ = run(local, tx.init(local), 10)
    start = {
        "w": jax.make_array_from_callback(
            (d,), NamedSharding(mesh, P("model")), lambda i: zeros["w"][i]),
        "b": jax.make_array_from_callback((), NamedSharding(mesh, P()), lambda i: zeros["b"]),
    }
    state0 = jl.init_sharded(tx, start)
    # Adam's moments are sharded like w: state that no single process holds.
    adam = jl.adam(1e-2)
    adam_state = jl.init_sharded(adam, start)
    adam_state = jax.jit(adam.update)(jax.jit(jax.grad(loss))(start), adam_state, start)[1]

    p5, s5 = run(start, state0, 5)
    checkpoint.save(f"{folder}/step_5", (p5, s5, adam_state))
    p10, s10 = run(p5, s5, 5)
    r5, rs5, radam = checkpoint.restore(f"{folder}/step_5", (start, state0, adam_state))
    q10, t10 = run(r5, rs5, 5)

    w = gather(p10)
    def same(a, b):
        pairs = zip(jax.tree.leaves(gather(a)), jax.tree.leaves(gather(b)))
        return all(np.array_equal(x, y) for x, y in pairs)
    print("REPORT " + json.dumps({
        "w_spec": str(p10["w"].sharding.spec),
        "w_local_fraction": sum(s.data.size for s in p10["w"].addressable_shards) / d,
        "adam_mu_fully_addressable": radam[0].mu["w"].is_fully_addressable,
        "adam_mu_spec": str(radam[0].mu["w"].sharding.spec),
        "max_diff_vs_one_device": float(np.max(np.abs(w["w"] - np.asarray(reference["w"])))),
        "grad_norm": float(np.linalg.norm(jax.grad(loss)(w)["w"])),
        "restored_bitwise": same((p5, s5, adam_state), (r5, rs5, radam)),
        "continued_bitwise": same((p10, s10), (q10, t10)),
    }))
    """
)


def test_newton_cg_with_parameters_sharded_across_processes(tmp_path: Path) -> None:
    result = launch("-n", "2", "--local-devices", "2", "--", "-c", NEWTON_CG, str(tmp_path))
    reports = re.findall(r"^\[p(\d)\] REPORT (.*)$", result.stdout, flags=re.MULTILINE)
    assert sorted(p for p, _ in reports) == ["0", "1"]
    for _, text in reports:
        r = json.loads(text)
        assert r["w_spec"] == "P('model',)", r
        assert r["w_local_fraction"] == 0.5, r  # each process holds half of the parameters
        assert not r["adam_mu_fully_addressable"], r
        assert r["adam_mu_spec"] == "P('model',)", r
        assert r["grad_norm"] < 1e-4, r  # a minimizer ...
        assert r["max_diff_vs_one_device"] < 1e-5, r  # ... the one a single device finds
        assert r["restored_bitwise"], r
        assert r["continued_bitwise"], r


def _read_until(stream: Any, pattern: str, lines: list[str], deadline: float) -> re.Match[str]:
    """Read lines of ``stream`` (kept in ``lines``) until one matches ``pattern``."""
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"no line matched {pattern!r}:\n" + "".join(lines[-40:]))


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; any still running at the end are killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_killed_process_stops_the_job_with_one_line(
    processes: list[subprocess.Popen[str]],
) -> None:
    launcher = subprocess.Popen(
        [sys.executable, "-m", "jaxopt_lectures.launch", "-n", "2", "--",
         EXAMPLE, "--epochs", "1000", "--batch-size", "64"],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    processes.append(launcher)
    lines: list[str] = []
    deadline = time.monotonic() + TIMEOUT
    assert launcher.stdout is not None
    victim = None
    while victim is None:
        match = _read_until(launcher.stdout, r"^\[p(\d)\] process \1 of 2 \(pid (\d+)\)", lines,
                            deadline)  # fmt: skip
        if match.group(1) == "1":
            victim = int(match.group(2))
    _read_until(launcher.stdout, r"^\[p1\] epoch 1:", lines, deadline)  # training, mid-run
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    _, err = launcher.communicate(timeout=60)
    stopped_after = time.monotonic() - killed
    print(f"job stopped {stopped_after:.1f} s after the kill")
    assert launcher.returncode == 128 + signal.SIGKILL
    # The poll interval, then SIGTERM, which JAX's runtime takes as a preemption notice and
    # ignores, then SIGKILL after the default 2 s of grace.
    assert stopped_after < 15, stopped_after
    errors = [line for line in err.splitlines() if line.startswith("launch:")]
    assert errors == [errors[-1]]
    assert errors[0].startswith(f"launch: error: process 1 (pid {victim}) was killed by SIGKILL")
    assert "stopped the 1 other process(es)" in errors[0]


@pytest.mark.parametrize("victim_id", [1, 0], ids=["worker-dies", "coordinator-dies"])
def test_without_the_launcher_the_runtime_stops_the_survivor(
    victim_id: int, processes: list[subprocess.Popen[str]]
) -> None:
    # The documented recipe for one's own scheduler: environment variables, one process each.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for p in (0, 1):
        env = {
            **_env(),
            "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
            "JAX_COORDINATOR_BIND_ADDRESS": f"127.0.0.1:{port}",
            "JAXOPT_LECTURES_NUM_PROCESSES": "2",
            "JAXOPT_LECTURES_PROCESS_ID": str(p),
            "JAXOPT_LECTURES_HEARTBEAT_TIMEOUT": "3",
            "PYTHONUNBUFFERED": "1",
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, EXAMPLE, "--epochs", "1000", "--batch-size", "64"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    victim, survivor = processes[victim_id], processes[1 - victim_id]
    lines: list[str] = []
    assert victim.stdout is not None
    _read_until(victim.stdout, r"^epoch 1:", lines, time.monotonic() + TIMEOUT)
    victim.kill()
    killed = time.monotonic()
    output, _ = survivor.communicate(timeout=60)
    stopped_after = time.monotonic() - killed
    assert survivor.returncode != 0
    # Its next collective fails at once (the peer's socket is gone), or the coordinator misses
    # the victim's heartbeats (3 s here) and stops it; either way well before a hang.
    print(f"survivor stopped {stopped_after:.1f} s after the kill")
    assert stopped_after < 30, stopped_after
    assert "global batch" in output  # it had started (and trained in step with the victim)


def test_a_busy_port_or_a_bad_coordinator_fails_fast() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        start = time.monotonic()
        busy = subprocess.run(
            [sys.executable, "-m", "jaxopt_lectures.launch", "-n", "2", "--port", str(port),
             "--", EXAMPLE],
            env=_env(), capture_output=True, text=True, timeout=TIMEOUT, check=False,
        )  # fmt: skip
        busy_seconds = time.monotonic() - start
    assert busy.returncode == 2
    assert busy.stdout == ""  # no process was started
    assert busy.stderr.strip().count("\n") == 0
    assert f"port {port} is already in use" in busy.stderr
    start = time.monotonic()
    bad = subprocess.run(
        [sys.executable, "-m", "jaxopt_lectures.launch", "-n", "1", "--num-processes", "2",
         "--first-process-id", "1", "--coordinator", "no-such-host.invalid:1234", "--", EXAMPLE],
        env=_env(), capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    bad_seconds = time.monotonic() - start
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr.strip().count("\n") == 0
    assert bad.stderr.startswith("launch: error: coordinator address 'no-such-host.invalid:1234'")
    assert "does not resolve" in bad.stderr
    # Both are refused before any JAX process starts: the time of one Python start-up.
    assert busy_seconds < 20
    assert bad_seconds < 20


def test_one_launcher_per_host(processes: list[subprocess.Popen[str]]) -> None:
    # The several-hosts command of docs/multi-device.md, with both "hosts" on this machine.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for first in (0, 1):
        command = [
            sys.executable, "-m", "jaxopt_lectures.launch", "-n", "1", "--num-processes", "2",
            "--first-process-id", str(first), "--coordinator", f"127.0.0.1:{port}",
            "--local-devices", "2", "--", EXAMPLE, "--epochs", "1",
        ]  # fmt: skip
        processes.append(
            subprocess.Popen(
                command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    outputs = [process.communicate(timeout=TIMEOUT)[0] for process in processes]
    for first, (process, output) in enumerate(zip(processes, outputs, strict=True)):
        assert process.returncode == 0, output[-4000:]
        assert f"[p{first}] process {first} of 2 (pid" in output
        assert "4 device(s) of cpu (2 here)" in output
    # One job: both processes report the same global loss.
    losses = [re.search(r"epoch 1: training loss (\S+),", output) for output in outputs]
    assert all(losses)
    assert losses[0].group(1) == losses[1].group(1)  # type: ignore[union-attr]
