"""What the benchmarks record about the machine they ran on, and how they save their results.

The scripts run as ``python benchmarks/<name>.py``, so this folder is on ``sys.path`` and they
import it as ``_machine``. Every script prints its tables as Markdown while it runs and saves them,
with the raw numbers behind them, as one JSON file in ``benchmarks/results/`` (see
:class:`Results` for the schema). ``python benchmarks/render.py`` turns those files into
``docs/performance.md``: the documentation quotes no number that is not in a committed JSON file.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import jax

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SCHEMA = 1
PACKAGES = ("jax", "jaxlib", "optax", "numpy", "torch", "flax", "scipy")


def cpu_info() -> dict[str, Any]:
    """CPU model, architecture, usable and total cores, OS."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 0
    return {
        "cpu": cpu,
        "arch": platform.machine(),
        "cores": cores,
        "cores_total": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
    }


def versions() -> dict[str, str]:
    """Python and the versions of the packages a benchmark may use (absent ones left out)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    return out


def device_info() -> dict[str, Any]:
    device = jax.devices()[0]
    return {"platform": device.platform, "kind": device.device_kind, "count": jax.device_count()}


def describe_machine() -> str:
    """One line: CPU model, usable and total cores, OS, Python, jax and the default device."""
    c, v, d = cpu_info(), versions(), device_info()
    return (
        f"{c['cpu']} ({c['arch']}), {c['cores']} usable of {c['cores_total']} cores, {c['os']}; "
        f"Python {v['python']}, jax {v.get('jax', '?')}, device {d['platform']}:{d['kind']}"
    )


def load_averages() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (None where the OS has none)."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def load_average() -> str:
    """The 1, 5 and 15-minute load averages as text ("?" where the OS has none)."""
    loads = load_averages()
    return "?" if loads is None else ", ".join(f"{x:.2f}" for x in loads)


def markdown(columns: list[str], rows: list[list[str]], align: str | None = None) -> str:
    """A Markdown table; ``align`` has one letter per column, "l" (default for text) or "r"."""
    align = align or "l" * len(columns)
    rule = "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"
    lines = ["| " + " | ".join(columns) + " |", rule]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


class Results:
    """The tables and raw numbers of one benchmark run, saved as one JSON file.

    Schema (``"schema": 1``)::

        {"benchmark": name, "title": ..., "description": ..., "command": "python benchmarks/...",
         "date": ISO 8601 UTC (start), "finished": ISO 8601 UTC,
         "machine": {"cpu", "arch", "cores", "cores_total", "os",
                     "load_before": [1, 5, 15 min], "load_after": [...]},
         "versions": {"python", "jax", "jaxlib", "optax", "numpy", "torch", ...},
         "device": {"platform", "kind", "count"},
         "tables": [{"title", "columns", "align", "rows", "notes"}],   # cells are text
         "raw": {...}}                 # medians, spreads and samples behind the tables

    The file goes to ``benchmarks/results/<name>.<platform>.json`` unless ``path`` is given, so a
    GPU run adds files next to the CPU ones instead of replacing them.
    """

    def __init__(self, name: str, title: str, description: str) -> None:
        self.name = name
        self.title = title
        self.description = description
        self.date = _now()
        self.load_before = load_averages()
        self.tables: list[dict[str, Any]] = []

    def table(
        self,
        title: str,
        columns: list[str],
        rows: list[list[str]],
        notes: str = "",
        align: str | None = None,
    ) -> None:
        """Add a table (and print it)."""
        align = align or "ll" + "r" * (len(columns) - 2)
        rows = [[str(c) for c in row] for row in rows]
        self.tables.append(
            {"title": title, "columns": columns, "align": align, "rows": rows, "notes": notes}
        )
        print(f"\n### {title}\n\n{markdown(columns, rows, align)}\n", flush=True)
        if notes:
            print(notes, flush=True)

    def save(self, raw: dict[str, Any], path: str | Path | None = None) -> Path:
        """Write the JSON file; return its path."""
        device = device_info()
        target = Path(path) if path else RESULTS_DIR / f"{self.name}.{device['platform']}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "schema": SCHEMA,
            "benchmark": self.name,
            "title": self.title,
            "description": self.description,
            "command": "python " + " ".join(shlex.quote(a) for a in _script_argv()),
            "date": self.date,
            "finished": _now(),
            "machine": cpu_info()
            | {"load_before": self.load_before, "load_after": load_averages()},
            "versions": versions(),
            "device": device,
            "tables": self.tables,
            "raw": raw,
        }
        text = json.dumps(record, indent=1, default=_plain)
        target.write_text(text + "\n", encoding="utf-8")
        print(f"\nSaved {target}", flush=True)
        return target


def _plain(value: Any) -> Any:
    """NumPy and JAX scalars and arrays as plain Python numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


def _script_argv() -> list[str]:
    script = Path(sys.argv[0])
    with contextlib.suppress(ValueError):
        script = script.resolve().relative_to(Path(__file__).resolve().parents[1])
    return [script.as_posix(), *sys.argv[1:]]
