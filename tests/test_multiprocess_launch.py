"""The launcher's and ``distributed.initialize``'s own logic, without starting JAX processes.

Argument parsing, the environment each process gets, the checks of the coordinator address and
port, and the supervision of the processes (output forwarding with a prefix, the exit status, the
others stopped when one fails) exercised with tiny Python processes that do not import JAX.
The real multi-process runs are in ``test_multiprocess.py`` (integration tier).
"""

from __future__ import annotations

import contextlib
import io
import math
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
        (["-n", "0", "--", "t.py"], "argument -n/--num-local: must be an integer in [1, 1024]"),
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
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line, no usage block
    assert err.startswith("launch: error: ")
    assert message in err, err


# Each numeric option with values outside its range, not finite, or not a number: the message
# names the option and the allowed range.
BAD_NUMBERS = [
    ("--grace", "nan", "[0, 3600]"),
    ("--grace", "inf", "[0, 3600]"),
    ("--grace", "-1", "[0, 3600]"),
    ("--grace", "soon", "[0, 3600]"),
    ("--timeout", "nan", "[0, 1e+09]"),
    ("--timeout", "-inf", "[0, 1e+09]"),
    ("--timeout", "1e400", "[0, 1e+09]"),
    ("--port", "70000", "[0, 65535]"),
    ("--port", "-1", "[0, 65535]"),
    ("--port", "80.5", "[0, 65535]"),
    ("--num-local", "0", "[1, 1024]"),
    ("--num-local", "nan", "[1, 1024]"),
    ("--num-processes", "0", "[1, 65536]"),
    ("--first-process-id", "-1", "[0, 65535]"),
    ("--local-devices", "0", "[1, 1024]"),
    ("--heartbeat-timeout", "0", "[1, 86400]"),
    ("--heartbeat-timeout", "1e9", "[1, 86400]"),
    ("--initialization-timeout", "nan", "[1, 86400]"),
]


