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
        """The record as JSON data (``mode``, ``seed``, ``data_hash`` and ``version`` flat).

        Strict JSON whatever the record holds: NumPy numbers become Python ones and non-finite
        floats the strings ``"nan"``, ``"inf"``, ``"-inf"`` (:func:`jsonable`).
        """
        out: dict[str, Json] = {
            "experiment": self.experiment,
            "status": self.status,
            "mode": self.key.mode,
            "seed": int(self.key.seed),
            "data": self.data,
            "data_hash": self.key.data,
            "version": self.key.version,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "wall_time_s": jsonable(self.wall_time_s),
            "environment": jsonable(self.environment),
        }
        if self.ok:
            out |= {
                "compile_time_s": jsonable(self.compile_time_s),
                "figures": [str(f) for f in self.figures],
                "headlines": [[str(k), str(v)] for k, v in self.headlines],
                "claims": [jsonable(dataclasses.asdict(c)) for c in self.claims],
                "settings": jsonable(self.settings),
                "numbers": jsonable(self.numbers),
            }
        else:
            out |= {"error": self.error, "traceback": self.traceback}
        return out

    @classmethod
    def from_json(cls, data: Any) -> RunRecord:
        """The record that :meth:`to_json` wrote; ``ValueError`` naming the first field that is
        missing or of the wrong type when ``data`` is not one."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a run record must be an object, not {type(data).__name__}")
        mode, status = _field(data, "mode", str), _field(data, "status", str)
        if mode not in MODES or status not in ("ok", "failed"):
            raise ValueError(f"not a run record: mode {mode!r}, status {status!r}")
        seed = _field(data, "seed", int)
        return cls(
            experiment=_field(data, "experiment", str),
            key=RunKey(mode, seed, _field(data, "data_hash", str), _field(data, "version", str)),
            status=status,
            data=_field(data, "data", str),
            started_at=_field(data, "started_at", str),
            finished_at=_field(data, "finished_at", str),
            wall_time_s=_seconds(data, "wall_time_s"),
            compile_time_s=_seconds(data, "compile_time_s", default=0.0),
            figures=tuple(_list_of(data, "figures", _is_str)),
            headlines=tuple((k, v) for k, v in _list_of(data, "headlines", _is_headline)),
            claims=tuple(Claim.from_json(c) for c in _list_of(data, "claims", _is_claim)),
            settings=_field(data, "settings", dict, default={}),
            numbers=_field(data, "numbers", dict, default={}),
            environment=_field(data, "environment", dict, default={}),
            error=_field(data, "error", str, default=None),
            traceback=_field(data, "traceback", str, default=None),
        )


_REQUIRED = object()
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}  # as jsonable writes them


def _field(data: Mapping[str, Any], name: str, kind: type, default: Any = _REQUIRED) -> Any:
    """``data[name]``, checked to be a ``kind`` (an int is never a bool); ``default`` if absent
    (a ``None`` value counts as absent where the default is ``None``)."""
    value = data.get(name, default)
    if value is _REQUIRED:
        raise ValueError(f"a run record without {name!r}")
    if value is default and default is not _REQUIRED:
        return value
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{name!r} of a run record must be a {kind.__name__}, got {value!r:.40}")
    return value


def _seconds(data: Mapping[str, Any], name: str, default: Any = _REQUIRED) -> float:
    """A duration: a number, or a non-finite one as :func:`jsonable` writes it."""
    value = data.get(name, default)
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    if value is _REQUIRED or isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name!r} of a run record must be a number, got {value!r:.40}")
    return float(value)


def _list_of(data: Mapping[str, Any], name: str, valid: Any) -> list[Any]:
    """``data[name]`` (default empty): a list whose every item passes ``valid``."""
    value = data.get(name, [])
    if not isinstance(value, list) or not all(valid(item) for item in value):
        raise ValueError(f"{name!r} of a run record is not a list of its items: {value!r:.40}")
    return value


def _is_str(item: Any) -> bool:
    return isinstance(item, str)


def _is_headline(item: Any) -> bool:
    return isinstance(item, list) and len(item) == 2 and all(map(_is_str, item))


def _is_claim(item: Any) -> bool:
    """A claim as ``dataclasses.asdict`` writes it; ``also`` and ``discussion`` may be absent
    (records written before claims had them)."""
    required: dict[str, type | tuple[type, ...]] = {
        "claim": str,
        "held": bool,
        "measured": str,
        "rule": str,
    }
    optional: dict[str, type | tuple[type, ...]] = {"also": (list, tuple), "discussion": str}
    return (
        isinstance(item, dict)
        and set(required) <= set(item) <= set(required) | set(optional)
        and all(isinstance(item[k], t) for k, t in (required | optional).items() if k in item)
        and all(_is_measurement(m) for m in item.get("also", ()))
    )


def _is_measurement(item: Any) -> bool:
    names = {f.name for f in dataclasses.fields(Measurement)}
    return (
        isinstance(item, dict)
        and set(item) == names
        and all(isinstance(item[k], bool if k == "held" else str) for k in names)
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
