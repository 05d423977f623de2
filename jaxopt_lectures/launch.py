"""Start a multi-process JAX job: ``python -m jaxopt_lectures.launch -n 2 -- train.py args...``.

The launcher starts ``-n`` copies of ``python train.py args...``, one JAX process each, and tells
each one who it is through environment variables that
:func:`jaxopt_lectures.distributed.initialize` reads (the script calls it first). On one host
(the default) process 0 runs the coordinator on ``127.0.0.1`` at a free port, every process gets
its own ``--local-devices`` CPU devices, and the collectives between processes go over loopback
TCP: the same code path as several hosts, on one machine.

It forwards every line the processes print, prefixed ``[p0]``, ``[p1]``, ..., and exits with 0
when all of them do. When one fails (non-zero exit, a signal, ``kill -9``) it stops the others at
once (SIGTERM, then SIGKILL after ``--grace`` seconds: JAX's distributed runtime takes SIGTERM
as a preemption notice and keeps running), prints one line naming the process and how it
ended, and exits non-zero. ``--timeout`` bounds the whole job.

On several hosts run it once per host with the same ``--coordinator`` (process 0's host and a
port), the total ``--num-processes``, and each host's ``--first-process-id``::

    # host 10.0.0.1                                 # host 10.0.0.2
    python -m jaxopt_lectures.launch -n 1 \\         python -m jaxopt_lectures.launch -n 1 \\
      --coordinator 10.0.0.1:1234 \\                   --coordinator 10.0.0.1:1234 \\
      --num-processes 2 --first-process-id 0 \\        --num-processes 2 --first-process-id 1 \\
      --platform auto -- train.py                     --platform auto -- train.py

Exit status: 0 when every process succeeded; the first failing process's status otherwise (128 +
the signal number when it was killed); 2 for bad arguments, a bad coordinator address or a port
in use (checked before anything starts); 124 when ``--timeout`` ran out; 130 on Ctrl-C; 143 when
the launcher itself gets SIGTERM (its processes are stopped too).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from jaxopt_lectures import distributed

__all__ = ["LaunchConfig", "build_env", "main", "parse_args", "run"]

_DEVICE_COUNT_FLAG = re.compile(r"--xla_force_host_platform_device_count=\S*")


@dataclass(frozen=True)
class LaunchConfig:
    """What ``python -m jaxopt_lectures.launch`` was asked to do (see :func:`parse_args`)."""

    command: tuple[str, ...]  # the program each process runs: (script.py, args...) or (-m, mod)
    num_local: int = 1  # processes started here
    num_processes: int = 1  # processes in the whole job (several hosts: more than num_local)
    first_process_id: int = 0
    coordinator: str | None = None  # host:port; None: 127.0.0.1 and --port
    port: int = 0  # 0: a free one
    local_devices: int = 1  # CPU devices per process (platform "cpu")
    platform: str = "cpu"  # "cpu" or "auto" (let JAX choose: GPUs, TPUs)
    heartbeat_timeout: int = 10
    initialization_timeout: int = 60
    grace: float = 2.0
    timeout: float | None = None


def _positive(kind: type[int] | type[float], minimum: float) -> Callable[[str], int | float]:
    def check(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value

    return check


# Long: a table, one declaration per option.
def _parser() -> argparse.ArgumentParser:
    """The launcher's options (the program after ``--`` is split off before them)."""
    parser = argparse.ArgumentParser(
        prog="python -m jaxopt_lectures.launch",
        description="Start N JAX processes joined by jax.distributed (one host: loopback).",
        epilog="Example: python -m jaxopt_lectures.launch -n 2 --local-devices 2 -- train.py",
    )
    parser.add_argument(
        "-n",
        "--num-local",
        type=_positive(int, 1),
        default=1,
        help="processes to start on this host (default 1)",
    )
    parser.add_argument(
        "--num-processes",
        type=_positive(int, 1),
        default=None,
        help="processes in the whole job, all hosts (default: -n)",
    )
    parser.add_argument(
        "--first-process-id",
        type=_positive(int, 0),
        default=0,
        help="id of the first process started here (default 0)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--coordinator",
        default=None,
        metavar="HOST:PORT",
        help="process 0's coordinator (several hosts); default 127.0.0.1",
    )
    where.add_argument(
        "--port",
        type=_positive(int, 0),
        default=0,
        help="coordinator port on 127.0.0.1 (default: a free one)",
    )
    parser.add_argument(
        "--local-devices",
        type=_positive(int, 1),
        default=1,
        help="CPU devices per process (--platform cpu; default 1)",
    )
    parser.add_argument(
        "--platform",
        choices=("cpu", "auto"),
        default="cpu",
        help="cpu (default), or auto: let JAX use the host's GPUs/TPUs",
    )
    parser.add_argument(
        "--heartbeat-timeout",
        type=_positive(int, 1),
        default=10,
        help="seconds before a silent process counts as dead (default 10)",
    )
    parser.add_argument(
        "--initialization-timeout",
        type=_positive(int, 1),
        default=60,
        help="seconds to wait for all processes to join (default 60)",
    )
    parser.add_argument(
        "--grace",
        type=_positive(float, 0),
        default=2.0,
        help="seconds between SIGTERM and SIGKILL when stopping (default 2)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive(float, 0),
        default=None,
        help="stop the whole job after this many seconds",
    )
    return parser


