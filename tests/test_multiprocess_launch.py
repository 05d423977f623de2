"""The launcher's and ``distributed.initialize``'s own logic, without starting JAX processes.

Argument parsing, the environment each process gets, the checks of the coordinator address and
port, and the supervision of the processes (output forwarding with a prefix, the exit status, the
others stopped when one fails) exercised with tiny Python processes that do not import JAX.
The real multi-process runs are in ``test_multiprocess.py`` (integration tier).
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jaxopt_lectures import distributed, launch


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 with a listener on it for the duration of the test."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def test_parse_args_defaults_and_command() -> None:
    config = launch.parse_args(["-n", "3", "--", "train.py", "--lr", "0.1", "--", "x"])
    assert config.num_local == config.num_processes == 3
    assert config.first_process_id == 0
    assert config.command == ("train.py", "--lr", "0.1", "--", "x")  # the first -- splits
    assert config.coordinator is None
    assert config.port == 0
    assert config.local_devices == 1
    assert config.platform == "cpu"
    assert config.grace == launch.LaunchConfig(("t.py",)).grace == 2.0


def test_parse_args_several_hosts() -> None:
    config = launch.parse_args(
        ["-n", "2", "--num-processes", "4", "--first-process-id", "2",
         "--coordinator", "127.0.0.1:1234", "--platform", "auto", "--", "-m", "pkg.train"]
    )  # fmt: skip
    assert (config.num_local, config.num_processes, config.first_process_id) == (2, 4, 2)
    assert config.coordinator == "127.0.0.1:1234"
    assert config.command == ("-m", "pkg.train")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-n", "2", "train.py"], "after '--'"),
        (["-n", "2", "--"], "nothing to run"),
        (["-n", "0", "--", "t.py"], "must be >= 1"),
        (["-n", "2", "--num-processes", "3", "--", "t.py"], "needs --coordinator"),
        (["-n", "2", "--num-processes", "2", "--first-process-id", "1", "--", "t.py"], "fit"),
        (["--coordinator", "127.0.0.1", "--", "t.py"], "host:port"),
        (["--coordinator", "127.0.0.1:1", "--port", "5", "--", "t.py"], "not allowed with"),
        (["--platform", "auto", "--local-devices", "2", "--", "t.py"], "--platform cpu"),
    ],
)
def test_parse_args_rejects(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        launch.parse_args(argv)
    assert raised.value.code != 0
    text = str(raised.value.code) + capsys.readouterr().err
    assert message in text, text


def test_build_env_one_host() -> None:
    config = launch.LaunchConfig(("t.py",), num_local=2, num_processes=2, local_devices=3)
    base = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8 --other", "HOME": "/h"}
    env = launch.build_env(base, config, 1, "127.0.0.1:4321")
    assert env["HOME"] == "/h"
    assert env["JAX_COORDINATOR_ADDRESS"] == "127.0.0.1:4321"
    assert env["JAX_COORDINATOR_BIND_ADDRESS"] == "127.0.0.1:4321"  # loopback only
    assert env["JAXOPT_LECTURES_NUM_PROCESSES"] == "2"
    assert env["JAXOPT_LECTURES_PROCESS_ID"] == "1"
    assert env["JAX_PLATFORMS"] == "cpu"
    assert env["XLA_FLAGS"].split() == ["--other", "--xla_force_host_platform_device_count=3"]
    assert base["XLA_FLAGS"].startswith("--xla_force")  # the caller's mapping is untouched


def test_build_env_several_hosts_auto_platform() -> None:
    config = launch.LaunchConfig(
        ("t.py",), num_processes=4, first_process_id=2, coordinator="10.0.0.1:1234",
        platform="auto",
    )  # fmt: skip
    env = launch.build_env({"JAX_COORDINATOR_BIND_ADDRESS": "x"}, config, 2, "10.0.0.1:1234")
    assert "JAX_COORDINATOR_BIND_ADDRESS" not in env  # process 0 listens on every interface
    assert "JAX_PLATFORMS" not in env
    assert "XLA_FLAGS" not in env
    assert env["JAXOPT_LECTURES_PROCESS_ID"] == "2"


def test_parse_address() -> None:
    assert distributed.parse_address("localhost:80") == ("localhost", 80)
    assert distributed.parse_address("[::1]:9", resolve=False) == ("::1", 9)
    for bad in ("host", ":80", "host:0", "host:70000", "host:x"):
        with pytest.raises(ValueError, match="coordinator address"):
            distributed.parse_address(bad, resolve=False)


def test_port_in_use(busy_port: int) -> None:
    assert distributed.port_in_use("127.0.0.1", busy_port)
    assert distributed.port_in_use("", busy_port)  # every interface includes loopback
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    assert not distributed.port_in_use("127.0.0.1", free)


def test_initialize_single_process_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
    assert distributed.initialize() is False
    with pytest.raises(ValueError, match="without a coordinator"):
        distributed.initialize(num_processes=2, process_id=1)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"num_processes": 2}, ValueError, "process_id too"),
        ({"num_processes": 2, "process_id": 2}, ValueError, r"process_id must be in \[0, 1\]"),
        ({"num_processes": 0, "process_id": 0}, ValueError, "num_processes must be >= 1"),
        (
            {"coordinator_address": "no-such-host.invalid:1", "num_processes": 2, "process_id": 1},
            ValueError,
            "does not resolve",
        ),
        (
            {"coordinator_address": "0.0.0.0:1", "num_processes": 2, "process_id": 1},
            ValueError,
            "names no host",
        ),
    ],
)
def test_initialize_rejects_a_bad_setup_before_touching_jax(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    kwargs = {"coordinator_address": "127.0.0.1:1", **kwargs}
    with pytest.raises(error, match=message):
        distributed.initialize(**kwargs)  # type: ignore[arg-type]


def test_initialize_process_0_refuses_a_busy_port(
    busy_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JAX_COORDINATOR_BIND_ADDRESS", f"127.0.0.1:{busy_port}")
    with pytest.raises(ValueError, match="already in use"):
        distributed.initialize(f"127.0.0.1:{busy_port}", 2, 0)


def test_initialize_times_out_with_one_line_when_no_coordinator_answers() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="no coordinator answered") as raised:
        distributed.initialize(f"127.0.0.1:{port}", 2, 1, initialization_timeout=1)
    assert time.monotonic() - start < 5
    assert "\n" not in str(raised.value)


def _run(argv: list[str]) -> tuple[int, str, str, float]:
    out, err = io.StringIO(), io.StringIO()
    start = time.monotonic()
    status = launch.run(launch.parse_args(argv), out=out, err=err)
    return status, out.getvalue(), err.getvalue(), time.monotonic() - start


def test_run_forwards_prefixed_output_and_succeeds() -> None:
    code = (
        "import os; i = os.environ['JAXOPT_LECTURES_PROCESS_ID']; "
        "print('hello from', i, 'of', os.environ['JAXOPT_LECTURES_NUM_PROCESSES']); "
        "print('partial line', end='')"
    )
    status, out, err, _ = _run(["-n", "2", "--", "-c", code])
    assert status == 0, err
    assert err == ""
    lines = sorted(out.splitlines())
    assert lines == [
        "[p0] hello from 0 of 2",
        "[p0] partial line",
        "[p1] hello from 1 of 2",
        "[p1] partial line",
    ]


def test_run_stops_the_others_when_one_fails() -> None:
    code = (
        "import os, sys, time; i = int(os.environ['JAXOPT_LECTURES_PROCESS_ID'])\n"
        "if i == 1: sys.exit(3)\n"
        "time.sleep(60)"
    )
    status, _, err, elapsed = _run(["-n", "2", "--grace", "1", "--", "-c", code])
    assert status == 3
    assert elapsed < 10  # not the 60 s process 0 would have slept
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("launch: error: process 1 (pid ")
    assert "exited with status 3" in lines[0]
    assert "stopped the 1 other process(es)" in lines[0]


def test_run_escalates_to_sigkill_after_the_grace_period(tmp_path: Path) -> None:
    ready = tmp_path / "p1-ignores-sigterm"
    code = (
        "import os, pathlib, signal, time; i = int(os.environ['JAXOPT_LECTURES_PROCESS_ID'])\n"
        f"ready = pathlib.Path({str(ready)!r})\n"
        "if i == 1:\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN); ready.touch(); time.sleep(60)\n"
        "while not ready.exists(): time.sleep(0.01)\n"
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    status, _, err, elapsed = _run(["-n", "2", "--grace", "0.5", "--", "-c", code])
    assert status == 128 + 9
    assert "process 0 (pid" in err
    assert "was killed by SIGKILL" in err
    assert 0.5 <= elapsed < 10  # SIGTERM was ignored: SIGKILL after the grace period


def test_run_timeout() -> None:
    status, _, err, elapsed = _run(
        ["-n", "1", "--timeout", "0.5", "--grace", "1", "--", "-c", "import time; time.sleep(60)"]
    )
    assert status == 124
    assert "--timeout 0.5 s" in err
    assert elapsed < 10


def test_run_fails_fast_on_a_busy_port(busy_port: int) -> None:
    status, out, err, elapsed = _run(["-n", "2", "--port", str(busy_port), "--", "-c", "1/0"])
    assert status == 2
    assert out == ""  # nothing was started
    assert err.count("\n") == 1
    assert f"port {busy_port} is already in use" in err
    assert elapsed < 2


def test_run_fails_fast_on_an_unresolvable_coordinator() -> None:
    status, out, err, elapsed = _run(
        ["--coordinator", "no-such-host.invalid:1234", "--", "-c", "1/0"]
    )
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "does not resolve" in err
    assert elapsed < 10


@pytest.mark.integration  # starts the launcher itself, which imports JAX: a few seconds
def test_sigterm_to_the_launcher_stops_its_processes(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    code = (
        "import os, pathlib, time\n"
        f"path = pathlib.Path({str(pids)!r})\n"
        "with path.open('a') as f: f.write(f'{os.getpid()}\\n')\n"
        "time.sleep(60)"
    )
    launcher = subprocess.Popen(
        [sys.executable, "-m", "jaxopt_lectures.launch", "-n", "2", "--grace", "1", "--", "-c",
         code],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not pids.exists() or len(pids.read_text().split()) < 2):
        time.sleep(0.05)
    children = [int(pid) for pid in pids.read_text().split()]
    launcher.send_signal(signal.SIGTERM)
    _, err = launcher.communicate(timeout=30)
    assert launcher.returncode == 128 + signal.SIGTERM
    assert "terminated (SIGTERM); stopped every process" in err
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # gone (and reaped by the launcher)
