"""``results.json`` that is not a record file is moved aside, never blocks a commit.

Whatever the folder holds (a ``NaN`` literal that Python's ``json`` reads and refuses to write
back, bytes that are not UTF-8, a wrong type anywhere, a number out of range), the next run
keeps it as ``results.json.unreadable-<time>`` with a one-line warning and commits the
experiment it just computed; and what the store writes is strict JSON, whatever the record holds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import needs
from fake_experiments import one_line, run_cli

from jaxopt_lectures.experiments.record import Claim, RunKey, RunRecord
from jaxopt_lectures.experiments.store import RESULTS, Results, ResultsStore

KEY = RunKey(mode="quick", seed=0, data="d41d8cd9", version="1.0")


def make_record(experiment: str, **fields: Any) -> RunRecord:
    """A good record of ``experiment`` with small, valid numbers (``fields`` override)."""
    values: dict[str, Any] = {
        "experiment": experiment,
        "key": KEY,
        "status": "ok",
        "data": "synthetic",
        "started_at": "2026-01-01T00:00:00+0000",
        "finished_at": "",
        "wall_time_s": 1.5,
        "claims": (Claim(claim="c", held=True, measured="m", rule="r"),),
        "numbers": {"value": 2.0},
    } | fields
    return RunRecord(**values)


def strict_json(text: str) -> Any:
    """``json.loads`` that refuses NaN and infinities, as any strict JSON reader does."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def good_file() -> dict[str, Any]:
    """The JSON data of a valid results file holding one record of ``alpha``."""
    results = Results()
    results.put(make_record("alpha", finished_at="2026-01-01T00:00:01+0000"))
    return results.to_json()


def edited(change: Any) -> bytes:
    """A valid file with ``change(data)`` applied, written as Python's ``json.dumps`` writes it
    (``NaN`` and ``Infinity`` literals included)."""
    data = good_file()
    change(data)
    return json.dumps(data).encode()


