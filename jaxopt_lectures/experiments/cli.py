"""The main job's command line: ``python -m jaxopt_lectures [list | run ...]``.

Exit codes: 0 when every requested experiment ran (or had already run: it is skipped); 1 when an
experiment failed (the others still run and the report shows the failure); 2 when the run could
not start (an unknown experiment name, an output folder that cannot be written, a missing optional
dependency, an unreadable ``--data`` file); 130 when interrupted (the finished experiments are
kept). Errors are one line on stderr that says what to do, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEFAULT_OUT = "lecture-results"
SEED_MAX = 2**31 - 1  # the runs use seed, seed + 1, ... as uint32 PRNG seeds


class UsageError(Exception):
    """A problem that stops the run before it starts; the message says what to do."""


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error contract: one line on stderr, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, {SEED_MAX}], got {text!r}")
    return value


def _names() -> list[str]:
    from jaxopt_lectures.experiments.registry import EXPERIMENTS

    return list(EXPERIMENTS)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jaxopt-lectures",
        description=(
            "Reproduce the lecture 'Learning as Optimization': every claim as an experiment with "
            "a figure and numbers, written to an output folder (results.json, report.md, "
            "report.html, PNG figures, an animated GIF). Offline: the data is scikit-learn's "
            "bundled digits set. Without a command: 'run' with the defaults."
        ),
        epilog="Exit codes: 0 all ran, 1 an experiment failed, 2 could not start, 130 interrupted.",
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("list", help="list the experiments")
    run = sub.add_parser(
        "run",
        help="run experiments (all by default)",
        description="Run the named experiments (all by default) and write the results.",
    )
    run.add_argument("names", nargs="*", metavar="NAME", help="experiments to run (see 'list')")
    run.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    run.add_argument(
        "--quick", action="store_true", help="smaller settings: everything in well under a minute"
    )
    run.add_argument(
        "--seed",
        type=_seed,
        default=0,
        help=f"base seed of the data split and the runs, in [0, {SEED_MAX}] (default: 0)",
    )
    run.add_argument("--force", action="store_true", help="rerun experiments that already finished")
    run.add_argument(
        "--data",
        metavar="FILE.npz",
        help="your own classification data: an .npz with arrays X (n, features) and y (n,)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument(
        "--no-cache",
        action="store_true",
        help="do not keep compiled programs in JAX's persistent cache "
        "($JAXOPT_LECTURES_CACHE, default ~/.cache/jaxopt_lectures/xla), which makes reruns faster",
    )
    return parser


def _error(message: str) -> None:
    print(f"jaxopt-lectures: error: {message}", file=sys.stderr)


def _check_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise UsageError(
            f"cannot write to the output folder '{out}' ({reason}); choose another with --out DIR"
        ) from err


def _data_factory(path: str | None, seed: int) -> tuple[Callable[[bool], Any] | None, str]:
    if path is None:
        return None, "digits (scikit-learn's bundled set), split 60/20/20"
    from jaxopt_lectures.experiments.data import NPZ_FORMAT, load_npz, make_dataset

    try:
        X, y = load_npz(path)
    except ValueError as err:
        raise UsageError(f"--data: {err}") from err
    try:
        make_dataset(X, y, seed=seed)  # validate now, before any experiment runs
    except ValueError as err:
        raise UsageError(f"cannot use --data '{path}' ({err}); {NPZ_FORMAT}") from err

    def factory(standardize: bool) -> Any:
        return make_dataset(X, y, seed=seed, standardize=standardize)

    return factory, f"{path} ({len(X)} examples)"


def _enable_compilation_cache() -> None:
    """Keep compiled XLA programs on disk: a rerun (``--force``, another seed) skips most of the
    compile time, which dominates a short run on a CPU. Best effort: no cache if the folder
    cannot be made."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "jaxopt_lectures"
    folder = Path(os.environ.get("JAXOPT_LECTURES_CACHE", default / "xla"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _progress(name: str, total: int, enabled: bool) -> Any:
    from jaxopt_lectures.experiments._deps import require

    tqdm = require("tqdm").tqdm
    return tqdm(total=total, desc=f"{name:<20}", disable=not enabled, leave=True, file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from jaxopt_lectures.experiments._deps import INSTALL_HINT, missing

    names = _names()
    unknown = [n for n in args.names if n not in names]
    if unknown:
        raise UsageError(
            f"unknown experiment {', '.join(repr(n) for n in unknown)}; choose from: "
            f"{', '.join(names)} (see 'jaxopt-lectures list')"
        )
    absent = missing()
    if absent:
        raise UsageError(f"missing optional dependencies {', '.join(absent)}: {INSTALL_HINT}")
    selected = [n for n in names if n in args.names] if args.names else names
    out = Path(args.out)
    _check_out_dir(out)
    factory, data_desc = _data_factory(args.data, args.seed)
    if not args.no_cache:
        _enable_compilation_cache()
    return _execute(out, selected, names, args, factory, data_desc)


def _execute(
    out: Path,
    selected: Sequence[str],
    order: list[str],
    args: argparse.Namespace,
    factory: Callable[[bool], Any] | None,
    data_desc: str,
) -> int:
    from jaxopt_lectures.experiments import engine, report
    from jaxopt_lectures.experiments.base import Context, jsonable
    from jaxopt_lectures.experiments.registry import EXPERIMENTS

    start = time.perf_counter()
    results = report.load_results(out)
    meta: dict[str, Any] = {
        "command": report.command_line(),
        "quick": bool(args.quick),
        "seed": int(args.seed),
        "data": data_desc,
        "started_at": report.now(),
        "versions": report.versions(),
        "machine": report.machine_info(),
        "ran": [],
        "skipped": [],
        "failed": [],
    }
    results["metadata"] = meta
    results["schema"] = report.SCHEMA
    progress_on = not args.no_progress and sys.stderr.isatty()
    print(
        f"Writing to {out}/ ({'quick' if args.quick else 'full'} run, seed {args.seed}, "
        f"{len(selected)} experiments; data: {data_desc})",
        flush=True,
    )
    status = EXIT_OK
    ctx = Context(out_dir=out, quick=bool(args.quick), seed=int(args.seed), data_factory=factory)
    for position, name in enumerate(selected, 1):
        experiment = EXPERIMENTS[name]
        done = results["experiments"].get(name)
        if (
            not args.force
            and done is not None
            and done.get("status") == "ok"
            and done.get("quick") == meta["quick"]
            and done.get("seed") == meta["seed"]
            and done.get("data") == data_desc
            and all((out / f).exists() for f in done.get("figures", []))
        ):
            meta["skipped"].append(name)
            print(f"[{position}/{len(selected)}] {name}: already done, skipped (--force reruns)")
            continue
        bar = _progress(name, experiment.stages, progress_on)
        ctx.advance = bar.update
        compiled_before = len(engine.TIMINGS)
        t0 = time.perf_counter()
        entry: dict[str, Any] = {
            "title": experiment.title,
            "section": experiment.section,
            "summary": experiment.summary,
            "quick": meta["quick"],
            "seed": meta["seed"],
            "data": data_desc,
        }
        try:
            result = experiment.run(ctx)
        except KeyboardInterrupt:
            bar.close()
            meta["wall_time_s"] = time.perf_counter() - start
            report.write_results(out, jsonable(results))
            report.write_reports(out, results, order)
            _error(f"interrupted during '{name}'; finished experiments are kept in {out}/")
            return EXIT_INTERRUPTED
        except Exception as err:  # one experiment failing must not lose the others
            bar.close()
            entry |= {
                "status": "failed",
                "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc(),
                "wall_time_s": time.perf_counter() - t0,
            }
            meta["failed"].append(name)
            status = EXIT_FAILED
            _error(f"experiment '{name}' failed: {type(err).__name__}: {err}")
        else:
            bar.close()
            compile_s = sum(t[1] for t in engine.TIMINGS[compiled_before:])
            entry |= {
                "status": "ok",
                "finished_at": report.now(),
                "wall_time_s": time.perf_counter() - t0,
                "compile_time_s": compile_s,
                "figures": result.figures,
                "headlines": [list(h) for h in result.headlines],
                "claims": [vars(c) for c in result.claims],
                "settings": result.settings,
                "numbers": result.numbers,
            }
            meta["ran"].append(name)
            held = sum(c.held for c in result.claims)
            print(
                f"[{position}/{len(selected)}] {name}: {entry['wall_time_s']:.1f} s, "
                f"{held}/{len(result.claims)} claims held; "
                + "; ".join(f"{k}: {v}" for k, v in result.headlines[:2]),
                flush=True,
            )
        results["experiments"][name] = jsonable(entry)
        meta["wall_time_s"] = time.perf_counter() - start
        results = jsonable(results)
        meta = results["metadata"]
        report.write_results(out, results)
        report.write_reports(out, results, order)
    meta["finished_at"] = report.now()
    meta["wall_time_s"] = time.perf_counter() - start
    report.write_results(out, jsonable(results))
    report.write_reports(out, results, order)
    print(
        f"Done in {meta['wall_time_s']:.1f} s: {out / 'report.md'}, {out / 'report.html'}, "
        f"{out / 'results.json'}"
        + (f"; FAILED: {', '.join(meta['failed'])}" if meta["failed"] else ""),
        flush=True,
    )
    return status


def _list() -> int:
    from jaxopt_lectures.experiments.registry import EXPERIMENTS

    width = max(map(len, EXPERIMENTS))
    for name, e in EXPERIMENTS.items():
        print(f"{name:<{width}}  {e.title}  [lecture: {e.section}]")
        print(f"{'':<{width}}  {e.summary}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run, and return the exit code."""
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["run", *argv]
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            return _list()
        return _run(args)
    except UsageError as err:
        _error(str(err))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
