"""Joining JAX's distributed runtime: one process per host (or several on one host), one program.

JAX runs one Python process per host; ``jax.distributed.initialize`` connects them through a
coordinator (a small gRPC service that process 0 starts) and from then on ``jax.devices()`` lists
the devices of every process, a ``Mesh`` can span them, and collectives (``psum``, batch norm's
synchronized statistics, the data-parallel gradient) cross process boundaries. On CPUs the
cross-process collectives go over TCP (Gloo), so several processes on one machine are a faithful,
cheap model of several hosts.

:func:`initialize` is ``jax.distributed.initialize`` with three additions:

- it reads its settings from environment variables when they are not passed, so the same script
  runs under ``python -m jaxopt_lectures.launch`` (which sets them), under your own scheduler
  (set them yourself), or alone (none set: nothing to do, one process);
- it checks the coordinator address before JAX sees it: a malformed address or a host name that
  does not resolve, and, on process 0, a port that is already in use, raise one clear error at
  once (JAX itself would wait for the whole initialization timeout, or crash);
- it passes short failure-detection timeouts: when a process dies, the coordinator misses its
  heartbeats and every other process is stopped after ``heartbeat_timeout`` seconds instead of
  waiting in a collective forever.

The environment variables (all optional; ``JAX_COORDINATOR_ADDRESS`` is JAX's own):

==========================================  ==========================================
``JAX_COORDINATOR_ADDRESS``                 ``host:port`` of process 0's coordinator
``JAXOPT_LECTURES_NUM_PROCESSES``           the number of processes in the job
``JAXOPT_LECTURES_PROCESS_ID``              this process's index, ``0 .. N-1``
``JAX_COORDINATOR_BIND_ADDRESS``            where process 0 listens (JAX's; default
                                            every interface, the launcher uses loopback)
``JAXOPT_LECTURES_HEARTBEAT_TIMEOUT``       seconds without a heartbeat before a process
                                            counts as dead (default 30)
``JAXOPT_LECTURES_INITIALIZATION_TIMEOUT``  seconds to wait for every process to join
                                            (default 120)
==========================================  ==========================================
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time

import jax

__all__ = [
    "ENV_HEARTBEAT_TIMEOUT",
    "ENV_INITIALIZATION_TIMEOUT",
    "ENV_NUM_PROCESSES",
    "ENV_PROCESS_ID",
    "initialize",
    "parse_address",
    "port_in_use",
]

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_BIND = "JAX_COORDINATOR_BIND_ADDRESS"
ENV_NUM_PROCESSES = "JAXOPT_LECTURES_NUM_PROCESSES"
ENV_PROCESS_ID = "JAXOPT_LECTURES_PROCESS_ID"
ENV_HEARTBEAT_TIMEOUT = "JAXOPT_LECTURES_HEARTBEAT_TIMEOUT"
ENV_INITIALIZATION_TIMEOUT = "JAXOPT_LECTURES_INITIALIZATION_TIMEOUT"

DEFAULT_HEARTBEAT_TIMEOUT = 30
DEFAULT_INITIALIZATION_TIMEOUT = 120


def parse_address(address: str, *, resolve: bool = True) -> tuple[str, int]:
    """Split ``"host:port"`` (``"[v6]:port"`` for IPv6) and check both parts.

    Raises ``ValueError`` naming the address when the port is missing or outside 1..65535, or,
    with ``resolve``, when the host name does not resolve.

    Example:
      >>> from jaxopt_lectures.distributed import parse_address
      >>> parse_address("127.0.0.1:1234")
      ('127.0.0.1', 1234)
      >>> parse_address("127.0.0.1")
      Traceback (most recent call last):
      ...
      ValueError: coordinator address '127.0.0.1' must be host:port, e.g. 10.0.0.1:1234
    """
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"coordinator address {address!r} must be host:port, e.g. 10.0.0.1:1234")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"coordinator address {address!r}: port must be in [1, 65535]")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if resolve:
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as error:
            raise ValueError(
                f"coordinator address {address!r}: host {host!r} does not resolve ({error})"
            ) from None
    return host, port


def port_in_use(host: str, port: int) -> bool:
    """Whether ``host:port`` cannot be bound right now (another process listens on it).

    Example:
      >>> import socket
      >>> from jaxopt_lectures.distributed import port_in_use
      >>> with socket.socket() as s:
      ...     s.bind(("127.0.0.1", 0))
      ...     s.listen()
      ...     port_in_use("127.0.0.1", s.getsockname()[1])
      True
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if host in ("", "::", "0.0.0.0"):
        family, host = socket.AF_INET, ""
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # The coordinator (gRPC) sets SO_REUSEADDR too: a port in TIME_WAIT is usable, a port
        # with a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def _env_int(name: str, default: int | None) -> int | None:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} must be an integer") from None


