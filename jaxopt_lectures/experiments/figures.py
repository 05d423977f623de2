"""Figures for the experiments: matplotlib on the non-interactive Agg backend, imported lazily.

Shared helpers only: a pyplot with readable defaults, the level curves of a 2-D problem, seed
bands, consistent colors per optimizer, atomic saving (PNG and the race's animated GIF). Each
experiment draws its own figure with them in its ``figure(result)``; the runner saves it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxopt_lectures.experiments._deps import require
from jaxopt_lectures.experiments.store import atomic_file
from jaxopt_lectures.problems import Problem

__all__ = ["COLORS", "band", "contour", "per_rate", "pyplot", "save", "save_animation"]

COLORS = {
    "sgd": "#1f77b4",
    "sgd (lr 0.01)": "#1f77b4",
    "sgd (lr 0.1)": "#17becf",
    "gradient descent": "#1f77b4",
    "momentum": "#ff7f0e",
    "nag": "#2ca02c",
    "adagrad": "#d62728",
    "rmsprop": "#9467bd",
    "adadelta": "#8c564b",
    "adam": "#e377c2",
    "newton": "#000000",
    "newton (saddle-free)": "#7f7f7f",
}


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend with font sizes readable at report width."""
    matplotlib = require("matplotlib")
    matplotlib.use("Agg", force=True)
    plt = require("matplotlib.pyplot")
    plt.rcParams.update(
        {
            "font.size": 11,
            "axes.titlesize": 12,
            "axes.labelsize": 11,
            "legend.fontsize": 9,
            "xtick.labelsize": 10,
            "ytick.labelsize": 10,
            "figure.titlesize": 14,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "savefig.dpi": 110,
            "figure.dpi": 110,
        }
    )
    return plt


def save(fig: Any, path: Path) -> str:
    """Write ``fig`` to ``path`` atomically (a temporary file, then ``os.replace``); close it.

    Returns the file name (relative to the output folder), for the report.
    """
    path = Path(path)
    try:
        with atomic_file(path, suffix=path.suffix) as tmp:
            fig.savefig(tmp, bbox_inches="tight")
    finally:
        pyplot().close(fig)
    return path.name


def save_animation(
    fig: Any,
    draw_frame: Callable[[int], Sequence[Any]],
    frames: Sequence[int],
    path: Path,
    fps: int = 10,
) -> str:
    """Write an animated GIF atomically with Pillow (matplotlib's own dependency); close ``fig``.

    The figure is rendered once with everything that does not move (e.g. the contour lines);
    each frame then restores that background and draws only the artists that
    ``draw_frame(frame)`` returns (blitting), which is ~10x faster than matplotlib's
    ``PillowWriter``, which redraws the whole figure for every frame.
    """
    image_mod = require("PIL.Image")
    path = Path(path)
    canvas = fig.canvas
    moving = list(draw_frame(frames[0]))
    for artist in moving:
        artist.set_animated(True)
    canvas.draw()
    background = canvas.copy_from_bbox(fig.bbox)

    def render(frame: int) -> Any:
        canvas.restore_region(background)
        for artist in draw_frame(frame):
            fig.draw_artist(artist)
        canvas.blit(fig.bbox)
        return image_mod.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())

    # One palette for every frame, taken from the last (fullest) one, so that every color is in
    # it and the GIF stores only what changed between frames.
    palette = render(frames[-1]).quantize(colors=96, method=image_mod.Quantize.MEDIANCUT)
    images = [render(frame).quantize(palette=palette, dither=0) for frame in frames]
    try:
        with atomic_file(path, suffix=".gif") as tmp:
            images[0].save(
                tmp,
                save_all=True,
                append_images=images[1:],
                duration=int(1000 / fps),
                loop=0,
                optimize=False,
            )
    finally:
        pyplot().close(fig)
    return path.name


def contour(ax: Any, problem: Problem, *, levels: int = 25, resolution: int = 200) -> None:
    """Draw the level curves of ``problem`` (log-spaced above its minimum) and mark the minimum."""
    import jax
    import jax.numpy as jnp

    xs = np.linspace(*problem.xlim, resolution)
    ys = np.linspace(*problem.ylim, resolution)
    X, Y = np.meshgrid(xs, ys)
    grid = jnp.stack([jnp.asarray(X.ravel()), jnp.asarray(Y.ravel())], axis=1)
    # One compiled program: an eager vmap would compile every operation of the loss on its own.
    Z = np.asarray(jax.jit(jax.vmap(problem.loss))(grid)).reshape(X.shape) - problem.min_value
    Z = np.maximum(Z, 1e-12)
    top = float(np.percentile(Z, 95))
    bottom = max(float(Z.min()), top * 1e-5)
    shades = pyplot().get_cmap("Greys")(np.linspace(0.35, 0.8, levels))
    ax.contour(X, Y, Z, levels=np.geomspace(bottom, top, levels), colors=shades, linewidths=0.8)
    ax.plot(
        *problem.minimum, marker="*", color="gold", markersize=16, markeredgecolor="k", zorder=5
    )
    ax.set_xlim(*problem.xlim)
    ax.set_ylim(*problem.ylim)
    ax.set_xlabel(r"$\theta_1$" if problem.name == "quadratic" else "x")
    ax.set_ylabel(r"$\theta_2$" if problem.name == "quadratic" else "y")


def band(
    ax: Any,
    x: np.ndarray,
    curves: np.ndarray,
    *,
    label: str,
    color: str | None = None,
    linestyle: str = "-",
) -> None:
    """Plot the mean over seeds (the first axis of ``curves``) with a min-max band."""
    curves = np.asarray(curves, np.float64).reshape(-1, len(x))
    with np.errstate(invalid="ignore"):
        mean = np.mean(curves, axis=0)
    (line,) = ax.plot(x, mean, label=label, color=color, linestyle=linestyle, linewidth=1.8)
    if len(curves) > 1:
        ax.fill_between(
            x, np.min(curves, axis=0), np.max(curves, axis=0), color=line.get_color(), alpha=0.2
        )


def per_rate(
    ax: Any,
    rates: np.ndarray,
    values: np.ndarray,
    *,
    color: str,
    label: str,
    crosses: np.ndarray | None = None,
    cross_at: float = 0.0,
) -> None:
    """One number per learning rate as a line with dots (non-finite values leave a gap); the
    rates where ``crosses`` is True (never reached, did not train) as crosses at ``cross_at``."""
    rates = np.asarray(rates)
    shown = np.where(np.isfinite(values), values, np.nan)
    ax.plot(rates, shown, "o-", color=color, label=label, linewidth=2)
    if crosses is not None:
        ax.plot(
            rates[crosses],
            np.full(int(np.sum(crosses)), cross_at),
            "x",
            color=color,
            markersize=10,
            markeredgewidth=2.5,
        )
