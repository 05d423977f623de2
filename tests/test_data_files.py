"""A damaged ``--data`` file (empty, truncated, corrupted) is a clear error, never a traceback.

``load_npz`` raises ``ValueError`` naming the file and what is wrong with it; the command line
turns that into one line on stderr and exit code 2 (``tests/test_cli_args.py`` holds the other
bad files: ``.npy``, text, pickled objects, a missing file).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import needs
from fake_experiments import one_line, run_cli

from jaxopt_lectures.experiments.data import load_npz


def archive(compressed: bool) -> bytes:
    """The bytes of a good ``.npz`` file with X (50, 4) and y (50,)."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    save(buffer, X=rng.standard_normal((50, 4)), y=np.arange(50) % 2)
    return buffer.getvalue()


def flipped(raw: bytes, where: float) -> bytes:
    """``raw`` with the byte at the fraction ``where`` of its length inverted."""
    damaged = bytearray(raw)
    damaged[int(where * len(raw))] ^= 0xFF
    return bytes(damaged)


def npy_member_cut_short() -> bytes:
    """A sound zip archive whose X.npy promises more data than it holds (CRC consistent)."""
    member = io.BytesIO()
    np.save(member, np.zeros((50, 4)))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("X.npy", member.getvalue()[:200])
        y = io.BytesIO()
        np.save(y, np.arange(50) % 2)
        zf.writestr("y.npy", y.getvalue())
    return buffer.getvalue()


# Each: the file's bytes, and a word the message must contain.
DAMAGED: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "empty"),
    "cut-to-10-bytes": (archive(False)[:10], "damaged"),
    "cut-in-half": (archive(False)[: len(archive(False)) // 2], "damaged"),
    "cut-10-before-the-end": (archive(False)[:-10], "damaged"),
    "crc-mismatch": (flipped(archive(False), 0.5), "damaged"),
    "compressed-crc-mismatch": (flipped(archive(True), 0.7), "damaged"),
    "compressed-stream-broken": (flipped(archive(True), 0.06), "damaged"),
    "npy-member-cut-short": (npy_member_cut_short(), "damaged"),
}


@pytest.mark.parametrize(("content", "word"), DAMAGED.values(), ids=DAMAGED.keys())
def test_a_damaged_archive_raises_a_value_error_naming_the_file(
    content: bytes, word: str, tmp_path: Path
) -> None:
    path = tmp_path / "data.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"\.npz") as info:
        load_npz(path)
    message = str(info.value)
    assert str(path) in message
    assert word in message.replace(str(path), "")  # the test's folder name may hold the word
    assert "np.savez" in message  # what a good file looks like
    assert "allow_pickle" not in message
    assert "\n" not in message


def test_a_good_archive_still_loads(tmp_path: Path) -> None:
    for compressed in (False, True):
        path = tmp_path / f"good-{compressed}.npz"
        path.write_bytes(archive(compressed))
        X, y = load_npz(path)
        assert X.shape == (50, 4)
        np.testing.assert_array_equal(y, np.arange(50) % 2)


@needs("matplotlib", "sklearn", "tqdm")
@pytest.mark.parametrize("name", ["empty", "cut-in-half", "crc-mismatch"])
def test_the_command_line_prints_one_line_and_exits_2(
    name: str, tmp_path: Path, fakes: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "data.npz"
    path.write_bytes(DAMAGED[name][0])
    assert run_cli("alpha", "--quick", "--data", str(path), "--out", str(tmp_path / "o")) == 2
    err = one_line(capsys.readouterr().err)
    assert "--data" in err
    assert str(path) in err
    assert not (tmp_path / "o" / "results.json").exists()