def record_of(data: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = data["experiments"]["alpha"]["quick"]["result"]
    return result


def set_field(name: str, value: Any) -> Any:
    return lambda data: record_of(data).__setitem__(name, value)


# Each: what results.json holds before the run.
NOT_RECORD_FILES: dict[str, bytes] = {
    "nan-literal": edited(set_field("wall_time_s", math.nan)),
    "infinity-literal": edited(set_field("compile_time_s", math.inf)),
    "nan-in-numbers": edited(lambda d: record_of(d)["numbers"].__setitem__("value", math.nan)),
    "seed-1e400": edited(set_field("seed", 1e400)).replace(b"Infinity", b"1e400"),
    "seed-float": edited(set_field("seed", 1.5)),
    "seed-string": edited(set_field("seed", "zero")),
    "seed-bool": edited(set_field("seed", True)),
    "wall-time-string": edited(set_field("wall_time_s", "slow")),
    "non-utf8": json.dumps(good_file()).encode().replace(b"synthetic", b"synth\xff\xfetic"),
    "experiments-list": edited(lambda d: d.__setitem__("experiments", [])),
    "slots-list": edited(lambda d: d["experiments"].__setitem__("alpha", [])),
    "entry-string": edited(lambda d: d["experiments"]["alpha"].__setitem__("quick", "x")),
    "record-list": edited(lambda d: d["experiments"]["alpha"]["quick"].__setitem__("result", [])),
    "figures-number": edited(set_field("figures", 3)),
    "figures-string": edited(set_field("figures", "fig.png")),
    "claims-strings": edited(set_field("claims", ["held"])),
    "claim-held-string": edited(
        set_field("claims", [{"claim": "c", "held": "yes", "measured": "m", "rule": "r"}])
    ),
    "headlines-number": edited(set_field("headlines", [[1, 2, 3]])),
    "settings-list": edited(set_field("settings", [["a", 1]])),
    "error-number": edited(set_field("error", 5)),
    "missing-status": edited(lambda d: record_of(d).pop("status")),
    "deep-nesting": b'{"schema": 2, "experiments": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "empty": b"",
    "truncated": json.dumps(good_file()).encode()[:50],
    "schema-1": edited(lambda d: d.__setitem__("schema", 1)),
    "top-level-list": b"[]",
}


def store_and_warnings(out: Path) -> tuple[ResultsStore, list[str]]:
    warnings: list[str] = []
    return ResultsStore(out, warn=warnings.append), warnings


@pytest.mark.parametrize("content", NOT_RECORD_FILES.values(), ids=NOT_RECORD_FILES.keys())
def test_a_file_that_is_not_a_record_file_is_moved_aside_and_the_commit_goes_on(
    content: bytes, tmp_path: Path
) -> None:
    (tmp_path / RESULTS).write_bytes(content)
    store, warnings = store_and_warnings(tmp_path)
    assert store.load().experiments == {}  # the unlocked reader sees nothing, and does not raise

    store.commit(make_record("beta"), None, lambda results: None)

    data = strict_json((tmp_path / RESULTS).read_text(encoding="utf-8"))
    assert set(data["experiments"]) == {"beta"}  # the experiment just computed is kept
    backups = list(tmp_path.glob(f"{RESULTS}.unreadable-*"))
    assert len(backups) == 1
    assert backups[0].read_bytes() == content  # nothing is lost
    assert len(warnings) == 1
    assert "\n" not in warnings[0]
    assert backups[0].name in warnings[0]
    assert len(warnings[0]) < 400
    # The new file is a record file: a second commit reads it and moves nothing aside.
    store.commit(make_record("gamma"), None, lambda results: None)
    assert set(store.load().experiments) == {"beta", "gamma"}
    assert len(warnings) == 1


def test_prepare_moves_the_file_aside_before_the_run(tmp_path: Path) -> None:
    (tmp_path / RESULTS).write_bytes(NOT_RECORD_FILES["nan-literal"])
    store, warnings = store_and_warnings(tmp_path)
    store.prepare()
    assert not (tmp_path / RESULTS).exists()
    assert len(list(tmp_path.glob(f"{RESULTS}.unreadable-*"))) == 1
    assert len(warnings) == 1


def test_a_valid_file_is_read_back_equal(tmp_path: Path) -> None:
    """The checks refuse nothing that the store writes (and a written file reads back equal)."""
    store, warnings = store_and_warnings(tmp_path)
    failed = make_record(
        "beta", status="failed", claims=(), numbers={}, error="boom", traceback="Traceback ..."
    )
    first = store.commit(make_record("alpha", figures=()), None, lambda results: None)
    second = store.commit(failed, None, lambda results: None)
    loaded = store.load()
    assert loaded.slot("alpha", "quick").result == first
    assert loaded.slot("beta", "quick").failure == second
    assert warnings == []


def test_what_the_store_writes_is_strict_json_whatever_the_record_holds(tmp_path: Path) -> None:
    """NumPy scalars and non-finite floats in a record are written as strict JSON (non-finite
    numbers as the strings "nan", "inf", "-inf") and read back without a warning."""
    record = make_record(
        "alpha",
        wall_time_s=math.nan,
        compile_time_s=np.float32(math.inf),
        claims=(Claim(claim="c", held=np.bool_(True), measured="m", rule="r"),),  # type: ignore[arg-type]
        numbers={"loss": np.float32(math.nan), "curve": np.array([1.0, -math.inf])},
        settings={"rate": np.float64(0.1), "steps": np.int64(3)},
    )
    store, warnings = store_and_warnings(tmp_path)
    store.commit(record, None, lambda results: None)
    data = strict_json((tmp_path / RESULTS).read_text(encoding="utf-8"))
    stored = record_of(data)
    assert stored["wall_time_s"] == "nan"
    assert stored["compile_time_s"] == "inf"
    assert stored["numbers"] == {"loss": "nan", "curve": [1.0, "-inf"]}
    assert stored["claims"][0]["held"] is True
    again = store.load().slot("alpha", "quick").result
    assert again is not None
    assert math.isnan(again.wall_time_s)
    assert again.compile_time_s == math.inf
    store.commit(make_record("beta"), None, lambda results: None)
    assert set(store.load().experiments) == {"alpha", "beta"}
    assert warnings == []


@needs("matplotlib", "sklearn", "tqdm")
@pytest.mark.parametrize("name", ["nan-literal", "non-utf8", "experiments-list", "seed-1e400"])
def test_a_run_into_the_folder_warns_in_one_line_and_keeps_its_experiment(
    name: str, tmp_path: Path, fakes: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command line: exit 0, one warning line naming the backup, the new record stored."""
    (tmp_path / RESULTS).write_bytes(NOT_RECORD_FILES[name])
    assert run_cli("beta", "--quick", "--out", str(tmp_path)) == 0
    err = one_line(capsys.readouterr().err)
    backups = list(tmp_path.glob(f"{RESULTS}.unreadable-*"))
    assert len(backups) == 1
    assert backups[0].name in err
    data = strict_json((tmp_path / RESULTS).read_text(encoding="utf-8"))
    assert data["experiments"]["beta"]["quick"]["result"]["numbers"]["value"] == 2.0
