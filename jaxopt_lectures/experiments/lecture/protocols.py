"""A claim measured twice: under the experiment's own protocol and under the paper's behind it.

Some of the lecture's claims come from papers whose setups differ from the lecture's small
experiments (a depth sweep of tens of layers, dropout with max-norm and classification error, rates
tuned per method, the whole Hessian spectrum). When such a claim does not hold, a reader cannot
tell a claim the lecture gets wrong from an experiment that could not have shown it. A
:class:`PaperProtocol` adds the paper's measurement *next to* an experiment's own:
:func:`with_protocol` wraps a registered :class:`~jaxopt_lectures.experiments.api.Experiment` so
that, in a full run only, ``compute`` also runs the protocol, ``figure`` also draws it, and each
claim it measures gets a :class:`~jaxopt_lectures.experiments.record.Measurement` in
``Claim.also`` and, when it does not hold under one of its measurements, a discussion:
what the lecture says, what each protocol measured, what the literature found, and the verdict in
plain words, chosen by a table written before any run (:class:`Discussion`). The experiment's own
claims, verdicts and numbers are unchanged, so a quick run is exactly what it was.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Generic, NamedTuple, TypeVar

from jaxopt_lectures.experiments.api import Claim, Config, Experiment, Figure, Numbers, Summary
from jaxopt_lectures.experiments.engine import Timing
from jaxopt_lectures.experiments.record import Measurement

__all__ = [
    "Discussion",
    "PaperProtocol",
    "WithProtocol",
    "compute_once",
    "discussion_text",
    "with_protocol",
]

R = TypeVar("R")  # the experiment's own result
T = TypeVar("T")  # the protocol's result


class Discussion(NamedTuple):
    """What the report says about a claim that did not hold under one of its measurements.

    ``lecture``: what the lecture says; ``literature``: what the paper behind the claim found
    (and under which conditions); ``verdicts``: the verdict in plain words for each outcome
    ``(held under the experiment's protocol, held under the paper's)``, fixed before the run.
    """

    lecture: str
    literature: str
    verdicts: Mapping[tuple[bool, bool], str]


def _verdict_word(held: bool) -> str:
    return "held" if held else "did not hold"


def discussion_text(claim: Claim, protocol: str, discussion: Discussion) -> str:
    """The discussion of ``claim`` (its first measurement and its ``also[0]``, made under
    ``protocol``), one point per line: what the lecture says, what each protocol measured, what
    the literature found, the verdict. Empty when the claim held under both."""
    lecture = f"The lecture: {discussion.lecture}"
    own = (
        f"This experiment's protocol (rule: {claim.rule}): {claim.measured}. The claim "
        f"{_verdict_word(claim.held)}."
    )
    literature = f"The literature: {discussion.literature}"
    if not claim.also:
        if claim.held:
            return ""
        later = f"The paper's protocol, {protocol}, runs in the full run only."
        return "\n".join((lecture, own, later, literature))
    second = claim.also[0]
    if claim.held and second.held:
        return ""
    paper = (
        f"{second.protocol} (rule: {second.rule}): {second.measured}. The claim "
        f"{_verdict_word(second.held)}."
    )
    verdict = f"Verdict: {discussion.verdicts[(claim.held, second.held)]}"
    return "\n".join((lecture, own, paper, literature, verdict))


@dataclass(frozen=True)
class PaperProtocol(Generic[R, T]):
    """The measurement of a paper's protocol attached to an experiment.

    ``compute(config, seed, base)`` runs it (full runs only; ``base`` is the experiment's own
    result, whose trained parameters it may probe) and returns a result with a ``timings`` field;
    ``figure`` draws it; ``measurements`` gives, per index of the experiment's claims, the
    :class:`~jaxopt_lectures.experiments.record.Measurement` of that claim; ``discussions``
    the :class:`Discussion` of each;
    ``numbers`` what ``results.json`` keeps of it (under ``numbers["paper_protocol"][name]``,
    with the compile and run time of its programs under ``"timings"``).
    """

    name: str
    description: str
    compute: Callable[[Config, int, Any], T]
    figure: Callable[[T], Figure]
    measurements: Callable[[T], Mapping[int, Measurement]]
    discussions: Mapping[int, Discussion]
    numbers: Callable[[T], Mapping[str, Numbers]]


class WithProtocol(NamedTuple):
    """The experiment's own result and the protocol's (``None`` in a quick run); ``timings``:
    both one's programs."""

    base: Any
    paper: Any
    timings: tuple[Timing, ...]


def with_protocol(base: Experiment[Any], protocol: PaperProtocol[Any, Any]) -> Experiment[Any]:
    """``base`` with ``protocol``'s measurement next to its own, in full runs (see the module).

    The name, title, section and claims stay ``base``'s; one more progress stage (a quick run
    advances it without computing).
    """

    def compute(config: Config, seed: int) -> WithProtocol:
        own = base.compute(config, seed)
        paper = None if config.quick else protocol.compute(config, seed, own)
        config.advance(1)
        extra = () if paper is None else tuple(paper.timings)
        return WithProtocol(own, paper, tuple(own.timings) + extra)

    def figure(result: WithProtocol) -> Figure | tuple[Figure, ...]:
        own = base.figure(result.base)
        own = (own,) if isinstance(own, Figure) else own
        return own if result.paper is None else (*own, protocol.figure(result.paper))

    def claims(result: WithProtocol) -> list[Claim]:
        out = base.claims(result.base)
        found = {} if result.paper is None else protocol.measurements(result.paper)
        for index, discussion in protocol.discussions.items():
            claim = out[index]
            if index in found:
                claim = replace(claim, also=(*claim.also, found[index]))
            text = discussion_text(claim, protocol.description, discussion)
            out[index] = replace(claim, discussion=text)
        return out

    def summarize(result: WithProtocol) -> Summary:
        own = base.summarize(result.base)
        if result.paper is None:
            return own
        numbers = dict(own.numbers)
        timings = [list(t) for t in result.paper.timings]  # (what, compile s, run s)
        numbers["paper_protocol"] = {
            protocol.name: {**protocol.numbers(result.paper), "timings": timings}
        }
        return own._replace(numbers=numbers)

    return replace(
        base,
        stages=base.stages + 1,
        compute=compute,
        figure=figure,
        claims=claims,
        summarize=summarize,
    )


_ONCE: dict[Hashable, Any] = {}
_ONCE_LOCK = threading.Lock()


def compute_once(key: Hashable, compute: Callable[[], Any]) -> tuple[Any, bool]:
    """``compute()`` once per ``key`` in this process, for a protocol that two experiments share:
    ``(result, True)`` for the caller that computed it, ``(result, False)`` for a later one (which
    waits while another thread computes it; its timings belong to the first caller's record)."""
    with _ONCE_LOCK:
        if key in _ONCE:
            return _ONCE[key], False
        result = compute()
        _ONCE[key] = result
        return result, True
