"""``report.md`` and ``report.html``, rendered from the records of ``results.json`` alone.

The reports are rendered by :meth:`~jaxopt_lectures.experiments.store.ResultsStore.commit` from
what it has just written, under the same lock, so they always show the file's records: per
experiment and mode the last good result (claims, headline numbers, figures, settings) and, next to
it, a failure of a later run. One document model (headings, paragraphs, lists, tables, images)
is emitted twice, as Markdown and as HTML. Also here: where and how a run happened (versions, the
machine, the command line), which every record carries.
"""

from __future__ import annotations

import html
import os
import platform
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

from jaxopt_lectures._app_common import PLAYGROUND_FILE, usable_cores
from jaxopt_lectures.experiments.record import MODES, Claim, Json, RunRecord
from jaxopt_lectures.experiments.store import Results, write_atomic

__all__ = [
    "Heading",
    "command_line",
    "machine_info",
    "now",
    "render_html",
    "render_markdown",
    "versions",
]

TITLE = "Learning as Optimization: the lecture, reproduced"


class Heading(NamedTuple):
    """How the report introduces an experiment: its title, lecture section and summary."""

    title: str
    section: str
    summary: str


Order = Mapping[str, Heading]  # the experiments in the report's order, with their headings


def versions() -> dict[str, Json]:
    """Versions of Python and of the packages the results depend on."""
    out: dict[str, Json] = {"python": platform.python_version()}
    for name in (
        "jaxopt_lectures",
        "jax",
        "jaxlib",
        "optax",
        "numpy",
        "scikit-learn",
        "matplotlib",
    ):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Json]:
    """The machine: OS, CPU model, cores usable by this process, JAX backend and device, load."""
    import jax

    cores = usable_cores()
    try:
        load: list[Json] = list(os.getloadavg())
    except OSError:
        load = []
    device = jax.devices()[0]
    return {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores": cores,
        "jax_backend": jax.default_backend(),
        "device": getattr(device, "device_kind", str(device)),
        "load_average_1_5_15min": load,
    }


PLAYGROUND = PLAYGROUND_FILE  # the optimizer playground's page, linked when it is there
PLAYGROUND_LINK = "The optimizer playground: every method on 2-D test functions, with sliders"


@dataclass(frozen=True)
class Block:
    """One piece of a report: ``kind`` is ``"h1"``, ``"h2"``, ``"h3"``, ``"p"``, ``"ul"``,
    ``"table"`` (``rows[0]`` is the header), ``"img"`` or ``"link"`` (``text`` is the target,
    ``rows[0][0]`` the words shown); a ``"p"`` may be ``strong``."""

    kind: str
    text: str = ""
    rows: tuple[tuple[str, ...], ...] = ()
    strong: bool = False


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Block:
    return Block("table", rows=(tuple(header), *(tuple(map(str, r)) for r in rows)))


def _yes(held: bool) -> str:
    return "yes" if held else "no"


def _measurements(c: Claim) -> Iterator[tuple[str, bool, str, str]]:
    """(claim, held, measured, rule) of the claim's own measurement, then of each measurement
    under another protocol (the claim named with the protocol's source)."""
    yield c.claim, c.held, c.measured, c.rule
    for m in c.also:
        yield f"{c.claim} [{m.protocol.split(':')[0]}]", m.held, m.measured, m.rule


def _discussions(records: Sequence[tuple[str, str, RunRecord]]) -> list[Block]:
    """A heading and a paragraph per claim that did not hold under one of its measurements and
    carries a discussion."""
    out = []
    for name, mode, r in records:
        for c in r.claims:
            if c.discussion and not c.all_held:
                lines = tuple((line,) for line in c.discussion.split("\n"))
                out += [Block("h3", f"{c.claim} ({name}, {mode} run)"), Block("ul", rows=lines)]
    return out


def _records(results: Results, order: Order) -> Iterator[tuple[str, str, RunRecord]]:
    """(experiment, mode, last good record) in the registry's order, full before quick."""
    for name in [*order, *sorted(set(results.experiments) - set(order))]:
        for mode in MODES:
            result = results.slot(name, mode).result
            if result is not None:
                yield name, mode, result


def _entries(env: Mapping[str, Json], key: str) -> Mapping[str, Json]:
    value = env.get(key)
    return value if isinstance(value, dict) else {}