def parse_args(argv: Sequence[str]) -> LaunchConfig:
    """Parse the launcher's command line (everything after ``--`` is the program to run).

    Example:
      >>> from jaxopt_lectures.launch import parse_args
      >>> c = parse_args(["-n", "2", "--local-devices", "2", "--", "train.py", "--lr", "0.1"])
      >>> c.num_local, c.num_processes, c.local_devices, c.command
      (2, 2, 2, ('train.py', '--lr', '0.1'))
    """
    argv = list(argv)
    if "--" not in argv:
        raise SystemExit("launch: error: give the program after '--', e.g. -n 2 -- train.py")
    split = argv.index("--")
    own, command = argv[:split], tuple(argv[split + 1 :])
    parser = _parser()
    args = parser.parse_args(own)
    if not command:
        parser.error("nothing to run after '--'")
    total = args.num_processes if args.num_processes is not None else args.num_local
    if args.first_process_id + args.num_local > total:
        parser.error(
            f"processes {args.first_process_id}..{args.first_process_id + args.num_local - 1} "
            f"do not fit in --num-processes {total}"
        )
    if total > args.num_local and args.coordinator is None:
        parser.error("a job that spans several hosts needs --coordinator HOST:PORT")
    if args.coordinator is not None:
        try:
            distributed.parse_address(args.coordinator, resolve=False)
        except ValueError as error:
            parser.error(str(error))
    if args.platform != "cpu" and args.local_devices != 1:
        parser.error("--local-devices sets simulated CPU devices; it needs --platform cpu")
    return LaunchConfig(
        command=command,
        num_local=args.num_local,
        num_processes=total,
        first_process_id=args.first_process_id,
        coordinator=args.coordinator,
        port=args.port,
        local_devices=args.local_devices,
        platform=args.platform,
        heartbeat_timeout=args.heartbeat_timeout,
        initialization_timeout=args.initialization_timeout,
        grace=args.grace,
        timeout=args.timeout,
    )


