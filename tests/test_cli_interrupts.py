"""Interrupting the command line while work is in flight in other threads: exit code 130 (1 when
the results cannot be written), never an abort.

With ``--jobs`` above 1 the next experiments compute, and the playground page is written, in
threads of their own. When the run stops early, those threads may still be inside XLA; if the
process then went through Python's shutdown, the threads would be stopped inside XLA's C++ code
and the process would abort ("terminate called ...", exit code 134). Each test here starts the
program with stand-in experiments, one of which sits in a long XLA program, and stops it while it
is there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import needs

pytestmark = [needs("matplotlib", "sklearn", "tqdm"), pytest.mark.integration]

SCRIPT = Path(__file__).with_name("fake_experiments.py")
# How often each signal is sent in the test suite; reproducing the abort took one try.
TRIES = int(os.environ.get("JAXOPT_LECTURES_INTERRUPT_TRIES", "2"))


def _start(out: Path, marker: Path, *, busy: str, full_disk: bool = False) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "FAKE_FULL_DISK": "1" if full_disk else "0",
        "PYTHONPATH": os.pathsep.join(sys.path),
        "FAKE_BUSY": busy,
        "FAKE_BUSY_MARKER": str(marker),
        "FAKE_BUSY_SECONDS": "60",
    }
    command = [sys.executable, SCRIPT, "run", "alpha", "beta", "gamma", "--quick"]
    command += ["--no-progress", "--no-cache", "--jobs", "3", "--out", str(out)]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for(marker: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the busy experiment never started"
        time.sleep(0.05)
    time.sleep(0.3)  # inside the XLA program by now


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_another_thread_is_in_xla_exits_130(signum: int, tmp_path: Path) -> None:
    """``beta`` computes ahead in a thread, inside XLA, while ``alpha`` is done: the signal stops
    the run at once with 130, alpha's record kept, one error line, no abort."""
    for attempt in range(TRIES):
        out, marker = tmp_path / f"out{attempt}", tmp_path / f"marker{attempt}"
        proc = _start(out, marker, busy="beta")
        _wait_for(marker, proc)
        start = time.monotonic()
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, (attempt, proc.returncode, stderr)
        assert time.monotonic() - start < 10  # not waiting for the XLA program to finish
        assert "terminate called" not in stderr
        assert "interrupted during 'beta'" in stderr, stderr
        assert "Traceback" not in stderr
        assert set(json.loads((out / "results.json").read_text())["experiments"]) == {"alpha"}


def test_a_full_disk_while_another_thread_is_in_xla_exits_1(tmp_path: Path) -> None:
    """``results.json`` cannot be written (no space left) while ``beta`` computes ahead inside
    XLA: exit code 1 at once and one line that says what to do, no abort."""
    for attempt in range(TRIES):
        out, marker = tmp_path / f"out{attempt}", tmp_path / f"marker{attempt}"
        proc = _start(out, marker, busy="beta", full_disk=True)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 1, (attempt, proc.returncode, stderr)
        assert "terminate called" not in stderr
        assert "Traceback" not in stderr
        assert "cannot write the results" in stderr, stderr
        assert not (out / "results.json").exists()
