"""Render ``docs/performance.md`` and ``benchmarks/RESULTS.md`` from ``benchmarks/results/*.json``.

    python benchmarks/render.py            # rewrite both
    python benchmarks/render.py --check    # exit 1 if either is not up to date

Every number in them comes from a JSON file a benchmark script wrote (see ``_machine.py`` for the
schema); each table names the machine, the load, the versions and the date it was measured. Edit
the scripts or rerun them, never the pages. Pure Python: no jax needed.

``docs/performance.md`` is the user's guide: the hand-written ``performance_intro.md`` (whose
``{headline}`` becomes a short table computed from the one-loop benchmark), then the tables named
in ``PAGE``, each benchmark in a section between ``<!-- BEGIN generated: NAME -->`` and
``<!-- END generated: NAME -->``. ``benchmarks/RESULTS.md`` has every table of every result.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
OUTPUT = ROOT / "docs" / "performance.md"
ALL_TABLES = ROOT / "benchmarks" / "RESULTS.md"
COMMAND = "python benchmarks/render.py"
# Page order; benchmarks not listed here follow in alphabetical order.
ORDER = [
    "optimizers",
    "optimizers-mof",
    "compile",
    "compile-mixed",
    "packed",
    "mainjob",
    "engine",
    "newton",
    "curvature",
]

INTRO = ROOT / "benchmarks" / "performance_intro.md"  # hand-written, included verbatim
# The tables of each benchmark that the guide shows (by title; the rest are in RESULTS.md).
PAGE: dict[str, list[str]] = {
    "optimizers-mof": ["Step time: multi-output fusion and jl.one_loop", "Loops and compile time"],
    "mainjob": ["Main job wall time"],
    "curvature": ["Time of one call (compile excluded)", "Scratch memory of the compiled program"],
}


def load_results(folder: Path = RESULTS_DIR) -> list[dict[str, Any]]:
    records = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]

    def key(r: dict[str, Any]) -> tuple[int, str, str]:
        name = r["benchmark"]
        rank = ORDER.index(name) if name in ORDER else len(ORDER)
        return rank, name, r["device"]["platform"]

    return sorted(records, key=key)


def _table(columns: list[str], align: str, rows: list[list[str]]) -> str:
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    lines = ["| " + " | ".join(columns) + " |", rule]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _loads(values: list[float] | None) -> str:
    return "?" if values is None else ", ".join(f"{x:.2f}" for x in values)


def provenance(r: dict[str, Any]) -> str:
    m, v, d = r["machine"], r["versions"], r["device"]
    packages = ", ".join(f"{k} {val}" for k, val in v.items())
    return (
        f"Measured {r['date']} (UTC) with `{r['command']}` on {m['cpu']} ({m['arch']}), "
        f"{m['cores']} usable of {m['cores_total']} cores, {m['os']}; device "
        f"{d['platform']}: {d['kind']} (x{d['count']}); load average (1, 5, 15 min) "
        f"{_loads(m['load_before'])} before, {_loads(m['load_after'])} after; {packages}."
    )


def render_record(r: dict[str, Any], titles: list[str] | None = None) -> str:
    """The record's section: every table, or only those named in ``titles``."""
    m, d = r["machine"], r["device"]
    where = f"{d['kind']}" if d["platform"] != "cpu" else f"{m['cpu']}, {m['cores']} cores"
    parts = [f"## {r['title']} ({d['platform'].upper()})", r["description"].strip(), provenance(r)]
    for t in r["tables"]:
        if titles is not None and t["title"] not in titles:
            continue
        parts.append(f"### {t['title']}")
        parts.append(_table(t["columns"], t["align"], t["rows"]))
        stamp = f"*{where}; {r['date'][:10]}; load {_loads(m['load_before'])} before.*"
        parts.append(f"{t['notes'].strip()} {stamp}" if t["notes"].strip() else stamp)
    return "\n\n".join(parts)


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def _ratio(times: dict[str, list[float]], a: str, b: str) -> str:
    if a not in times or b not in times:
        return "n/a"
    return f"{_median([x / y for x, y in zip(times[a], times[b], strict=True)]):.2f}"