def build_env(
    base: Mapping[str, str], config: LaunchConfig, process_id: int, coordinator: str
) -> dict[str, str]:
    """The environment of process ``process_id``: ``base`` plus the settings
    :func:`jaxopt_lectures.distributed.initialize` reads, and, on CPU, the device count.

    Example:
      >>> from jaxopt_lectures.launch import LaunchConfig, build_env
      >>> env = build_env({"XLA_FLAGS": "--xla_cpu_use_thunk_runtime=true"},
      ...                 LaunchConfig(("t.py",), num_local=2, num_processes=2, local_devices=4),
      ...                 1, "127.0.0.1:1234")
      >>> env["JAXOPT_LECTURES_PROCESS_ID"], env["JAX_PLATFORMS"], env["XLA_FLAGS"]
      ('1', 'cpu', '--xla_cpu_use_thunk_runtime=true --xla_force_host_platform_device_count=4')
    """
    env = dict(base)
    env[distributed.ENV_COORDINATOR] = coordinator
    env[distributed.ENV_NUM_PROCESSES] = str(config.num_processes)
    env[distributed.ENV_PROCESS_ID] = str(process_id)
    env[distributed.ENV_HEARTBEAT_TIMEOUT] = str(config.heartbeat_timeout)
    env[distributed.ENV_INITIALIZATION_TIMEOUT] = str(config.initialization_timeout)
    env["PYTHONUNBUFFERED"] = "1"  # lines arrive as they are printed
    if config.coordinator is None:  # one host: the coordinator listens on loopback only
        env[distributed.ENV_BIND] = coordinator
    else:
        env.pop(distributed.ENV_BIND, None)
    if config.platform == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
        flags = _DEVICE_COUNT_FLAG.sub("", env.get("XLA_FLAGS", "")).split()
        flags.append(f"--xla_force_host_platform_device_count={config.local_devices}")
        env["XLA_FLAGS"] = " ".join(flags)
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _describe(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def _forward(stream: IO[str], prefix: str, out: IO[str], lock: threading.Lock) -> None:
    for line in stream:
        with lock:
            out.write(f"{prefix} {line}" if line.endswith("\n") else f"{prefix} {line}\n")
            out.flush()


def _stop(processes: Sequence[subprocess.Popen[str]], grace: float) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _coordinator(config: LaunchConfig) -> str:
    """The coordinator's ``HOST:PORT`` (a free loopback port unless given); a ``ValueError``
    if the address does not parse or, for process 0, its port is taken."""
    if config.coordinator is None:
        port = config.port or _free_port()
        coordinator = f"127.0.0.1:{port}"
        bind_host = "127.0.0.1"
    else:
        coordinator = config.coordinator
        _, port = distributed.parse_address(coordinator)
        bind_host = ""
    if config.first_process_id == 0 and distributed.port_in_use(bind_host, port):
        raise ValueError(
            f"coordinator port {port} is already in use on this host; pick another with "
            "--port/--coordinator, or leave --port out for a free one"
        )
    return coordinator


def _start(
    config: LaunchConfig, coordinator: str, out: IO[str]
) -> tuple[list[subprocess.Popen[str]], list[threading.Thread]]:
    """Start the processes of this host, each with a thread that forwards its output lines to
    ``out`` behind ``[p<id>]``."""
    lock = threading.Lock()
    processes: list[subprocess.Popen[str]] = []
    threads = []
    for offset in range(config.num_local):
        process_id = config.first_process_id + offset
        process = subprocess.Popen(
            [sys.executable, *config.command],
            env=build_env(os.environ, config, process_id, coordinator),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            bufsize=1,
        )
        processes.append(process)
        assert process.stdout is not None
        thread = threading.Thread(
            target=_forward, args=(process.stdout, f"[p{process_id}]", out, lock), daemon=True
        )
        thread.start()
        threads.append(thread)
    return processes, threads


def run(config: LaunchConfig, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Start the processes of ``config``, forward their output, supervise them; the exit status."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr

    def fail(message: str, status: int) -> int:
        err.write(f"launch: error: {message}\n")
        err.flush()
        return status

    try:
        coordinator = _coordinator(config)
    except ValueError as error:
        return fail(str(error), 2)
    started = time.monotonic()
    processes, threads = _start(config, coordinator, out)

    def finish(status: int, message: str | None) -> int:
        _stop(processes, config.grace)
        for thread in threads:
            thread.join(timeout=5.0)  # the last lines of every process, then our own
        return fail(message, status) if message else status

    try:
        while True:
            codes = [p.poll() for p in processes]
            for offset, code in enumerate(codes):
                if code not in (None, 0):
                    assert code is not None
                    others = sum(c is None for c in codes)
                    elapsed = time.monotonic() - started
                    return finish(
                        code if code > 0 else 128 - code,
                        f"process {config.first_process_id + offset} (pid "
                        f"{processes[offset].pid}) {_describe(code)} after {elapsed:.1f} s; "
                        f"stopped the {others} other process(es) still running",
                    )
            if all(code == 0 for code in codes):
                return finish(0, None)
            if config.timeout is not None and time.monotonic() - started > config.timeout:
                return finish(124, f"the job ran past --timeout {config.timeout:g} s; stopped it")
            time.sleep(0.05)
    except KeyboardInterrupt:
        return finish(130, "interrupted; stopped every process")
    except _TerminatedError:
        return finish(128 + signal.SIGTERM, "terminated (SIGTERM); stopped every process")


class _TerminatedError(Exception):
    """The launcher itself received SIGTERM (a scheduler stopping the job)."""


def _raise_terminated(signum: int, frame: object) -> None:
    del signum, frame
    raise _TerminatedError


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m jaxopt_lectures.launch``: parse the arguments and :func:`run` the job.

    A SIGTERM to the launcher (a scheduler cancelling the job) stops its processes too.
    """
    config = parse_args(sys.argv[1:] if argv is None else argv)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return run(config)
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
