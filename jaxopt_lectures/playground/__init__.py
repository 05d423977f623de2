"""An optimizer playground: the lecture's methods on 2-D test functions, in one offline HTML page.

``python -m jaxopt_lectures playground --out DIR`` writes ``DIR/playground.html``: pick a test
function (the lecture's quadratic with adjustable conditioning, Rosenbrock, Beale, the saddle,
Himmelblau's four minima), one or several optimizers, move the sliders (learning rate, momentum,
the moving averages' decays, epsilon, damping) or click a start point, and the paths and loss
curves follow at once. The page is self-contained (no network: data, script and style inline).

Every path is computed ahead of time by the library's own transforms (``jl.sgd``, ``jl.adam``,
``jl.newton(saddle_free=True)``, ...): one ``jit(vmap(...))`` program per optimizer runs every
hyperparameter and start point of the grid at once (:mod:`~jaxopt_lectures.playground.grids`);
:mod:`~jaxopt_lectures.playground.page` packs them into the page and reads them back.

Example (a small page: one function, one optimizer)::

  >>> import tempfile
  >>> from jaxopt_lectures.playground import build, read_page
  >>> from jaxopt_lectures.playground.problems import playground_problems
  >>> with tempfile.TemporaryDirectory() as out:
  ...     page = build(out, num_steps=5, start_grid=2, problems=playground_problems()[:1],
  ...                  method_keys=["sgd"])
  ...     description, words = read_page(page)
  >>> description["problems"][0]["methods"]["sgd"]["cases"]  # 8 rates x 2 x 2 starts
  32
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from jaxopt_lectures.playground.page import FILENAME, build, read_page, trajectory_from_page

__all__ = ["FILENAME", "build", "main", "read_page", "trajectory_from_page"]


def main(argv: Sequence[str] | None = None, prog: str = "jaxopt-lectures playground") -> int:
    """Command line: ``[--out DIR] [--steps N] [--starts N]``; writes the page, prints where,
    how large and how long it took; returns the exit code (0, or 2 for an unusable ``--out``).

    ``python -m jaxopt_lectures playground --out DIR`` calls it (after switching on JAX's
    persistent compilation cache); ``main(["--out", "DIR"])`` does the same from Python.
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Write the optimizer playground, one self-contained HTML page.",
    )
    parser.add_argument("--out", default="lecture-results", help="output folder")
    parser.add_argument("--steps", type=int, default=None, help="steps per trajectory")
    parser.add_argument("--starts", type=int, default=None, help="start points per axis")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    kwargs = {}
    if args.steps is not None:
        if args.steps < 1:
            parser.error(f"--steps must be >= 1, got {args.steps}")
        kwargs["num_steps"] = args.steps
    if args.starts is not None:
        if args.starts < 1:
            parser.error(f"--starts must be >= 1, got {args.starts}")
        kwargs["start_grid"] = args.starts
    timings: dict[str, float] = {}
    try:
        path = build(Path(args.out), timings=timings, **kwargs)
    except OSError as err:
        print(
            f"{prog}: error: cannot write to '{args.out}' ({err.strerror or err})", file=sys.stderr
        )
        return 2
    size = path.stat().st_size
    print(
        f"Wrote {path} ({size / 1e6:.1f} MB) in {timings['total_s']:.1f} s "
        f"(trajectories {timings['grids_s']:.1f} s, page {timings['page_s']:.1f} s)",
        flush=True,
    )
    return 0
