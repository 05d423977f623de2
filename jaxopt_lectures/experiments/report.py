"""``results.json``, ``report.md`` and ``report.html``: written atomically after every experiment.

``results.json`` is the machine-readable record: run metadata (versions, machine, seed, quick
flag, wall time) and, per experiment, its status, settings, claims (held or not, with what was
measured), headline numbers and every number behind its figure. The two reports are rendered from
that file alone, so an interrupted run still leaves a consistent report of what finished.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "RESULTS",
    "atomic_file",
    "load_results",
    "machine_info",
    "versions",
    "write_atomic",
    "write_reports",
    "write_results",
]

RESULTS = "results.json"
SCHEMA = 1


@contextlib.contextmanager
def atomic_file(path: Path, suffix: str = ".tmp") -> Iterator[str]:
    """Yield the name of a temporary file next to ``path`` to write; when the block ends without
    an error, give the file the usual permissions (``mkstemp`` makes it 0600) and move it onto
    ``path`` with ``os.replace``, so a reader (or an interrupted run) sees the old file or the new
    one, never half of one. On an error the temporary file is removed and ``path`` is untouched.
    ``suffix`` is the temporary name's ending (matplotlib picks the image format from it)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_file`), flushed to disk first."""
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def versions() -> dict[str, str]:
    """Versions of Python and of the packages the results depend on."""
    out = {"python": platform.python_version()}
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


def machine_info() -> dict[str, Any]:
    """The machine: OS, CPU model, cores usable by this process, JAX backend and device, load."""
    import jax

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 0
    try:
        load = list(os.getloadavg())
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


def load_results(out_dir: Path) -> dict[str, Any]:
    """The stored results of an earlier run in ``out_dir``, or an empty record.

    A file that cannot be read or parsed is treated as absent (it is rewritten whole).
    """
    path = Path(out_dir) / RESULTS
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"schema": SCHEMA, "metadata": {}, "experiments": {}}
    if not isinstance(data, dict) or not isinstance(data.get("experiments"), dict):
        return {"schema": SCHEMA, "metadata": {}, "experiments": {}}
    return data


def write_results(out_dir: Path, results: dict[str, Any]) -> None:
    """Write ``results.json`` atomically (strict JSON: non-finite numbers are strings)."""
    write_atomic(
        Path(out_dir) / RESULTS, json.dumps(results, indent=1, allow_nan=False, sort_keys=False)
    )


def _claims_rows(results: dict[str, Any], order: list[str]) -> list[tuple[str, str, bool, str]]:
    rows = []
    for name in order:
        entry = results["experiments"].get(name)
        if not entry or entry.get("status") != "ok":
            continue
        for claim in entry["claims"]:
            rows.append((name, claim["claim"], bool(claim["held"]), claim["measured"]))
    return rows


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _header_lines(meta: dict[str, Any]) -> list[str]:
    machine = meta.get("machine", {})
    vers = meta.get("versions", {})
    lines = [
        f"- Command: `{meta.get('command', '')}`",
        f"- Mode: {'quick' if meta.get('quick') else 'full'}; seed {meta.get('seed')}; data: "
        f"{meta.get('data', '')}",
        f"- Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores usable, "
        f"{machine.get('platform', '')}; JAX backend {machine.get('jax_backend', '?')} "
        f"({machine.get('device', '?')}); load average at start "
        f"{', '.join(f'{v:.2f}' for v in machine.get('load_average_1_5_15min', []))}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()),
        f"- Finished: {meta.get('finished_at', 'not yet')}; wall time of this invocation "
        f"{meta.get('wall_time_s', 0):.1f} s (experiments run now: "
        f"{', '.join(meta.get('ran', [])) or 'none'}; skipped as already done: "
        f"{', '.join(meta.get('skipped', [])) or 'none'})",
    ]
    return lines


