"""What the two apps (the experiments and the optimizer playground) and the command line above
them share, below both: the program's name, the playground page's file name, the usable cores,
JAX's persistent compilation cache, and writing a file through a temporary name of its own.

Neither app imports the other; both import this module (see ``docs/architecture.md``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

PROG = "jaxopt-lectures"
"""The command's name, at the start of every error line."""

PLAYGROUND_FILE = "playground.html"
"""The optimizer playground's file name in an output folder (the report links it)."""


@contextlib.contextmanager
def signals_handled(on_signal: Callable[[], None], *, interrupt: bool) -> Iterator[None]:
    """While the block runs, SIGINT (Ctrl-C) and SIGTERM (``kill``, a batch system's time limit)
    call ``on_signal()`` and then, with ``interrupt=True``, raise ``KeyboardInterrupt``; with
    ``interrupt=False`` they only call it (the caller acts on it later, as the run does while a
    record is committed). ``on_signal`` is how a signal is never lost: Python drops an exception
    raised while a finalizer or a callback runs (it prints "Exception ignored in ..."). The
    previous handlers are restored afterwards. Only the main thread can install handlers;
    elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        on_signal()
        if interrupt:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def temp_prefix(name: str) -> str:
    """The start of a temporary name for a file ``name``: ``.<name>.<pid>.tmp-``. A run that finds
    such a file of a process that no longer exists removes it (the results store's cleanup)."""
    return f".{name}.{os.getpid()}.tmp-"


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file of this writer's own in the
    same folder (:func:`temp_prefix` and a random part), then move it onto ``path``: a reader sees
    the old file or the new one, concurrent writers do not collide, and a failed write (a full
    disk) leaves nothing behind. The folder is created if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name), suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def compilation_cache() -> Iterator[None]:
    """While the block runs, keep compiled XLA programs on disk (``$JAXOPT_LECTURES_CACHE``,
    default ``~/.cache/jaxopt_lectures/xla``): a rerun (``--force``, another seed) skips most of
    the compile time, which dominates a short run on a CPU. JAX's settings are restored
    afterwards, so calling the command line from Python leaves the caller's JAX as it was. Best
    effort: no cache if the folder cannot be made."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "jaxopt_lectures"
    folder = Path(os.environ.get("JAXOPT_LECTURES_CACHE", default / "xla"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        yield
        return
    import jax

    # Every program, however quick to compile: most of the main job's programs compile in under
    # the default threshold of a second, and together they are most of a warm run's compile time.
    settings = {
        "jax_compilation_cache_dir": str(folder),
        "jax_persistent_cache_min_compile_time_secs": 0.0,
    }
    previous = {name: getattr(jax.config, name) for name in settings}
    for name, value in settings.items():
        jax.config.update(name, value)
    try:
        yield
    finally:
        for name, value in previous.items():
            jax.config.update(name, value)