@pytest.mark.parametrize(("option", "value", "allowed"), BAD_NUMBERS)
def test_every_numeric_option_is_checked_in_one_line_with_exit_2(
    option: str, value: str, allowed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        launch.main([f"{option}={value}", "--", "-c", "pass"])
    assert raised.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith("launch: error: ")
    assert option in captured.err
    assert allowed in captured.err
    assert repr(value) in captured.err


@pytest.mark.parametrize(
    ("field", "value"),
    [("grace", math.nan), ("timeout", math.inf), ("port", 70000), ("num_local", 0),
     ("heartbeat_timeout", 2.5), ("local_devices", True)],
)  # fmt: skip
def test_a_launch_config_built_in_python_is_checked_too(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"{field}.*must be"):
        launch.LaunchConfig(("t.py",), **{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["-n", "2", "--help"], ["-h", "--", "t.py"]])
def test_help_with_or_without_a_program_prints_usage_and_exits_0(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        launch.main(argv)
    assert raised.value.code == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("usage: python -m jaxopt_lectures.launch")
    assert "-- SCRIPT.py" in captured.out
    assert "Exit status" in captured.out
    assert captured.err == ""


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


def test_run_stops_the_job_when_a_worker_raises() -> None:
    code = (
        "import os, time; i = int(os.environ['JAXOPT_LECTURES_PROCESS_ID'])\n"
        "if i == 1: raise RuntimeError('boom in worker 1')\n"
        "time.sleep(60)"
    )
    status, out, err, elapsed = _run(["-n", "2", "--grace", "1", "--", "-c", code])
    assert status == 1  # Python's status for an uncaught exception
    assert elapsed < 10
    assert "[p1] RuntimeError: boom in worker 1" in out.splitlines()  # its traceback, forwarded
    assert err.count("\n") == 1, err
    assert err.startswith("launch: error: process 1 (pid ")
    assert "exited with status 1" in err


def _ended(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie nobody reaped yet counts as ended)."""
    stat = Path(f"/proc/{pid}/stat")
    if not Path("/proc/self/stat").exists():  # no procfs: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


# Each process writes its pid and that of a child of its own, which ignores SIGTERM (as a data
# loader's worker or a stuck subprocess might); then process 1 fails or every process succeeds.
WITH_GRANDCHILDREN = """
import os, pathlib, subprocess, sys, time
folder = pathlib.Path(sys.argv[1])
i = int(os.environ["JAXOPT_LECTURES_PROCESS_ID"])
ready = folder / f"ready-{i}"
child = subprocess.Popen([sys.executable, "-c",
    "import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "pathlib.Path(sys.argv[1]).touch(); time.sleep(60)", str(ready)])
while not ready.exists():
    time.sleep(0.01)
(folder / f"pids-{i}").write_text(f"{os.getpid()} {child.pid}")
if sys.argv[2] == "fail":
    if i == 1:
        sys.exit(3)
    time.sleep(60)
"""


@pytest.mark.parametrize(("outcome", "expected"), [("fail", 3), ("succeed", 0)])
def test_no_process_of_the_job_is_left_behind(outcome: str, expected: int, tmp_path: Path) -> None:
    """The launcher stops each process's whole process group: the children a process started
    end with the job too, when it fails and when it succeeds, even if they ignore SIGTERM."""
    argv = ["-n", "2", "--grace", "0.5", "--", "-c", WITH_GRANDCHILDREN, str(tmp_path), outcome]
    pids: list[int] = []
    try:
        status, _, err, elapsed = _run(argv)
        pids = [int(p) for f in sorted(tmp_path.glob("pids-*")) for p in f.read_text().split()]
        assert status == expected, err
        assert len(pids) == 4
        deadline = time.monotonic() + 2.0  # SIGKILL is delivered asynchronously
        while not all(_ended(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [pid for pid in pids if not _ended(pid)] == []
        assert elapsed < 10
    finally:  # never leave them to the machine, whatever failed
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


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


# --- The launcher as a user starts it, with real JAX processes (integration tier) ---------------


def _launcher(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    """``python -m jaxopt_lectures.launch ARGS`` in a process of its own (JAX on CPU)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAXOPT_LECTURES_")}
    env.pop("JAX_COORDINATOR_ADDRESS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "jaxopt_lectures.launch", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,  # type: ignore[call-overload]
    )  # fmt: skip


@pytest.mark.integration  # each command imports JAX: a second or two
def test_the_module_prints_help_and_rejects_bad_arguments_in_one_line() -> None:
    for argv in (["--help"], ["-h", "--", "train.py"]):
        out, err = _launcher(*argv).communicate(timeout=60)
        assert out.startswith("usage: python -m jaxopt_lectures.launch"), (out, err)
        assert err == ""
    for argv, word in (
        (["--grace", "nan", "--", "t.py"], "--grace"),
        (["--timeout", "nan", "--", "t.py"], "--timeout"),
        (["--port", "70000", "--", "t.py"], "--port"),
        (["-n", "2", "train.py"], "after '--'"),
    ):
        launcher = _launcher(*argv)
        out, err = launcher.communicate(timeout=60)
        assert launcher.returncode == 2, (argv, err)
        assert out == ""
        assert err.count("\n") == 1, err
        assert word in err


# Two JAX processes that run a cross-process collective in a loop until they are stopped.
COLLECTIVE_LOOP = """
import os, sys
from jaxopt_lectures import distributed
distributed.initialize()
import jax
from jax.experimental import multihost_utils
print(f"process {jax.process_index()} pid {os.getpid()}", flush=True)
step = 0
while True:
    multihost_utils.sync_global_devices(f"step {step}")
    step += 1
    if step == 20:
        print("in step", flush=True)
"""


@pytest.mark.integration
def test_a_killed_worker_ends_the_job_within_the_heartbeat_timeout() -> None:
    """SIGKILL to one process in the middle of collectives: the launcher stops the job with a
    non-zero status well within the heartbeat timeout (4 s here), and no process remains."""
    heartbeat = 4
    launcher = _launcher(
        "-n", "2", "--heartbeat-timeout", str(heartbeat), "--grace", "1", "--", "-c",
        COLLECTIVE_LOOP,
    )  # fmt: skip
    pids: dict[str, int] = {}
    try:
        assert launcher.stdout is not None
        stepping = 0
        deadline = time.monotonic() + 120
        while stepping < 2 and time.monotonic() < deadline:
            line = launcher.stdout.readline()
            assert line, "the job ended before it ran its collectives"
            if " pid " in line:
                pids[line.split()[2]] = int(line.split()[-1])
            stepping += line.endswith("in step\n")
        assert stepping == 2
        os.kill(pids["1"], signal.SIGKILL)
        killed = time.monotonic()
        _, err = launcher.communicate(timeout=60)
        stopped_after = time.monotonic() - killed
        print(f"job stopped {stopped_after:.2f} s after the kill")
        assert launcher.returncode == 128 + signal.SIGKILL
        assert stopped_after < heartbeat, stopped_after
        errors = [line for line in err.splitlines() if line.startswith("launch:")]
        assert len(errors) == 1, err
        assert errors[0].startswith(f"launch: error: process 1 (pid {pids['1']}) was killed")
        assert _ended(pids["0"])
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.integration
def test_a_coordinator_that_never_comes_up_ends_the_job_after_the_initialization_timeout() -> None:
    """This host runs process 1 of 2; process 0 (the coordinator, on "another host") never
    starts: the process gives up after --initialization-timeout with one line, and the job ends
    with its status and the launcher's line naming it."""
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    launcher = _launcher(
        "-n", "1", "--num-processes", "2", "--first-process-id", "1",
        "--coordinator", f"127.0.0.1:{port}", "--initialization-timeout", "2", "--", "-c",
        COLLECTIVE_LOOP,
    )  # fmt: skip
    out, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 1
    assert time.monotonic() - start < 30
    assert "[p1] TimeoutError: " in out
    assert "no coordinator answered" in out
    assert err.count("\n") == 1, err
    assert err.startswith("launch: error: process 1 (pid ")
    assert "exited with status 1" in err
