"""A quick run of the main job against a stored record of an earlier one (same seed and data):
the same claims, holding or not alike, and the same numbers within float tolerance. The record,
``tests/data/quick_reference.json``, was made with the experiments' code before it was split into
``compute`` / ``figure`` / ``claims``; refactoring must not change what the lecture's experiments
measure."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

REFERENCE = Path(__file__).parent / "data" / "quick_reference.json"
# Float32 training on another CPU or XLA version may round differently, and a few hundred steps
# amplify it a little; a real change in what is computed is far larger.
RTOL, ATOL = 2e-3, 1e-5


def assert_close(reference: Any, value: Any, where: str) -> None:
    """``value`` equals ``reference`` (every key ``reference`` has; numbers within tolerance)."""
    if isinstance(reference, dict):
        assert isinstance(value, dict), where
        for key, ref in reference.items():
            assert key in value, f"{where}.{key} is missing"
            assert_close(ref, value[key], f"{where}.{key}")
    elif isinstance(reference, list):
        assert isinstance(value, list), where
        assert len(value) == len(reference), where
        for i, (ref, new) in enumerate(zip(reference, value, strict=True)):
            assert_close(ref, new, f"{where}[{i}]")
    elif isinstance(reference, bool | str):
        assert value == reference, f"{where}: {value!r} != {reference!r}"
    elif isinstance(reference, int | float):
        assert isinstance(value, int | float), where
        assert not isinstance(value, bool), where
        assert math.isclose(value, reference, rel_tol=RTOL, abs_tol=ATOL), (
            f"{where}: {value!r} != {reference!r}"
        )
    else:
        assert value == reference, where


@pytest.mark.integration
def test_quick_run_reproduces_the_stored_record(quick_run: tuple[Path, dict]) -> None:
    reference = json.loads(REFERENCE.read_text())["experiments"]
    results = quick_run[1]["experiments"]
    # Every recorded experiment is still run; experiments added since are checked by their own
    # tests (tests/test_experiments_claims.py) until the record is regenerated.
    assert set(reference) <= set(results), set(reference) - set(results)
    for name, ref in reference.items():
        record = results[name]["quick"]["result"]
        assert [[c["claim"], c["held"]] for c in record["claims"]] == ref["claims"], name
        numbers = dict(record["numbers"])
        if name == "race":  # the record keeps every 10th step of the loss curves
            numbers["losses"] = {k: v[::10] for k, v in numbers["losses"].items()}
        assert_close(ref["numbers"], numbers, name)
