"""Start a multi-process JAX job: ``python -m jaxopt_lectures.launch -n 2 -- train.py args...``.

The launcher starts ``-n`` copies of ``python train.py args...``, one JAX process each, and tells
each one who it is through environment variables that
:func:`jaxopt_lectures.distributed.initialize` reads (the script calls it first). On one host
(the default) process 0 runs the coordinator on ``127.0.0.1`` at a free port, every process gets
its own ``--local-devices`` CPU devices, and the collectives between processes go over loopback
TCP: the same code path as several hosts, on one machine.

It forwards every line the processes print, prefixed ``[p0]``, ``[p1]``, ..., and exits with 0
when all of them do. ``python -m jaxopt_lectures.launch --help`` prints the usage (with or
without a program after ``--``); bad arguments (a missing ``--``, any number that is not finite
or out of its range, such as ``--grace nan`` or ``--port 70000``) print one line naming the
option and its range, and exit 2 before anything starts.

What happens when something fails (each case is tested):

- **A process dies or raises** (a non-zero status, an uncaught exception, a signal,
  ``kill -9``): the launcher sees it within 50 ms and stops the job: SIGTERM to every process
  group, SIGKILL to what is left after ``--grace`` seconds (2 by default; JAX's distributed
  runtime takes SIGTERM as a preemption notice and keeps running). It prints one line,
  ``launch: error: process 1 (pid 4242) was killed by SIGKILL after 12.3 s; stopped the 1
  other process(es) still running``, after the failing process's own output (a traceback is
  forwarded with its prefix), and exits with that process's status. A killed process ends the
  job in about ``--grace`` seconds, well within the heartbeat timeout after which JAX itself
  would stop the survivors.
- **No process is left behind**: each process runs in a process group of its own, and the job
  stops the whole group, so the children a process started (a data loader's workers, a
  subprocess that ignores SIGTERM) end with the job, when it fails and when it succeeds. The
  launcher returns only once every process it started has been reaped.
- **A port in use or a bad coordinator address** (process 0 of the job is started here): one
  line and exit 2, before any process starts.
- **A coordinator that never comes up** (process 0 on another host that does not start): the
  processes here give up after ``--initialization-timeout`` seconds with one line
  (``TimeoutError: no coordinator answered ...``), and the job ends with their status (1).
- **A process that hangs** (alive, but silent): JAX's coordinator misses its heartbeats for
  ``--heartbeat-timeout`` seconds and fails the other processes, which ends the job as above;
  ``--timeout`` bounds the whole job.
- **Ctrl-C or SIGTERM to the launcher** stops every process group the same way (exit 130 or
  143).

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
import contextlib
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, NoReturn

from jaxopt_lectures import distributed

__all__ = ["LaunchConfig", "build_env", "main", "parse_args", "run"]

_DEVICE_COUNT_FLAG = re.compile(r"--xla_force_host_platform_device_count=\S*")


@dataclass(frozen=True)
class _Limit:
    """The allowed values of one numeric option: an integer, or a finite number of seconds, in
    ``[lowest, highest]``."""

    flag: str
    kind: type[int] | type[float]
    lowest: float
    highest: float

    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a finite number of seconds"
        return f"{what} in [{self.lowest:g}, {self.highest:g}]"

    def allows(self, value: object) -> bool:
        """Whether ``value`` is of the option's kind (a bool is not a number), finite and in
        range."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind is int and not isinstance(value, int):
            return False
        return math.isfinite(value) and self.lowest <= value <= self.highest

    def parse(self, text: str) -> int | float:
        """The option's value from the command line, checked (argparse's ``type``): one message
        for text that is no number at all and for a number out of range."""
        try:
            value = self.kind(text)
        except ValueError:
            value = None
        if value is None or not self.allows(value):
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text!r}")
        return value


# The numeric options, by LaunchConfig field: the command line and LaunchConfig itself check
# them against this one table. Counts fit JAX's process ids with room to spare; 1,024 processes
# or devices on one host is far beyond any machine; a timeout of a day, a grace of an hour.
_LIMITS = {
    "num_local": _Limit("-n/--num-local", int, 1, 1024),
    "num_processes": _Limit("--num-processes", int, 1, 65536),
    "first_process_id": _Limit("--first-process-id", int, 0, 65535),
    "port": _Limit("--port", int, 0, 65535),
    "local_devices": _Limit("--local-devices", int, 1, 1024),
    "heartbeat_timeout": _Limit("--heartbeat-timeout", int, 1, 86400),
    "initialization_timeout": _Limit("--initialization-timeout", int, 1, 86400),
    "grace": _Limit("--grace", float, 0, 3600),
    "timeout": _Limit("--timeout", float, 0, 1e9),
}


@dataclass(frozen=True)
class LaunchConfig:
    """What ``python -m jaxopt_lectures.launch`` was asked to do (see :func:`parse_args`).

    Every number is checked when the config is made (``ValueError`` naming the option and its
    range: NaN, infinities and out-of-range values never reach :func:`run`).
    """

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

    def __post_init__(self) -> None:
        for field, limit in _LIMITS.items():
            value = getattr(self, field)
            if (value is not None or field != "timeout") and not limit.allows(value):
                raise ValueError(
                    f"LaunchConfig.{field} ({limit.flag}) must be {limit.describe()}, got {value!r}"
                )
        if self.platform not in ("cpu", "auto"):
            raise ValueError(
                f"LaunchConfig.platform must be 'cpu' or 'auto', got {self.platform!r}"
            )


