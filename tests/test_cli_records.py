"""The main job's records and error contract, with small stand-in experiments (no training).

What must hold whatever the user does: two runs into one output folder keep every experiment of
both; a failed rerun is recorded next to the last good result, not instead of it; a quick run does
not replace a full one; changed data is never "already done"; bad arguments and bad files end in
one line and exit code 2; an interrupt (SIGINT or SIGTERM) keeps what finished and exits 130; a
corrupt ``results.json`` is backed up, not dropped; stale temporary files of a killed run go away.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import needs
from fake_experiments import FAKES, one_line, run_cli

pytestmark = needs("matplotlib", "sklearn", "tqdm")  # the experiments extra


def records(out: Path) -> dict[str, Any]:
    return json.loads((out / "results.json").read_text())["experiments"]


def good(out: Path, name: str, mode: str = "quick") -> dict[str, Any]:
    return records(out)[name][mode]["result"]


# ------------------------------------------------------------------------------------------------
# Runs into one folder never lose each other's results
# ------------------------------------------------------------------------------------------------


def test_a_run_finishing_inside_another_run_keeps_both(tmp_path: Path, fakes: Any) -> None:
    """Run A starts, run B (same folder) runs and finishes while A is busy, then A finishes: the
    records of both survive (A must not write back the file it read at its start)."""
    out = str(tmp_path)
    FAKES["alpha"].before = lambda: run_cli("beta", "--quick", "--out", out)
    assert run_cli("alpha", "--quick", "--out", out) == 0
    assert set(records(tmp_path)) == {"alpha", "beta"}
    assert good(tmp_path, "beta")["numbers"]["value"] == 2.0


@pytest.mark.parametrize("jobs", ["1", "3"])
def test_experiments_computed_ahead_are_committed_in_order(
    jobs: str,
    tmp_path: Path,
    fakes: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With --jobs 3 the next experiments compute while one is committed: the same records as
    one at a time, printed in the run's order."""
    monkeypatch.setenv("FAKE_SLEEP", "0.05")
    FAKES["beta"].fail = True
    names = ("alpha", "beta", "gamma", "delta")
    assert run_cli(*names, "--quick", "--jobs", jobs, "--out", str(tmp_path)) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert [line.split()[1].rstrip(":") for line in lines] == ["alpha", "gamma", "delta"]
    assert [good(tmp_path, n)["numbers"]["value"] for n in ("alpha", "gamma", "delta")] == [
        1.0,
        3.0,
        4.0,
    ]
    assert "failure" in records(tmp_path)["beta"]["quick"]


@pytest.mark.integration
def test_two_concurrent_processes_keep_every_experiment(tmp_path: Path) -> None:
    """Two CLI processes, each running two stand-in experiments that overlap in time."""
    script = Path(__file__).with_name("fake_experiments.py")
    env = {**os.environ, "FAKE_SLEEP": "0.6", "PYTHONPATH": os.pathsep.join(sys.path)}
    options = ["--quick", "--no-progress", "--out", str(tmp_path)]
    procs = [
        subprocess.Popen([sys.executable, script, "run", *names, *options], env=env)
        for names in (("alpha", "beta"), ("gamma", "delta"))
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert set(records(tmp_path)) == {"alpha", "beta", "gamma", "delta"}


# ------------------------------------------------------------------------------------------------
# A failure is recorded next to the last good result; modes do not replace each other
# ------------------------------------------------------------------------------------------------


def test_failed_rerun_keeps_the_last_good_result(
    tmp_path: Path, fakes: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path)
    assert run_cli("alpha", "--quick", "--out", out) == 0
    before = good(tmp_path, "alpha")
    FAKES["alpha"].fail = True
    assert run_cli("alpha", "--quick", "--force", "--out", out, "--seed", "3") == 1
    one_line(capsys.readouterr().err)
    slot = records(tmp_path)["alpha"]["quick"]
    assert slot["result"] == before  # the good numbers are still there ...
    assert (
        slot["failure"]["error"] == "RuntimeError: alpha was told to fail"
    )  # ... with the failure
    assert slot["failure"]["seed"] == 3
    report = (tmp_path / "report.md").read_text()
    assert "alpha was told to fail" in report
    assert "| alpha | quick | alpha holds |" in report  # the last good claims are still shown
    # A success after the failure clears it.
    FAKES["alpha"].fail = False
    assert run_cli("alpha", "--quick", "--force", "--out", out) == 0
    assert "failure" not in records(tmp_path)["alpha"]["quick"]


def test_quick_run_does_not_replace_a_full_run(tmp_path: Path, fakes: Any) -> None:
    out = str(tmp_path)
    assert run_cli("alpha", "--out", out) == 0
    assert run_cli("alpha", "--quick", "--out", out) == 0
    slot = records(tmp_path)["alpha"]
    assert slot["full"]["result"]["mode"] == "full"
    assert slot["quick"]["result"]["mode"] == "quick"
    report = (tmp_path / "report.md").read_text()
    assert "| alpha | full | alpha holds |" in report
    assert "| alpha | quick | alpha holds |" in report


def test_full_disk_keeps_results_json_and_says_so_in_one_line(
    tmp_path: Path, fakes: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path)
    assert run_cli("alpha", "--quick", "--out", out) == 0
    before = (tmp_path / "results.json").read_text()
    capsys.readouterr()
    real_replace = os.replace

    def full_disk(src: Any, dst: Any) -> None:
        if str(dst).endswith("results.json"):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full_disk)
    FAKES["alpha"].fail = True
    assert run_cli("alpha", "--quick", "--force", "--out", out) == 1
    err = one_line(capsys.readouterr().err)
    assert "No space left on device" in err
    assert "results.json" in err
    assert (tmp_path / "results.json").read_text() == before


