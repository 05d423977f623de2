"""Wall time of the main job (``python -m jaxopt_lectures run``), cold and warm, with a profile.

    python benchmarks/bench_mainjob.py                 # --quick and full, each cold then warm
    python benchmarks/bench_mainjob.py --modes quick   # --quick only

Each run is a fresh process, as a user starts it: ``python -m jaxopt_lectures run --force
--no-progress [--quick]`` into a temporary folder. "Cold" uses a new, empty compilation cache
folder (``$JAXOPT_LECTURES_CACHE``); "warm" runs the same command again with the folder the cold
run filled. The wall time is measured from outside (interpreter start, imports, everything).

Inside the process a small wrapper (this script with ``--child``) listens to JAX's monitoring
events before it calls the command line: for every compiled program JAX reports the time to
trace it to a jaxpr, to lower it to MLIR, and XLA's backend compile time (or a hit in the
persistent cache). The wrapper also timestamps every line the command prints; the line
``[i/n] name: ...`` closes experiment ``name``, so each event is charged to the experiment during
which it happened. "rest" is the wall time of an experiment minus tracing, lowering and
compiling: running the programs, Python, drawing the figures.

The JSON goes to ``benchmarks/results/mainjob.<platform>.json``; ``benchmarks/render.py`` puts it
into ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TRACE = "/jax/core/compile/jaxpr_trace_duration"
LOWER = "/jax/core/compile/jaxpr_to_mlir_module_duration"
COMPILE = "/jax/core/compile/backend_compile_duration"
CACHE_HIT = "/jax/compilation_cache/cache_hits"
CACHE_MISS = "/jax/compilation_cache/cache_misses"
DONE_LINE = re.compile(r"^\[(\d+)/(\d+)\] (\S+):")


def child(argv: list[str], profile: str) -> int:
    """Run the command line in this process and write the event log to ``profile``."""
    start = time.perf_counter()
    import io

    import jax

    events: list[tuple[float, str, float | None]] = []
    lines: list[tuple[float, str, float]] = []  # (wall, line, CPU seconds of this process so far)

    def on_duration(event: str, duration: float, **_: Any) -> None:
        events.append((time.perf_counter() - start, event, duration))

    def on_event(event: str, **_: Any) -> None:
        events.append((time.perf_counter() - start, event, None))

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    jax.monitoring.register_event_listener(on_event)

    class Stamped(io.TextIOBase):
        def __init__(self, out: Any) -> None:
            self.out, self.pending = out, ""

        def write(self, text: str) -> int:
            self.pending += text
            *done, self.pending = self.pending.split("\n")
            now, cpu = time.perf_counter() - start, time.process_time()
            lines.extend((now, line, cpu) for line in done)
            return self.out.write(text)

        def flush(self) -> None:
            self.out.flush()

    sys.stdout = Stamped(sys.stdout)
    imported = time.perf_counter() - start
    from jaxopt_lectures.__main__ import main

    code = main(argv)
    sys.stdout.flush()
    sys.stdout = sys.__stdout__
    record = {
        "code": code,
        "wall_in_process": time.perf_counter() - start,
        "cpu_in_process": time.process_time(),
        "jax_import_s": imported,
        "events": events,
        "lines": lines,
    }
    Path(profile).write_text(json.dumps(record), encoding="utf-8")
    return int(code)


def run_once(quick: bool, cache: Path, out: Path, tree: str | None = None) -> dict[str, Any]:
    """One main-job run in a fresh process (of the package in source tree ``tree`` when given);
    its wall time and the per-experiment profile."""
    profile = out / "profile.json"
    argv = ["run", "--out", str(out / "results"), "--force", "--no-progress"]
    argv += ["--quick"] if quick else []
    env = dict(os.environ, JAXOPT_LECTURES_CACHE=str(cache), MPLBACKEND="Agg")
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([tree, env.get("PYTHONPATH", "")])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(profile), "--", *argv],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0 or not profile.exists():
        raise RuntimeError(f"main job failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    record = json.loads(profile.read_text(encoding="utf-8"))
    return {"wall_s": wall, "cpu_s": cpu, **summarize(record)}


def summarize(record: dict[str, Any]) -> dict[str, Any]:
    """Charge every event to the experiment running when it happened."""
    ends = [
        (t, m.group(3), cpu)
        for t, line, cpu in record["lines"]
        if (m := DONE_LINE.match(line)) is not None
    ]
    experiments: list[dict[str, Any]] = []
    begin, begin_cpu = next(
        ((t, cpu) for t, line, cpu in record["lines"] if line.startswith("Writing to")), (0.0, 0.0)
    )
    for end, name, end_cpu in ends:
        experiments.append({"name": name, "begin": begin, "end": end, "cpu_s": end_cpu - begin_cpu})
        begin, begin_cpu = end, end_cpu
    buckets = [*experiments, {"name": "(setup and report)", "begin": None, "end": None}]
    for b in buckets:
        b |= {"trace_s": 0.0, "lower_s": 0.0, "compile_s": 0.0, "compiles": 0, "hits": 0}
    for t, event, duration in record["events"]:
        bucket = next(
            (e for e in experiments if e["begin"] <= t < e["end"]), buckets[-1]
        )  # events before the first or after the last experiment: setup, report
        if event == TRACE:
            bucket["trace_s"] += duration
        elif event == LOWER:
            bucket["lower_s"] += duration
        elif event == COMPILE:
            bucket["compile_s"] += duration
            bucket["compiles"] += 1
        elif event == CACHE_HIT:
            bucket["hits"] += 1
    for e in experiments:
        e["wall_s"] = e["end"] - e["begin"]
        e["rest_s"] = e["wall_s"] - e["trace_s"] - e["lower_s"] - e["compile_s"]
    totals = {k: sum(b[k] for b in buckets) for k in ("trace_s", "lower_s", "compile_s")}
    totals |= {k: sum(b[k] for b in buckets) for k in ("compiles", "hits")}
    return {
        "in_process_s": record["wall_in_process"],
        "in_process_cpu_s": record["cpu_in_process"],
        "import_s": record["jax_import_s"],
        "totals": totals,
        "experiments": buckets,
    }


def measure(modes: list[str], before: str | None) -> dict[str, dict[str, Any]]:
    """Every mode cold then warm, each in a fresh process; with ``before`` (a source tree of an
    earlier version) that version's run right before each of this one's, keyed ``"before ..."``."""
    from _machine import load_average

    versions = [("before ", before), ("", None)] if before else [("", None)]
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-mainjob-") as tmp:
        for mode in modes:
            for temperature in ("cold", "warm"):
                for prefix, tree in versions:
                    key = f"{prefix}{mode} {temperature}"
                    cache = Path(tmp) / f"cache-{prefix.strip() or 'now'}-{mode}"
                    out = Path(tmp) / key.replace(" ", "-")
                    out.mkdir()
                    load = load_average()
                    runs[key] = run = run_once(mode == "quick", cache, out, tree)
                    run["load_before"] = load
                    t = run["totals"]
                    print(
                        f"{key}: {run['wall_s']:.1f} s (CPU {run['cpu_s']:.1f} s); backend "
                        f"compile {t['compile_s']:.1f} s ({t['compiles']} programs), trace + lower "
                        f"{t['trace_s'] + t['lower_s']:.1f} s, cache hits {t['hits']}; load {load}",
                        flush=True,
                    )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--modes", nargs="+", choices=["full", "quick"], default=["quick", "full"])
    parser.add_argument("--json", help="write the results here instead of benchmarks/results/")
    parser.add_argument(
        "--before",
        metavar="TREE",
        help="a source tree of an earlier version (e.g. from 'git worktree add'): each of its "
        "runs is measured the same way right before this version's, in rows of its own",
    )
    parser.add_argument(
        "--reuse",
        nargs="+",
        metavar="[LABEL=]JSON",
        help="make the tables from the runs saved in earlier outputs of this script instead of "
        "measuring again (a LABEL, e.g. 'before', prefixes that file's runs)",
    )
    parser.add_argument("--child", metavar="PROFILE", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.child:
        sys.exit(child([a for a in rest if a != "--"], args.child))

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _machine import Results, describe_machine, load_average

    results = Results(
        "mainjob",
        "Main job wall time and where it goes",
        (__doc__ or "").split("\n\n")[0].strip(),
    )
    if args.reuse:
        runs = reuse(results, args.reuse)
    else:
        print(f"Machine: {describe_machine()}\nLoad average at start: {load_average()}", flush=True)
        runs = measure(args.modes, args.before)
    totals_table(results, runs)
    for key in runs:
        if key.endswith(" cold") and key.replace(" cold", " warm") in runs:
            experiments_table(results, runs, key.removesuffix(" cold"))
    results.save({"runs": runs}, args.json)


def reuse(results: Any, sources: list[str]) -> dict[str, dict[str, Any]]:
    """The runs of earlier outputs (``[LABEL=]PATH``), keyed ``"LABEL mode cache"``; the date
    and the load at the start are the first file's."""
    runs: dict[str, dict[str, Any]] = {}
    for i, source in enumerate(sources):
        label, _, path = source.rpartition("=")
        record = json.loads(Path(path).read_text(encoding="utf-8"))
        if i == 0:
            results.date, results.load_before = record["date"], record["machine"]["load_before"]
        runs |= {f"{label} {k}".strip(): v for k, v in record["raw"]["runs"].items()}
    return runs


