"""The command line's argument and input-file checks: exit code 2 and one line that says what to
do, before any experiment runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import needs
from fake_experiments import one_line, run_cli

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
