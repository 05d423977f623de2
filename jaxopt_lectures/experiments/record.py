"""What the main job keeps of an experiment run: :class:`Claim` and :class:`RunRecord`.

A :class:`RunRecord` is the one type that is serialized: ``results.json`` holds, per experiment and
mode (``"full"`` or ``"quick"``), the last good record and, when a later run of the same experiment
and mode failed, the failed record next to it (see :mod:`~jaxopt_lectures.experiments.store`).
Everything in a record is JSON data already (:func:`jsonable` converts NumPy and JAX numbers), so
writing it and reading it back gives an equal record.

This module imports only the standard library and NumPy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import numpy as np

__all__ = ["MODES", "Claim", "Json", "Measurement", "Mode", "RunKey", "RunRecord", "jsonable"]

Json: TypeAlias = "bool | int | float | str | list[Json] | dict[str, Json] | None"
Mode = Literal["full", "quick"]
MODES: tuple[Mode, ...] = ("full", "quick")


@dataclass(frozen=True)
class Measurement:
    """A second measurement of a claim, under another ``protocol`` (the setup of the paper behind
    the claim, for instance): its verdict ``held`` by its own ``rule``, and what it ``measured``."""

    protocol: str
    held: bool
    measured: str
    rule: str


@dataclass(frozen=True)
class Claim:
    """A claim of the lecture and whether this run's numbers support it.

    ``held`` is computed from the measured numbers by a rule stated in ``rule``; ``measured`` says
    what was seen, in words and numbers. A claim that does not hold is reported as such.
    ``also`` holds measurements of the same claim under other protocols (``held`` stays the
    verdict of the first), and ``discussion`` what a reader should make of them together: what
    the lecture says, what each protocol measured, what the literature found, the verdict.
    """

    claim: str
    held: bool
    measured: str
    rule: str
    also: tuple[Measurement, ...] = ()
    discussion: str = ""

    @property
    def all_held(self) -> bool:
        """Whether the claim held under every one of its measurements."""
        return self.held and all(m.held for m in self.also)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Claim:
        """The claim that ``dataclasses.asdict`` wrote (records without ``also`` or
        ``discussion`` read as having none)."""
        return cls(
            claim=str(data["claim"]),
            held=bool(data["held"]),
            measured=str(data["measured"]),
            rule=str(data["rule"]),
            also=tuple(Measurement(**m) for m in data.get("also", ())),
            discussion=str(data.get("discussion", "")),
        )


@dataclass(frozen=True)
class RunKey:
    """What makes two runs of one experiment the same run: a stored good result with an equal
    key (and its figures on disk) is "already done". ``data`` is a hash of the data's content."""

    mode: Mode
    seed: int
    data: str
    version: str


@dataclass(frozen=True)
class RunRecord:
    """One run of one experiment, as ``results.json`` stores it.

    ``status`` is ``"ok"`` (then ``claims``, ``headlines``, ``figures``, ``numbers`` and
    ``settings`` are filled) or ``"failed"`` (then ``error`` and ``traceback`` are). ``figures``
    are paths relative to the output folder. ``environment`` describes where and how it ran
    (command line, package versions, machine).
    """

    experiment: str
    key: RunKey
    status: Literal["ok", "failed"]
    data: str
    started_at: str
    finished_at: str
    wall_time_s: float
    compile_time_s: float = 0.0
    figures: tuple[str, ...] = ()
    headlines: tuple[tuple[str, str], ...] = ()
    claims: tuple[Claim, ...] = ()
    settings: Mapping[str, Json] = field(default_factory=dict)
    numbers: Mapping[str, Json] = field(default_factory=dict)
    environment: Mapping[str, Json] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the run finished (its claims may still not hold)."""
        return self.status == "ok"

    def to_json(self) -> dict[str, Json]:
        """The record as JSON data (``mode``, ``seed``, ``data_hash`` and ``version`` flat)."""
        out: dict[str, Json] = {
            "experiment": self.experiment,
            "status": self.status,
            "mode": self.key.mode,
            "seed": self.key.seed,
            "data": self.data,
            "data_hash": self.key.data,
            "version": self.key.version,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "wall_time_s": self.wall_time_s,
            "environment": jsonable(self.environment),
        }
        if self.ok:
            out |= {
                "compile_time_s": self.compile_time_s,
                "figures": list(self.figures),
                "headlines": [list(h) for h in self.headlines],
                "claims": [dataclasses.asdict(c) for c in self.claims],
                "settings": jsonable(self.settings),
                "numbers": jsonable(self.numbers),
            }
        else:
            out |= {"error": self.error, "traceback": self.traceback}
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        """The record that :meth:`to_json` wrote; ``KeyError``/``TypeError``/``ValueError`` when
        ``data`` is not one."""
        mode = data["mode"]
        if mode not in MODES or data["status"] not in ("ok", "failed"):
            raise ValueError(f"not a run record: mode {mode!r}, status {data['status']!r}")
        return cls(
            experiment=str(data["experiment"]),
            key=RunKey(mode, int(data["seed"]), str(data["data_hash"]), str(data["version"])),
            status=data["status"],
            data=str(data["data"]),
            started_at=str(data["started_at"]),
            finished_at=str(data["finished_at"]),
            wall_time_s=float(data["wall_time_s"]),
            compile_time_s=float(data.get("compile_time_s", 0.0)),
            figures=tuple(data.get("figures", ())),
            headlines=tuple((str(k), str(v)) for k, v in data.get("headlines", ())),
            claims=tuple(Claim.from_json(c) for c in data.get("claims", ())),
            settings=dict(data.get("settings", {})),
            numbers=dict(data.get("numbers", {})),
            environment=dict(data.get("environment", {})),
            error=data.get("error"),
            traceback=data.get("traceback"),
        )


def jsonable(value: Any) -> Any:
    """Convert NumPy/JAX numbers and arrays (nested in dicts, lists, tuples) to JSON types.

    Non-finite floats become the strings ``"inf"``, ``"-inf"`` and ``"nan"`` so the file stays
    strict JSON.

    Example:
      >>> import numpy as np
      >>> from jaxopt_lectures.experiments.record import jsonable
      >>> jsonable({"a": np.float32(0.5), "b": np.array([1, 2]), "c": float("inf")})
      {'a': 0.5, 'b': [1, 2], 'c': 'inf'}
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "__array__") and not isinstance(value, str | bytes):
        array = np.asarray(value)
        if array.ndim == 0:
            return jsonable(array.item())
        return [jsonable(v) for v in array.tolist()]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        value = float(value)
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    return value