def headline(records: list[dict[str, Any]]) -> str:
    """The guide's first table: the one-loop benchmark's ratios, one row per optimizer."""
    mof = [r for r in records if r["benchmark"] == "optimizers-mof"]
    if not mof or "rows" not in mof[0]["raw"]:
        return "(no one-loop benchmark yet: run `python benchmarks/run_all.py`)"
    r = mof[0]
    columns = [
        "optimizer (one 10M leaf)",
        "jl / optax",
        "one_loop(jl) / torch",
        "one_loop(optax) / one_loop(jl)",
        "one_loop compile / plain",
    ]
    rows = []
    for row in r["raw"]["rows"]:
        t, m = row["times"], row["memory"]
        torch = "torch fused" if "torch fused" in t else "torch foreach"
        compiles = m.get("one_loop+MOF", {}).get("compile"), m.get("ours+MOF", {}).get("compile")
        rows.append(
            [
                row["optimizer"],
                _ratio(t, "ours", "optax"),
                _ratio(t, "one_loop+MOF", torch) + f" ({torch.split()[1]})",
                _ratio(t, "optax one_loop+MOF", "one_loop+MOF"),
                "n/a" if None in compiles else f"{compiles[0] / compiles[1]:.2f}",
            ]
        )
    m = r["machine"]
    stamp = (
        f"*Step time ratios (medians of per-round ratios; below 1: faster), the one_loop columns "
        f"with XLA:CPU multi-output fusion on; {m['cpu']}, {m['cores']} cores; {r['date'][:10]}; "
        f"load {_loads(m['load_before'])} before, {_loads(m['load_after'])} after (a shared "
        "machine: see the load in the section below).*"
    )
    return _table(columns, "lrrrr", rows) + "\n\n" + stamp


def _generated(name: str, text: str) -> str:
    return f"<!-- BEGIN generated: {name} -->\n\n{text}\n\n<!-- END generated: {name} -->"


def _header(what: str) -> str:
    return (
        f"<!-- Generated by `{COMMAND}` from benchmarks/results/*.json: do not edit by hand; "
        f"rerun the benchmarks, then that command. {what} -->"
    )


def render(folder: Path = RESULTS_DIR) -> str:
    """docs/performance.md: the guide, then the tables of ``PAGE``."""
    records = load_results(folder)
    sections = [
        _generated(r["benchmark"], render_record(r, PAGE[r["benchmark"]]))
        for r in records
        if r["benchmark"] in PAGE
    ]
    if not records:
        sections = ["No results yet: run `python benchmarks/run_all.py`."]
    intro = INTRO.read_text(encoding="utf-8").strip()
    intro = intro.replace("{headline}", _generated("headline", headline(records)))
    return (
        "\n\n".join([_header("The intro is benchmarks/performance_intro.md."), intro, *sections])
        + "\n"
    )


def render_all(folder: Path = RESULTS_DIR) -> str:
    """benchmarks/RESULTS.md: every table of every result."""
    sections = [_generated(r["benchmark"], render_record(r)) for r in load_results(folder)]
    title = (
        "# Benchmark results\n\nEvery table of every benchmark; the guide is docs/performance.md."
    )
    return "\n\n".join([_header(""), title, *sections]) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that the page is current")
    args = parser.parse_args()
    stale = 0
    for path, text in ((OUTPUT, render()), (ALL_TABLES, render_all())):
        if args.check:
            current = path.read_text(encoding="utf-8") if path.exists() else ""
            if current != text:
                print(f"{path} is out of date: run {COMMAND}", file=sys.stderr)
                stale = 1
        else:
            path.write_text(text, encoding="utf-8")
            print(f"Wrote {path}")
    return stale


if __name__ == "__main__":
    sys.exit(main())
