"""The playground page: grids packed into one self-contained HTML file, and read back.

The page is ``template.html`` (package data) with two blocks filled in: a JSON description
(functions, optimizers, slider values, where each grid lies in the data) and the data itself.

Data format (what :func:`read_page` and the page's JavaScript decode): float16 values, stored
as their uint16 bit patterns in rows (a trajectory's x, y or log-loss over the steps; a row of
the contour field), each row delta-encoded (every value minus the one before it, modulo 2^16,
which makes smooth and converged rows compressible), then all low bytes followed by all high
bytes, gzip-compressed and base64-encoded. The browser decompresses it with its built-in
``DecompressionStream``: no library, no network.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import re
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_lectures._app_common import PLAYGROUND_FILE, write_text_atomic
from jaxopt_lectures.playground.grids import (
    LOSS_FLOOR,
    NUM_STEPS,
    START_GRID,
    Grid,
    compute_grids,
)
from jaxopt_lectures.playground.problems import PlaygroundProblem, playground_problems

__all__ = ["CONTOUR_POINTS", "FILENAME", "build", "read_page", "trajectory_from_page"]

FILENAME = PLAYGROUND_FILE
DEFAULT_METHODS: tuple[str, ...] = ("sgd", "momentum", "adam")
"""The optimizers shown when the page opens."""
CONTOUR_POINTS = 120
"""Loss values per axis of the contour field drawn behind the trajectories."""

_DATA_RE = re.compile(
    r'<script type="application/json" id="playground-data">(.*?)</script>', re.DOTALL
)
_BLOB_RE = re.compile(
    r'<script type="application/octet-stream" id="playground-blob">(.*?)</script>', re.DOTALL
)


def _log_gap(values: np.ndarray, min_value: float) -> np.ndarray:
    """log10(L - L*), floored at LOSS_FLOOR; NaN where the loss is not finite."""
    with np.errstate(invalid="ignore", over="ignore"):
        gap = np.maximum(values.astype(np.float64) - min_value, LOSS_FLOOR)
        out = np.log10(gap)
    return np.where(np.isfinite(values), out, np.nan)


def _contour(problem: PlaygroundProblem, n: int) -> np.ndarray:
    p = problem.problem
    xs = np.linspace(*p.xlim, n, dtype=np.float32)
    ys = np.linspace(*p.ylim, n, dtype=np.float32)
    X, Y = np.meshgrid(xs, ys)  # rows: y, columns: x
    points = jnp.stack([jnp.asarray(X.ravel()), jnp.asarray(Y.ravel())], axis=1)
    values = np.asarray(jax.jit(jax.vmap(p.loss))(points)).reshape(n, n)
    return _log_gap(values, p.min_value)


class _Packer:
    """Collects float16 rows; ``blob()`` returns the packed, compressed, base64 text."""

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []
        self.size = 0

    def add(self, rows: np.ndarray) -> dict[str, int]:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        with np.errstate(over="ignore"):  # beyond float16's 65504 is inf: a diverged run
            halves = rows.astype(np.float16)
        bits = halves.view(np.uint16).reshape(-1, rows.shape[-1])
        delta = bits.copy()
        delta[:, 1:] = bits[:, 1:] - bits[:, :-1]  # uint16 arithmetic wraps: exact to undo
        self.chunks.append(delta.ravel())
        where = {"offset": self.size, "rows": bits.shape[0], "length": bits.shape[1]}
        self.size += bits.size
        return where

    def blob(self) -> str:
        words = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.uint16)
        shuffled = np.concatenate([(words & 0xFF).astype(np.uint8), (words >> 8).astype(np.uint8)])
        packed = gzip.compress(shuffled.tobytes(), compresslevel=6, mtime=0)
        return base64.b64encode(packed).decode("ascii")


def _unpack(blob: str) -> np.ndarray:
    raw = np.frombuffer(gzip.decompress(base64.b64decode(blob)), np.uint8)
    half = raw.size // 2
    return (raw[:half].astype(np.uint16) | (raw[half:].astype(np.uint16) << 8)).astype(np.uint16)


def _rows(words: np.ndarray, where: dict[str, int]) -> np.ndarray:
    """Undo the delta encoding of one block: float32 array (rows, length)."""
    block = words[where["offset"] : where["offset"] + where["rows"] * where["length"]]
    delta = block.reshape(where["rows"], where["length"]).astype(np.uint64)
    bits = (np.cumsum(delta, axis=1) % 65536).astype(np.uint16)
    return bits.view(np.float16).astype(np.float32)


def _describe(
    grids: Sequence[Grid], problems: Sequence[PlaygroundProblem], packer: _Packer, steps: int
) -> dict[str, Any]:
    entries = []
    for problem in problems:
        p = problem.problem
        field = _contour(problem, CONTOUR_POINTS)
        ours = [g for g in grids if g.problem.key == problem.key]
        xs, ys = ours[0].xs, ours[0].ys
        entry: dict[str, Any] = {
            "key": problem.key,
            "family": p.name,
            "label": problem.label,
            "kappa": problem.variant,
            "xlim": list(p.xlim),
            "ylim": list(p.ylim),
            "min_value": p.min_value,
            "minima": [list(m) for m in problem.minima],
            "starts": {"xs": [float(x) for x in xs], "ys": [float(y) for y in ys]},
            "default_start": [
                int(np.argmin(np.abs(xs - p.x0[0]))),
                int(np.argmin(np.abs(ys - p.x0[1]))),
            ],
            "contour": {"n": CONTOUR_POINTS, **packer.add(field)},
            # colours and contour levels span the bulk of the field, not the one grid point that
            # happens to sit on the minimum (log10 of ~0)
            "field_range": [float(np.nanpercentile(field, 1)), float(np.nanmax(field))],
            "methods": {},
        }
        for g in ours:
            n_cases = g.losses.size // (steps + 1)
            channels = np.stack(
                [
                    g.thetas[..., 0].reshape(n_cases, steps + 1),
                    g.thetas[..., 1].reshape(n_cases, steps + 1),
                    _log_gap(g.losses.reshape(n_cases, steps + 1), p.min_value),
                ]
            )
            entry["methods"][g.method.key] = {
                "hypers": [
                    {
                        "name": h.name,
                        "symbol": h.symbol,
                        "values": list(h.values),
                        "default": h.default,
                    }
                    for h in g.method.hypers
                ],
                "cases": n_cases,
                "data": packer.add(channels),
            }
        entries.append(entry)
    return {"problems": entries}


# Long for its docstring (30 of 77 lines: arguments, returns, example).
def build(
    out_dir: str | Path,
    *,
    filename: str = FILENAME,
    num_steps: int = NUM_STEPS,
    start_grid: int = START_GRID,
    problems: Sequence[PlaygroundProblem] | None = None,
    method_keys: Sequence[str] | None = None,
    grids: Sequence[Grid] | None = None,
    timings: dict[str, float] | None = None,
) -> Path:
    """Compute every grid and write the self-contained playground page.

    Args:
      out_dir: folder to write into (created if missing).
      filename: the page's file name.
      num_steps: steps per trajectory.
      start_grid: start points per axis.
      problems: the functions (default: all of
        :func:`~jaxopt_lectures.playground.problems.playground_problems`).
      method_keys: a subset of the optimizers (default: all).
      grids: trajectories already computed by
        :func:`~jaxopt_lectures.playground.grids.compute_grids` (then ``problems`` must be the
        functions they were computed for, and ``num_steps``, ``start_grid`` and ``method_keys``
        are not used).
      timings: if given, filled with ``"grids_s"``, ``"page_s"``, ``"total_s"`` and the seconds
        per optimizer.

    Returns:
      The path of the written page.

    Example:
      >>> import tempfile
      >>> from jaxopt_lectures.playground import build
      >>> from jaxopt_lectures.playground.problems import playground_problems
      >>> with tempfile.TemporaryDirectory() as out:
      ...     page = build(out, num_steps=5, start_grid=2,
      ...                  problems=playground_problems()[:1], method_keys=["sgd"])
      ...     print(page.name, page.stat().st_size < 100_000)
      playground.html True
    """
    t0 = time.perf_counter()
    chosen = list(playground_problems() if problems is None else problems)
    per_method: dict[str, float] = {}
    if grids is None:
        grids = compute_grids(chosen, num_steps, start_grid, method_keys, per_method)
    else:
        if {g.problem.key for g in grids} != {p.key for p in chosen}:
            raise ValueError("build: `grids` were computed for other functions than `problems`")
        num_steps = grids[0].losses.shape[-1] - 1
        start_grid = len(grids[0].xs)
        per_method = {g.method.key: 0.0 for g in grids}
    t1 = time.perf_counter()
    packer = _Packer()
    description = _describe(grids, chosen, packer, num_steps)
    first = grids[0]
    methods = []
    for key in dict.fromkeys(g.method.key for g in grids):
        m = next(g.method for g in grids if g.method.key == key)
        methods.append({"key": m.key, "label": m.label, "call": m.call})
    description |= {
        "num_steps": num_steps,
        "start_grid": start_grid,
        "loss_floor": LOSS_FLOOR,
        "methods": methods,
        "library": f"jaxopt_lectures {_version()}, jax {jax.__version__}",
        "default_methods": [k for k in DEFAULT_METHODS if k in per_method] or [first.method.key],
    }
    path = _write_page(Path(out_dir) / filename, description, packer)
    if timings is not None:
        timings |= per_method
        timings |= {
            "grids_s": t1 - t0,
            "page_s": time.perf_counter() - t1,
            "total_s": time.perf_counter() - t0,
        }
    return path


def _write_page(path: Path, description: dict[str, Any], packer: _Packer) -> Path:
    """Fill the template with ``description`` (JSON) and the packed arrays; write it to ``path``
    through a temporary file of this writer's own (its folder created if missing): concurrent
    writers do not collide, and a failed write leaves nothing behind."""
    text = json.dumps(description, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    template = resources.files("jaxopt_lectures.playground").joinpath("template.html")
    page = template.read_text(encoding="utf-8")
    page = page.replace("/*__PLAYGROUND_DATA__*/", text, 1)
    page = page.replace("__PLAYGROUND_BLOB__", packer.blob(), 1)
    page = page.replace("__PLAYGROUND_TITLE__", html.escape("Optimizer playground"), 1)
    write_text_atomic(path, page)
    return path


def _version() -> str:
    import jaxopt_lectures

    return str(jaxopt_lectures.__version__)


def read_page(path: str | Path) -> tuple[dict[str, Any], np.ndarray]:
    """The description (the page's JSON) and the unpacked data words of a page written by
    :func:`build`; :func:`trajectory_from_page` reads trajectories out of them.

    Raises:
      ValueError: the file is not a playground page.

    Example:
      >>> import tempfile
      >>> from jaxopt_lectures.playground import build, read_page
      >>> from jaxopt_lectures.playground.problems import playground_problems
      >>> with tempfile.TemporaryDirectory() as out:
      ...     page = build(out, num_steps=3, start_grid=1, problems=playground_problems()[:1],
      ...                  method_keys=["sgd"])
      ...     description, words = read_page(page)
      >>> [h["name"] for h in description["problems"][0]["methods"]["sgd"]["hypers"]]
      ['learning_rate']
    """
    text = Path(path).read_text(encoding="utf-8")
    data, blob = _DATA_RE.search(text), _BLOB_RE.search(text)
    if data is None or blob is None:
        raise ValueError(f"{path}: not a playground page (no data blocks)")
    return json.loads(data.group(1).replace("<\\/", "</")), _unpack(blob.group(1).strip())


def trajectory_from_page(
    description: dict[str, Any],
    words: np.ndarray,
    problem_key: str,
    method_key: str,
    hyper_indices: Sequence[int],
    start_index: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """One trajectory as the page draws it: ``(thetas (T+1, 2), log10 loss gaps (T+1,))``.

    ``hyper_indices`` index each slider's values (in the order of the method's hypers),
    ``start_index`` is ``(ix, iy)`` in the start grid. The loss gap is
    ``log10(max(L - L*, 1e-12))``, NaN once the loss is not finite.

    Example (gradient descent with eta = 0.2 on the lecture's quadratic, kappa = 20: one step
    from (-1, 0.8) multiplies x by 1 - 2 eta / 20 and y by 1 - 2 eta)::

      >>> import tempfile
      >>> from jaxopt_lectures.playground import build, read_page, trajectory_from_page
      >>> from jaxopt_lectures.playground.problems import playground_problems
      >>> quadratic_20 = [p for p in playground_problems() if p.key == "quadratic-20"]
      >>> with tempfile.TemporaryDirectory() as out:
      ...     page = build(out, num_steps=3, start_grid=1, problems=quadratic_20,
      ...                  method_keys=["sgd"])
      ...     description, words = read_page(page)
      >>> rates = description["problems"][0]["methods"]["sgd"]["hypers"][0]["values"]
      >>> thetas, _ = trajectory_from_page(description, words, "quadratic-20", "sgd",
      ...                                  [rates.index(0.2)], (0, 0))
      >>> [round(float(v), 3) for v in thetas[1]]  # (-1 * 0.98, 0.8 * 0.6)
      [-0.98, 0.48]
    """
    problem = next(p for p in description["problems"] if p["key"] == problem_key)
    grid = problem["methods"][method_key]
    sizes = [len(h["values"]) for h in grid["hypers"]]
    ny, nx = len(problem["starts"]["ys"]), len(problem["starts"]["xs"])
    case = int(
        np.ravel_multi_index((*hyper_indices, start_index[1], start_index[0]), (*sizes, ny, nx))
    )
    rows = _rows(words, grid["data"])
    n = grid["cases"]
    return np.stack([rows[case], rows[n + case]], axis=1), rows[2 * n + case]
