"""A long-lived benchmark process that answers one JSON request per line.

A script started as ``python benchmarks/<name>.py --worker`` serves requests on stdin and writes
one JSON reply per request on stdout; it stops when its stdin closes. The scripts keep such a
process for each configuration they compare (another XLA option, another source tree), so that
every sample is taken in a warm process and the samples of all configurations interleave.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


class Worker:
    """``script --worker`` run with the environment ``env``."""

    def __init__(self, script: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, script, "--worker"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, **request: Any) -> Any:
        """Send ``request`` and return the worker's reply."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark worker exited with {self.proc.wait()}")
        return json.loads(line)

    def close(self) -> None:
        """Close the worker's stdin, which ends its request loop, and wait for it."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)