def _header(results: Results) -> list[Block]:
    records = [
        r
        for slots in results.experiments.values()
        for s in slots.values()
        for r in (s.result, s.failure)
        if r is not None
    ]
    if not records:
        return [Block("p", "No experiment has run in this folder yet.")]
    newest = max(records, key=lambda r: r.finished_at)
    machine = _entries(newest.environment, "machine")
    vers = _entries(newest.environment, "versions")
    good = sum(r.ok for r in records)
    lines = [
        f"Records: {good} good results and {len(records) - good} failed later runs, of "
        f"{len(results.experiments)} experiments (full and quick runs are kept apart)",
        f"Newest: finished {newest.finished_at} by `{newest.environment.get('command', '')}`",
        f"Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores usable, "
        f"{machine.get('platform', '')}; JAX backend {machine.get('jax_backend', '?')} "
        f"({machine.get('device', '?')})",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()),
    ]
    return [Block("ul", rows=tuple((line,) for line in lines))]


def _experiment(name: str, results: Results, order: Order) -> list[Block]:
    slots = results.experiments.get(name, {})
    heading = order.get(name, Heading(name, "-", ""))
    blocks = [
        Block("h2", f"{heading.title} ({name})"),
        Block("p", f"Lecture section: {heading.section}. {heading.summary}"),
    ]
    for mode in MODES:
        slot = slots.get(mode)
        if slot is None:
            continue
        blocks.append(Block("h3", f"{mode} run"))
        if slot.failure is not None:
            f = slot.failure
            later = "; the result below is the last good one" if slot.result else ""
            blocks.append(
                Block(
                    "p",
                    f"A run failed (seed {f.key.seed}, finished "
                    f"{f.finished_at}): {f.error}{later}.",
                    strong=True,
                )
            )
        r = slot.result
        if r is None:
            continue
        blocks.append(
            Block(
                "p",
                f"Seed {r.key.seed}; data: {r.data}; finished {r.finished_at}; "
                f"wall time {r.wall_time_s:.1f} s (compiling "
                f"{r.compile_time_s:.1f} s); jaxopt_lectures {r.key.version}.",
            )
        )
        blocks += [Block("img", figure) for figure in r.figures]
        blocks.append(
            _table(
                ("claim", "held?", "measured", "rule"),
                [
                    (claim, _yes(held), measured, rule)
                    for c in r.claims
                    for claim, held, measured, rule in _measurements(c)
                ],
            )
        )
        settings = ", ".join(f"{k}: {v}" for k, v in r.settings.items())
        blocks.append(Block("p", f"Settings: {settings}."))
    return blocks