# ------------------------------------------------------------------------------------------------
# What "already done" means: same data content, seed, mode and package version
# ------------------------------------------------------------------------------------------------


def test_changed_data_of_the_same_length_is_rerun(
    tmp_path: Path, fakes: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    data = tmp_path / "mine.npz"
    y = np.arange(60) % 3
    np.savez(data, X=rng.normal(size=(60, 4)), y=y)
    args = ("alpha", "--quick", "--data", str(data), "--out", str(tmp_path / "o"))
    assert run_cli(*args) == 0
    assert run_cli(*args) == 0
    assert "already done, skipped" in capsys.readouterr().out
    np.savez(data, X=rng.normal(size=(60, 4)), y=y)  # other data, same length
    assert run_cli(*args) == 0
    assert "already done" not in capsys.readouterr().out
    assert run_cli(*args, "--seed", "1") == 0  # another seed is not the same run either
    assert "already done" not in capsys.readouterr().out


def test_other_package_version_is_rerun(
    tmp_path: Path, fakes: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import jaxopt_lectures

    args = ("alpha", "--quick", "--out", str(tmp_path))
    assert run_cli(*args) == 0
    monkeypatch.setattr(jaxopt_lectures, "__version__", "99.0")
    assert run_cli(*args) == 0
    assert "already done" not in capsys.readouterr().out
    assert good(tmp_path, "alpha")["version"] == "99.0"


# ------------------------------------------------------------------------------------------------
# Interrupts, a corrupt results.json, stale temporary files
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_keeps_finished_work(
    signum: int, tmp_path: Path, fakes: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    FAKES["beta"].before = lambda: os.kill(os.getpid(), signum)
    assert run_cli("alpha", "beta", "gamma", "--quick", "--out", str(tmp_path)) == 130
    err = one_line(capsys.readouterr().err)
    assert "interrupted during 'beta'" in err
    assert set(records(tmp_path)) == {"alpha"}
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the point
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_that_python_swallows_still_stops_the_run(
    signum: int, tmp_path: Path, fakes: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A signal whose handler runs inside a finalizer: Python prints "Exception ignored in ..."
    and drops the KeyboardInterrupt. The run must still stop with 130 (at the next experiment),
    not go on to exit 0."""

    class SignalsWhenCollected:
        def __del__(self) -> None:
            os.kill(os.getpid(), signum)
            for _ in range(1000):  # the handler runs here, inside __del__
                pass

    def collect_one() -> None:
        SignalsWhenCollected()  # collected at once, in the main thread (--jobs 1)

    FAKES["beta"].before = collect_one
    code = run_cli("alpha", "beta", "gamma", "--quick", "--jobs", "1", "--out", str(tmp_path))
    assert code == 130
    err = capsys.readouterr().err
    assert "interrupted during 'gamma'" in err
    assert set(records(tmp_path)) == {"alpha", "beta"}


def test_corrupt_results_json_is_backed_up_with_a_warning(
    tmp_path: Path, fakes: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path)
    assert run_cli("alpha", "--quick", "--out", out) == 0
    text = (tmp_path / "results.json").read_text()
    (tmp_path / "results.json").write_text(text[: len(text) // 2])  # truncated
    capsys.readouterr()
    assert run_cli("beta", "--quick", "--out", out) == 0
    err = one_line(capsys.readouterr().err)
    assert "warning" in err
    backups = list(tmp_path.glob("results.json.unreadable-*"))
    assert len(backups) == 1
    assert backups[0].read_text() == text[: len(text) // 2]
    assert backups[0].name in err
    assert set(records(tmp_path)) == {"beta"}


def test_stale_temporary_files_of_a_killed_run_are_removed(tmp_path: Path, fakes: Any) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [
        tmp_path / f".race.gif.{dead.pid}.tmp-abc123.gif",
        tmp_path / f".results.json.{dead.pid}.tmp-x1y2.tmp",
    ]
    mine = tmp_path / f".race.gif.{os.getpid()}.tmp-live.gif"  # a live process's file stays
    other = tmp_path / ".hidden-user-file"
    for path in [*stale, mine, other]:
        path.write_text("x")
    staging = tmp_path / f".staging.{dead.pid}.tmp-zz"
    staging.mkdir()
    (staging / "a.png").write_text("x")
    assert run_cli("alpha", "--quick", "--out", str(tmp_path)) == 0
    assert not any(p.exists() for p in [*stale, staging])
    assert mine.exists()
    assert other.exists()
