"""The command line's argument and input-file checks: exit code 2 and one line that says what to
do, before any experiment runs."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import needs
from fake_experiments import APPS, FAKES, one_line, run_cli

from jaxopt_lectures.cli import Apps, main
from jaxopt_lectures.experiments.session import Outcome, RunOptions, UsageError, run

pytestmark = needs("matplotlib", "sklearn", "tqdm")  # the experiments extra


# ------------------------------------------------------------------------------------------------
# Bad arguments and files: exit code 2 and one line
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", ["-1", "4294967295", str(2**40), "1.5"])
def test_seed_is_range_checked_when_parsed(
    seed: str, tmp_path: Path, fakes: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli("alpha", "--quick", "--seed", seed, "--out", str(tmp_path))
    assert exit_info.value.code == 2
    err = one_line(capsys.readouterr().err)
    assert "--seed" in err
    assert "2147483647" in err
    assert not (tmp_path / "results.json").exists()


@pytest.mark.parametrize("jobs", ["0", "-2", "65", "two"])
def test_jobs_is_range_checked_when_parsed(
    jobs: str, tmp_path: Path, fakes: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli("alpha", "--quick", "--jobs", jobs, "--out", str(tmp_path))
    assert exit_info.value.code == 2
    err = one_line(capsys.readouterr().err)
    assert "--jobs" in err
    assert "[1, 64]" in err
    assert not (tmp_path / "results.json").exists()


def test_npy_text_and_pickled_data_files_get_one_line(
    tmp_path: Path, fakes: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    npy = tmp_path / "x.npy"
    np.save(npy, np.zeros((10, 2)))
    text = tmp_path / "data.csv"
    text.write_text("1,2,0\n3,4,1\n")
    pickled = tmp_path / "objects.npz"
    np.savez(pickled, X=np.array([[1, "a"]], dtype=object), y=np.array([0]))
    for path in (npy, text, pickled, tmp_path / "missing.npz"):
        assert run_cli("alpha", "--quick", "--data", str(path), "--out", str(tmp_path / "o")) == 2
        err = one_line(capsys.readouterr().err)
        assert "allow_pickle" not in err
        assert "np.savez" in err, err


# ------------------------------------------------------------------------------------------------
# The command line's other commands, and the run session below it
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["playground", "--help"]])
def test_help_prints_usage_and_exits_0(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv, apps=APPS)
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: jaxopt-lectures")


def test_list_shows_the_experiments_passed_in(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"], apps=APPS) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[::2]] == [
        "alpha",
        "beta",
        "gamma",
        "delta",
    ]


@pytest.mark.parametrize("option", ["--steps", "--starts"])
def test_playground_options_are_checked_in_one_line(
    option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["playground", option, "0", "--out", str(tmp_path)], apps=APPS)
    assert exit_info.value.code == 2
    assert option in one_line(capsys.readouterr().err)
    assert main(["playground", option, "2", "--out", str(tmp_path)], apps=APPS) == 0
    assert capsys.readouterr().out.startswith(f"Wrote {tmp_path / 'playground.html'}")


def test_the_session_runs_typed_options_with_the_experiments_passed_in(
    tmp_path: Path, fakes: Any
) -> None:
    assert APPS.experiments is not None
    FAKES["gamma"].fail = True
    options = RunOptions(tmp_path, names=("gamma", "alpha"), quick=True, seed=3, progress=False)
    assert run(options, APPS.experiments) is Outcome.FAILED
    FAKES["gamma"].fail = False
    assert run(options, APPS.experiments) is Outcome.OK
    assert not (tmp_path / "playground.html").exists()  # no side page asked for
    with pytest.raises(UsageError, match="unknown experiment 'omega'"):
        run(RunOptions(tmp_path, names=("omega",)), APPS.experiments)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("seed", -1, r"seed must be an integer in \[0, 2147483647\]"),
        ("jobs", 0, r"jobs .* \[1, 64\]"),
    ],
)
def test_run_options_are_checked(field: str, value: int, message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        RunOptions(tmp_path, **{field: value})  # type: ignore[arg-type]


class _SignalsWhenCollected:
    def __init__(self, signum: int) -> None:
        self.signum = signum

    def __del__(self) -> None:
        os.kill(os.getpid(), self.signum)
        for _ in range(1000):  # the handler runs here, inside __del__: Python drops its exception
            pass


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the point
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_python_drops_before_the_run_still_exits_130(
    signum: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """The signal comes while the command starts (here: while ``list`` reads the experiments)
    and its handler runs inside a finalizer, which drops the KeyboardInterrupt: exit code 130
    all the same, and the handlers are restored."""
    assert APPS.experiments is not None

    class Experiments(dict):  # type: ignore[type-arg]
        def items(self) -> Any:
            _SignalsWhenCollected(signum)  # collected at once
            return super().items()

    assert main(["list"], apps=Apps(Experiments(APPS.experiments))) == 130
    assert "interrupted" in one_line(capsys.readouterr().err)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