def totals_table(results: Any, runs: dict[str, dict[str, Any]]) -> None:
    """One row per run: wall, CPU, compile and the rest."""
    rows = []
    for key, run in runs.items():
        t = run["totals"]
        compile_all = t["trace_s"] + t["lower_s"] + t["compile_s"]
        *version, mode, temperature = key.split()
        rows.append(
            [
                version[0] if version else "now",
                mode,
                temperature,
                f"{run['wall_s']:.1f} s",
                f"{run['cpu_s']:.1f} s",
                f"{run['import_s']:.1f} s",
                f"{t['compile_s']:.1f} s",
                f"{t['compiles']}",
                f"{t['trace_s'] + t['lower_s']:.1f} s",
                f"{t['hits']}",
                _rest(run["wall_s"] - compile_all),
                run["load_before"],
            ]
        )
    results.table(
        "Main job wall time",
        [
            "version",
            "run",
            "cache",
            "wall",
            "CPU time",
            "import jax",
            "XLA compile",
            "programs compiled or loaded",
            "trace + lower",
            "cache hits",
            "rest (run, Python, figures)",
            "load before",
        ],
        rows,
        notes="Fresh process per run; 'CPU time' is the user + system time of the process (all its "
        "threads): on a busy machine it grows less than the wall time; 'before' = the version "
        "measured for comparison, each of its runs right before the same run of 'now'; cold = "
        "empty "
        "compilation cache folder, warm = the same command again with the folder the cold run "
        "filled. 'XLA compile' and 'programs compiled or loaded' count every program handed to "
        "XLA, whether compiled or loaded from the cache ('cache hits'); the cache keeps only "
        "programs that took at least jax_persistent_cache_min_compile_time_secs to compile. "
        "'rest' is the wall time minus tracing, lowering and compiling, '-' where those add up to "
        "more than the wall time (experiments computing at once, run --jobs, overlap them).",
    )