class _Parser(argparse.ArgumentParser):
    """argparse with the launcher's error contract: one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"launch: error: {message} (see --help)\n")


_USAGE = "%(prog)s [options] -- SCRIPT.py [ARGS ...]   (or: -- -m MODULE [ARGS ...])"
_EPILOG = """\
Example: python -m jaxopt_lectures.launch -n 2 --local-devices 2 -- train.py --epochs 5

When a process fails (a non-zero status, an uncaught exception, a signal, kill -9) the job
stops at once: SIGTERM to every process group, SIGKILL after --grace seconds, one line on
stderr naming the process and how it ended.

Exit status: 0 when every process succeeded; the first failing process's status (128 + the
signal number when it was killed); 2 for bad arguments, a bad coordinator address or a port in
use (nothing is started); 124 when --timeout ran out; 130 on Ctrl-C; 143 on SIGTERM.
"""


def _numeric(parser: Any, field: str, help_text: str, **kw: Any) -> None:
    """Add the option of LaunchConfig's ``field`` to ``parser`` (or to a group of it)."""
    limit = _LIMITS[field]
    flags = limit.flag.split("/")
    allowed = f"{limit.lowest:g} to {limit.highest:g}"
    parser.add_argument(*flags, dest=field, type=limit.parse, help=f"{help_text}; {allowed}", **kw)


# Long: a table, one declaration per option.
def _parser() -> argparse.ArgumentParser:
    """The launcher's options (the program after ``--`` is split off before them)."""
    parser = _Parser(
        prog="python -m jaxopt_lectures.launch",
        usage=_USAGE,
        description="Start N JAX processes joined by jax.distributed (one host: loopback).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _numeric(parser, "num_local", "processes to start on this host (default 1)", default=1)
    _numeric(
        parser, "num_processes", "processes in the whole job, all hosts (default: -n)",
        default=None,
    )  # fmt: skip
    _numeric(
        parser, "first_process_id", "id of the first process started here (default 0)", default=0
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--coordinator",
        default=None,
        metavar="HOST:PORT",
        help="process 0's coordinator (several hosts); default 127.0.0.1",
    )
    _numeric(where, "port", "coordinator port on 127.0.0.1 (default 0: a free one)", default=0)
    _numeric(
        parser, "local_devices", "CPU devices per process (--platform cpu; default 1)", default=1
    )
    parser.add_argument(
        "--platform",
        choices=("cpu", "auto"),
        default="cpu",
        help="cpu (default), or auto: let JAX use the host's GPUs/TPUs",
    )
    _numeric(
        parser, "heartbeat_timeout",
        "seconds before a silent process counts as dead (default 10)", default=10,
    )  # fmt: skip
    _numeric(
        parser, "initialization_timeout",
        "seconds to wait for all processes to join (default 60)", default=60,
    )  # fmt: skip
    _numeric(
        parser, "grace", "seconds between SIGTERM and SIGKILL when stopping (default 2)",
        default=2.0,
    )  # fmt: skip
    _numeric(parser, "timeout", "stop the whole job after this many seconds", default=None)
    return parser


def parse_args(argv: Sequence[str]) -> LaunchConfig:
    """Parse the launcher's command line (everything after ``--`` is the program to run).

    ``-h``/``--help`` prints the usage and exits 0, with or without a program; bad arguments
    print one line (``launch: error: ...``) and exit 2 (``SystemExit``).

    Example:
      >>> from jaxopt_lectures.launch import parse_args
      >>> c = parse_args(["-n", "2", "--local-devices", "2", "--", "train.py", "--lr", "0.1"])
      >>> c.num_local, c.num_processes, c.local_devices, c.command
      (2, 2, 2, ('train.py', '--lr', '0.1'))
    """
    argv = list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    own, command = argv[:split], tuple(argv[split + 1 :])
    parser = _parser()
    if split == len(argv):  # no program: still check the options (-h, --help exit 0 here)
        parser.parse_known_args(own)
        parser.error("give the program after '--', e.g. -n 2 -- train.py")
    args = parser.parse_args(own)  # -h and --help print the usage and exit 0 here
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


# Each process starts a session of its own, so that stopping it stops every process it started
# too (a data loader's workers, a shell's children); where there are no process groups (not
# POSIX), the processes themselves are stopped.
_GROUPS = hasattr(os, "killpg")


def _signal_group(process: subprocess.Popen[str], kill: bool) -> None:
    """SIGTERM (or SIGKILL) to ``process`` and every process of its group still there."""
    if _GROUPS:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is empty
            os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
    elif process.poll() is None and kill:
        process.kill()
    elif process.poll() is None:
        process.terminate()


def _group_alive(process: subprocess.Popen[str]) -> bool:
    """Whether ``process`` or a process it started still runs (``process`` is reaped here)."""
    if process.poll() is None:
        return True
    if not _GROUPS:
        return False
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a member that changed its user: still there
        return True
    return True


def _stop(processes: Sequence[subprocess.Popen[str]], grace: float) -> None:
    """Stop the job: SIGTERM to every process group, SIGKILL to what is left after ``grace``
    seconds (JAX's runtime takes SIGTERM as a preemption notice and keeps running); returns
    once every process has ended and been reaped."""
    for process in processes:
        _signal_group(process, kill=False)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_group_alive(p) for p in processes):
        time.sleep(0.02)
    for process in processes:
        _signal_group(process, kill=True)
    for process in processes:
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
            start_new_session=_GROUPS,  # a group of its own: see _signal_group
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