def render_markdown(results: dict[str, Any], order: list[str]) -> str:
    """The human report: metadata, the claims table, then every experiment's figure and numbers."""
    meta = results.get("metadata", {})
    out = ["# Learning as Optimization: the lecture, reproduced", ""]
    out += [*_header_lines(meta), ""]
    rows = _claims_rows(results, order)
    held = sum(r[2] for r in rows)
    out += [
        "## The lecture's claims, as measured",
        "",
        f"{held} of {len(rows)} claims held in this run. A claim that did not hold is shown as "
        "measured: the rule that decides it is stated with each experiment below.",
        "",
        "| experiment | claim | held? | measured |",
        "|---|---|---|---|",
    ]
    out += [
        f"| {n} | {_md_cell(c)} | {'yes' if h else '**no**'} | {_md_cell(m)} |"
        for n, c, h, m in rows
    ]
    out += ["", "## Headline numbers", "", "| experiment | quantity | value |", "|---|---|---|"]
    for name in order:
        entry = results["experiments"].get(name)
        if entry and entry.get("status") == "ok":
            out += [f"| {name} | {_md_cell(k)} | {_md_cell(v)} |" for k, v in entry["headlines"]]
    for name in order:
        entry = results["experiments"].get(name)
        if not entry:
            continue
        out += ["", f"## {entry.get('title', name)} (`{name}`)", ""]
        out += [f"Lecture section: *{entry.get('section', '')}*. {entry.get('summary', '')}", ""]
        if entry.get("status") != "ok":
            out += [f"**This experiment failed:** `{entry.get('error', '')}`", ""]
            continue
        for figure in entry["figures"]:
            out += [f"![{name}]({figure})", ""]
        out += [
            f"Wall time {entry['wall_time_s']:.1f} s (compiling {entry['compile_time_s']:.1f} s)."
        ]
        out += ["", "| claim | held? | measured | rule |", "|---|---|---|---|"]
        out += [
            f"| {_md_cell(c['claim'])} | {'yes' if c['held'] else '**no**'} | "
            f"{_md_cell(c['measured'])} | {_md_cell(c['rule'])} |"
            for c in entry["claims"]
        ]
        settings = ", ".join(f"{k}: {v}" for k, v in entry.get("settings", {}).items())
        out += ["", f"Settings: {settings}."]
    return "\n".join(out) + "\n"


def render_html(results: dict[str, Any], order: list[str]) -> str:
    """The same report as a standalone HTML page (figures linked from the same folder)."""
    meta = results.get("metadata", {})
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>Learning as Optimization: the lecture, reproduced</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;"
        "line-height:1.4}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:4px 8px;vertical-align:top;font-size:14px}th{background:#f3f3f3}"
        "img{max-width:100%;border:1px solid #eee}.no{color:#b00;font-weight:bold}"
        ".yes{color:#070}</style></head><body>",
        "<h1>Learning as Optimization: the lecture, reproduced</h1><ul>",
    ]
    for line in _header_lines(meta):
        parts.append(f"<li>{e(line[2:].replace('`', ''))}</li>")
    if meta.get("playground"):
        parts.append(f"<li><a href='{e(meta['playground'])}'>Optimizer playground</a></li>")
    parts.append("</ul><h2>The lecture's claims, as measured</h2><table>")
    parts.append("<tr><th>experiment</th><th>claim</th><th>held?</th><th>measured</th></tr>")
    for n, c, h, m in _claims_rows(results, order):
        cls, word = ("yes", "yes") if h else ("no", "no")
        parts.append(
            f"<tr><td>{e(n)}</td><td>{e(c)}</td><td class='{cls}'>{word}</td><td>{e(m)}</td></tr>"
        )
    parts.append("</table><h2>Headline numbers</h2><table>")
    parts.append("<tr><th>experiment</th><th>quantity</th><th>value</th></tr>")
    for name in order:
        entry = results["experiments"].get(name)
        if entry and entry.get("status") == "ok":
            for k, v in entry["headlines"]:
                parts.append(f"<tr><td>{e(name)}</td><td>{e(k)}</td><td>{e(v)}</td></tr>")
    parts.append("</table>")
    for name in order:
        entry = results["experiments"].get(name)
        if not entry:
            continue
        parts.append(f"<h2>{e(entry.get('title', name))} ({e(name)})</h2>")
        parts.append(f"<p><i>{e(entry.get('section', ''))}</i>. {e(entry.get('summary', ''))}</p>")
        if entry.get("status") != "ok":
            parts.append(f"<p class='no'>This experiment failed: {e(entry.get('error', ''))}</p>")
            continue
        for figure in entry["figures"]:
            parts.append(f"<p><img src='{e(figure)}' alt='{e(name)}'></p>")
        parts.append("<table><tr><th>claim</th><th>held?</th><th>measured</th><th>rule</th></tr>")
        for c in entry["claims"]:
            cls = "yes" if c["held"] else "no"
            parts.append(
                f"<tr><td>{e(c['claim'])}</td><td class='{cls}'>{cls}</td>"
                f"<td>{e(c['measured'])}</td><td>{e(c['rule'])}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_reports(out_dir: Path, results: dict[str, Any], order: list[str]) -> None:
    """Write ``report.md`` and ``report.html`` atomically from ``results``."""
    write_atomic(Path(out_dir) / "report.md", render_markdown(results, order))
    write_atomic(Path(out_dir) / "report.html", render_html(results, order))


def now() -> str:
    """The local time, ISO 8601 to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def command_line() -> str:
    """How this process was started, for the report."""
    program = Path(sys.argv[0]).name
    if program == "__main__.py":  # python -m jaxopt_lectures
        program = "python -m jaxopt_lectures"
    return " ".join([program, *sys.argv[1:]])