def _rest(seconds: float) -> str:
    """The "rest" column: seconds, or "-" where the charged events add up to more than the wall."""
    return f"{seconds:.1f} s" if seconds >= 0 else "-"


def experiments_table(results: Any, runs: dict[str, dict[str, Any]], name: str) -> None:
    """Per experiment of run ``name`` (e.g. ``"quick"``, ``"before quick"``), cold and warm."""
    cold, warm = runs[f"{name} cold"], runs[f"{name} warm"]
    warm_by_name = {e["name"]: e for e in warm["experiments"]}
    rows = []
    for e in cold["experiments"]:
        w = warm_by_name.get(e["name"], {})
        wall = e.get("wall_s")
        rows.append(
            [
                e["name"],
                "" if wall is None else f"{wall:.1f} s",
                "" if e.get("cpu_s") is None else f"{e['cpu_s']:.1f} s",
                f"{e['compile_s']:.1f} s ({e['compiles']})",
                f"{e['trace_s'] + e['lower_s']:.1f} s",
                "" if e.get("rest_s") is None else _rest(e["rest_s"]),
                "" if w.get("wall_s") is None else f"{w['wall_s']:.1f} s",
                f"{w.get('compile_s', 0):.1f} s ({w.get('compiles', 0)})",
                f"{w.get('hits', 0)}",
            ]
        )
    results.table(
        f"Per experiment, {name} run",
        [
            "experiment",
            "cold: wall",
            "cold: CPU",
            "cold: XLA compile (programs)",
            "cold: trace + lower",
            "cold: rest",
            "warm: wall",
            "warm: XLA compile or load (programs)",
            "warm: cache hits",
        ],
        rows,
        notes="Events charged to the experiment whose completion line came next (with several "
        "experiments computing at once, the next experiments' compiles are charged to the one "
        "being finished, so read the totals); '(setup and report)' is everything before the "
        "first and after the last experiment (its wall time is in the table above); 'rest' is '-' "
        "where the events charged to an experiment add up to more than its wall time.",
    )


if __name__ == "__main__":
    main()