# Long for its docstring (41 of 80 lines: environment variables, checks, example).
def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    heartbeat_timeout: int | None = None,
    initialization_timeout: int | None = None,
) -> bool:
    """Join the job's other processes (``jax.distributed.initialize``) after checking the setup.

    Call it once, first thing, before any other JAX call. Each argument left ``None`` is read from
    its environment variable (module docstring); when no coordinator address is given either way,
    this is a single-process run and the function returns ``False`` without doing anything.
    Otherwise it checks the address, joins and returns ``True``; ``jax.process_index()`` and
    ``jax.process_count()`` then describe the job and ``jax.devices()`` lists every process's
    devices.

    Args:
      coordinator_address: ``host:port`` where process 0 runs the coordinator; every process
        passes the same one.
      num_processes: the number of processes in the job, ``>= 1``.
      process_id: this process's index in ``[0, num_processes)``.
      heartbeat_timeout: seconds after which a process that stopped sending heartbeats (it
        crashed, was killed, or its host went away) counts as dead; every other process is then
        stopped by the runtime with an error. JAX's default is 100 s; the default here is 30 s.
      initialization_timeout: seconds to wait for every process to join (default 120 s).

    Returns:
      Whether the distributed runtime was initialized.

    Raises:
      ValueError: a malformed or unresolvable address, a process id out of range, a missing
        setting, or (on process 0) a coordinator port that is already in use.
      TimeoutError: (processes other than 0) nothing accepted connections at the coordinator
        address within ``initialization_timeout`` seconds.

    Equivalent to ``jax.distributed.initialize(coordinator_address, num_processes, process_id,
    heartbeat_timeout_seconds=..., initialization_timeout=...)``; PyTorch's counterpart is
    ``torch.distributed.init_process_group`` with ``MASTER_ADDR``, ``MASTER_PORT``, ``RANK`` and
    ``WORLD_SIZE``. Example (one line per host; ``python -m jaxopt_lectures.launch`` does this
    for you on one host)::

        JAX_COORDINATOR_ADDRESS=10.0.0.1:1234 JAXOPT_LECTURES_NUM_PROCESSES=2 \\
            JAXOPT_LECTURES_PROCESS_ID=0 python train.py   # on host 10.0.0.1
        JAX_COORDINATOR_ADDRESS=10.0.0.1:1234 JAXOPT_LECTURES_NUM_PROCESSES=2 \\
            JAXOPT_LECTURES_PROCESS_ID=1 python train.py   # on the other host

    with ``jaxopt_lectures.distributed.initialize()`` as the first line of ``train.py``.
    """
    address = coordinator_address or os.environ.get(ENV_COORDINATOR) or None
    if address is None:
        if num_processes not in (None, 1) or process_id not in (None, 0):
            raise ValueError(
                "initialize: num_processes/process_id given without a coordinator address; "
                f"pass coordinator_address or set {ENV_COORDINATOR}"
            )
        return False
    count = num_processes if num_processes is not None else _env_int(ENV_NUM_PROCESSES, None)
    index = process_id if process_id is not None else _env_int(ENV_PROCESS_ID, None)
    if count is None or index is None:
        raise ValueError(
            "initialize: a coordinator address needs num_processes and process_id too "
            f"(arguments, or {ENV_NUM_PROCESSES} and {ENV_PROCESS_ID})"
        )
    if count < 1:
        raise ValueError(f"initialize: num_processes must be >= 1, got {count}")
    if not 0 <= index < count:
        raise ValueError(f"initialize: process_id must be in [0, {count - 1}], got {index}")
    heartbeat, init_timeout = _timeouts(heartbeat_timeout, initialization_timeout)
    _check_coordinator(address, index, init_timeout)
    jax.distributed.initialize(
        coordinator_address=address,
        num_processes=count,
        process_id=index,
        initialization_timeout=init_timeout,
        heartbeat_timeout_seconds=heartbeat,
        # A process that stops normally waits this long at the final barrier for the others.
        shutdown_timeout_seconds=max(init_timeout, 2 * heartbeat),
    )
    return True


def _timeouts(heartbeat_timeout: int | None, initialization_timeout: int | None) -> tuple[int, int]:
    """The heartbeat and initialization timeouts (arguments, else environment, else defaults),
    both checked to be at least a second."""
    heartbeat = heartbeat_timeout or _env_int(ENV_HEARTBEAT_TIMEOUT, DEFAULT_HEARTBEAT_TIMEOUT)
    init_timeout = initialization_timeout or _env_int(
        ENV_INITIALIZATION_TIMEOUT, DEFAULT_INITIALIZATION_TIMEOUT
    )
    assert heartbeat is not None
    assert init_timeout is not None
    if heartbeat < 1 or init_timeout < 1:
        raise ValueError(
            f"initialize: heartbeat_timeout ({heartbeat}) and initialization_timeout "
            f"({init_timeout}) must be >= 1 second"
        )
    return heartbeat, init_timeout


def _check_coordinator(address: str, index: int, init_timeout: int) -> None:
    """Process 0: the coordinator's port is free here. The others: the address names a host,
    and the coordinator answers within ``init_timeout`` seconds."""
    host, port = parse_address(address)
    if index == 0:
        bind = os.environ.get(ENV_BIND)
        bind_host, bind_port = parse_address(bind, resolve=False) if bind else ("", port)
        if port_in_use(bind_host, bind_port):
            where = f"{bind_host}:{bind_port}" if bind_host else f"port {bind_port}"
            raise ValueError(
                f"initialize: coordinator {where} is already in use on this host; pick another "
                "port (the launcher picks a free one when --port is left out)"
            )
    elif _is_unspecified(host):
        raise ValueError(f"initialize: coordinator address {address!r} names no host to connect to")
    else:
        _wait_for_coordinator(address, host, port, init_timeout)


def _wait_for_coordinator(address: str, host: str, port: int, timeout: float) -> None:
    """Connect to the coordinator's port until it accepts, or raise a one-line error.

    JAX's own client aborts the process with a long log when the coordinator never answers; a
    plain TCP connection (closed at once) tells the same thing with a readable error.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"initialize: no coordinator answered at {address} within {timeout:g} s "
                    f"({error}); is process 0 running, and is the address right?"
                ) from None
        time.sleep(0.2)


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False
