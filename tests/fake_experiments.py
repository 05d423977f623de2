"""Stand-in experiments for the CLI's tests: instant, deterministic, and told to fail or to do
something (start another run, send a signal) at a chosen moment; and a stand-in playground page."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple


@dataclass
class Fake:
    """What the stand-in experiment ``name`` does: ``before()`` first, then fail or return."""

    value: float
    before: Callable[[], Any] | None = None
    fail: bool = False


FAKES: dict[str, Fake] = {}


def _reset() -> None:
    FAKES.clear()
    for i, name in enumerate(("alpha", "beta", "gamma", "delta"), 1):
        FAKES[name] = Fake(value=float(i))


class FakeResult(NamedTuple):
    name: str
    value: float
    seed: int
    timings: tuple[Any, ...] = ()


def _experiment(name: str) -> Any:
    from jaxopt_lectures.experiments.api import Claim, Experiment, Summary

    def compute(config: Any, seed: int) -> FakeResult:
        fake = FAKES[name]
        if fake.before is not None:
            fake.before()
        time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
        if fake.fail:
            raise RuntimeError(f"{name} was told to fail")
        return FakeResult(name, fake.value, seed)

    def claims(r: FakeResult) -> list[Any]:
        return [Claim(f"{r.name} holds", True, f"value {r.value:g}", "always")]

    def summarize(r: FakeResult) -> Any:
        return Summary([("value", f"{r.value:g}")], {"value": r.value, "seed": r.seed}, {})

    return Experiment(
        name, f"stand-in {name}", "-", "-", 0, compute, lambda r: (), claims, summarize
    )


def _playground(out_dir: Any, **kwargs: Any) -> Path:
    """A stand-in for ``jaxopt_lectures.playground.build``: the page file, instantly (the real
    page computes every grid, seconds per fresh output folder; its own tests cover it)."""
    del kwargs
    from jaxopt_lectures.playground import FILENAME

    path = Path(out_dir) / FILENAME
    path.write_text("<!doctype html><title>stand-in playground</title>\n")
    return path


def fake_registry(monkeypatch: Any = None) -> None:
    """Make the CLI see only the stand-in experiments and the stand-in playground (through
    ``monkeypatch`` when given)."""
    import jaxopt_lectures.playground
    from jaxopt_lectures.experiments import registry

    _reset()
    experiments = {name: _experiment(name) for name in FAKES}
    if monkeypatch is None:
        registry.EXPERIMENTS = experiments
        jaxopt_lectures.playground.build = _playground
    else:
        monkeypatch.setattr(registry, "EXPERIMENTS", experiments)
        monkeypatch.setattr(jaxopt_lectures.playground, "build", _playground)


def run_cli(*args: str) -> int:
    """``jaxopt-lectures run ARGS --no-progress`` in this process; the exit code."""
    from jaxopt_lectures.__main__ import main

    return main(["run", *args, "--no-progress"])


def one_line(err: str) -> str:
    """Check that ``err`` is one line and no traceback; return it."""
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err