def document(results: Results, order: Order, playground: str | None = None) -> list[Block]:
    """The report as blocks: the header, every claim, failures, headline numbers, then each
    experiment with its figures (experiments in ``order``, then any others). ``playground`` is
    the optimizer playground's file name in the output folder, linked under the header."""
    records = list(_records(results, order))
    held = sum(c.held for *_, r in records for c in r.claims)
    total = sum(len(r.claims) for *_, r in records)
    second = [m.held for *_, r in records for c in r.claims for m in c.also]
    failures = [
        (name, mode, s.failure)
        for name in [*order, *sorted(set(results.experiments) - set(order))]
        for mode, s in results.experiments.get(name, {}).items()
        if s.failure is not None
    ]
    blocks = [
        Block("h1", TITLE),
        *_header(results),
        *([Block("link", playground, ((PLAYGROUND_LINK,),))] if playground else []),
        Block("h2", "The lecture's claims, as measured"),
    ]
    blocks.append(
        Block(
            "p",
            f"{held} of {total} claims held in the last good runs. A claim that "
            "did not hold is shown as measured: the rule that decides it is "
            "stated with each experiment below."
            + (
                f" {len(second)} of them were measured a second time, under the protocol of "
                f"the paper behind the claim (named in brackets); {sum(second)} held there."
                if second
                else ""
            ),
        )
    )
    blocks.append(
        _table(
            ("experiment", "mode", "claim", "held?", "measured"),
            [
                (n, m, claim, _yes(held), measured)
                for n, m, r in records
                for c in r.claims
                for claim, held, measured, _ in _measurements(c)
            ],
        )
    )
    discussions = _discussions(records)
    if discussions:
        blocks.append(Block("h2", "Discussion: the claims that did not hold under a measurement"))
        blocks.append(
            Block(
                "p",
                "Each claim below failed under at least one of its measurements: what the "
                "lecture says, what each protocol measured, what the literature found, and the "
                "verdict. The verdicts were fixed in the code before the run.",
            )
        )
        blocks += discussions
    if failures:
        blocks.append(Block("h2", "Failed runs (the last good result of each is kept)"))
        blocks.append(
            _table(
                ("experiment", "mode", "seed", "finished", "error"),
                [(n, m, f.key.seed, f.finished_at, f.error or "") for n, m, f in failures],
            )
        )
    blocks.append(Block("h2", "Headline numbers"))
    blocks.append(
        _table(
            ("experiment", "mode", "quantity", "value"),
            [(n, m, k, v) for n, m, r in records for k, v in r.headlines],
        )
    )
    for name in [*order, *sorted(set(results.experiments) - set(order))]:
        if name in results.experiments:
            blocks += _experiment(name, results, order)
    return blocks


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(results: Results, order: Order, playground: str | None = None) -> str:
    """The human report in Markdown (figures linked from the output folder)."""
    out: list[str] = []
    for b in document(results, order, playground):
        if b.kind in ("h1", "h2", "h3"):
            out += ["#" * int(b.kind[1]) + " " + b.text, ""]
        elif b.kind == "p":
            out += [f"**{b.text}**" if b.strong else b.text, ""]
        elif b.kind == "ul":
            out += [f"- {row[0]}" for row in b.rows] + [""]
        elif b.kind == "img":
            out += [f"![{b.text}]({b.text})", ""]
        elif b.kind == "link":
            out += [f"[{b.rows[0][0]}]({b.text})", ""]
        elif b.kind == "table":
            header, *rows = b.rows
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "---|" * len(header))
            out += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in rows]
            out.append("")
    return "\n".join(out)


STYLE = (
    "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;line-height:1.4}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
    "vertical-align:top;font-size:14px}th{background:#f3f3f3}img{max-width:100%;border:1px "
    "solid #eee}.no,strong{color:#b00}.yes{color:#070}"
)


def render_html(results: Results, order: Order, playground: str | None = None) -> str:
    """The same report as a standalone HTML page (figures linked from the output folder)."""
    e = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(TITLE)}</title>",
        f"<style>{STYLE}</style></head><body>",
    ]
    for b in document(results, order, playground):
        if b.kind in ("h1", "h2", "h3"):
            parts.append(f"<{b.kind}>{e(b.text)}</{b.kind}>")
        elif b.kind == "p":
            parts.append(
                f"<p><strong>{e(b.text)}</strong></p>" if b.strong else f"<p>{e(b.text)}</p>"
            )
        elif b.kind == "ul":
            parts.append(
                "<ul>" + "".join(f"<li>{e(r[0].replace('`', ''))}</li>" for r in b.rows) + "</ul>"
            )
        elif b.kind == "img":
            parts.append(f"<p><img src='{e(b.text)}' alt='{e(b.text)}'></p>")
        elif b.kind == "link":
            parts.append(f"<p><a href='{e(b.text)}'>{e(b.rows[0][0])}</a></p>")
        elif b.kind == "table":
            header, *rows = b.rows
            cells = ["<tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"]
            for r in rows:
                cells.append(
                    "<tr>"
                    + "".join(
                        f"<td class='{v}'>{v}</td>" if h == "held?" else f"<td>{e(v)}</td>"
                        for h, v in zip(header, r, strict=True)
                    )
                    + "</tr>"
                )
            parts.append("<table>" + "".join(cells) + "</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_reports(out_dir: Path, results: Results, order: Order) -> None:
    """Write ``report.md`` and ``report.html`` atomically from ``results``; both link the
    optimizer playground when ``out_dir`` holds it."""
    playground = PLAYGROUND if (Path(out_dir) / PLAYGROUND).exists() else None
    write_atomic(Path(out_dir) / "report.md", render_markdown(results, order, playground))
    write_atomic(Path(out_dir) / "report.html", render_html(results, order, playground))


def now() -> str:
    """The local time, ISO 8601 to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def command_line() -> str:
    """How this process was started, for the report."""
    program = Path(sys.argv[0]).name
    if program == "__main__.py":  # python -m jaxopt_lectures
        program = "python -m jaxopt_lectures"
    return " ".join([program, *sys.argv[1:]])
