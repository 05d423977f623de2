"""Stand-in experiments for the CLI's tests: instant, deterministic, and told to fail or to do
something (start another run, send a signal) at a chosen moment."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


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


def _run(name: str) -> Callable[[Any], Any]:
    from jaxopt_lectures.experiments.base import Claim, Result

    def run(ctx: Any) -> Any:
        fake = FAKES[name]
        if fake.before is not None:
            fake.before()
        time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
        if fake.fail:
            raise RuntimeError(f"{name} was told to fail")
        return Result(
            numbers={"value": fake.value, "seed": ctx.seed},
            figures=[],
            headlines=[("value", f"{fake.value:g}")],
            claims=[Claim(f"{name} holds", True, f"value {fake.value:g}", "always")],
        )

    return run


def fake_registry(monkeypatch: Any = None) -> None:
    """Make the CLI see only the stand-ins (through ``monkeypatch`` when given)."""
    from jaxopt_lectures.experiments import registry
    from jaxopt_lectures.experiments.base import Experiment

    _reset()
    experiments = {
        name: Experiment(name, f"stand-in {name}", "-", "-", 1, _run(name)) for name in FAKES
    }
    if monkeypatch is None:
        registry.EXPERIMENTS = experiments
    else:
        monkeypatch.setattr(registry, "EXPERIMENTS", experiments)
