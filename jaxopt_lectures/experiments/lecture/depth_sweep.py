r"""Rougher surfaces with depth, under Li et al.'s protocol: a depth sweep without skip
connections, 2-D filter-normalized slices and the Hessian's non-convexity ratio on them.

Li, Xu, Taylor, Studer and Goldstein (2018, "Visualizing the Loss Landscape of Neural Nets")
trained networks of growing depth *without skip connections* at a fixed width and looked at the
loss on 2-D slices :math:`L(\theta + \alpha d_1 + \beta d_2)` through the trained parameters,
along random filter-normalized directions; they quantified what the contours show with the
Hessian's extreme eigenvalues at each point of the slice, :math:`|\lambda_{min} / \lambda_{max}|`
(near 0: locally convex; large: strong negative curvature). Here, on the digits: ReLU MLPs of 2 to
30 hidden layers of one width (He initialization, no batch norm, no skip connections), trained
with Adam for a fixed number of steps; on a 2-D slice of each, the loss on a fine grid and
:math:`\max(0, -\lambda_{min}) / \lambda_{max}` on a coarse one (Lanczos,
:func:`jaxopt_lectures.curvature.hessian_eigenvalues` with ``which="both"``).

One compiled program serves every depth: the hidden layers are stacked and run by a ``lax.scan``
over the deepest network's layers, and a ``lax.cond`` on the traced depth skips the layers a
shallower network does not have (their parameters get no gradient and no direction's effect).
The Hessian then also has the skipped layers' zero rows, so a computed :math:`\lambda_{min}` is at
most 0: the ratio counts negative curvature only, which is what Li et al.'s maps show.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxopt_lectures as jl
from jaxopt_lectures import curvature
from jaxopt_lectures.experiments import figures
from jaxopt_lectures.experiments.api import Config, Figure, Numbers, numbers_of
from jaxopt_lectures.experiments.engine import (
    Timer,
    Timing,
    cross_entropy,
    rank_correlation,
    timed,
)
from jaxopt_lectures.experiments.record import Measurement

__all__ = [
    "FULL",
    "DepthSweepResult",
    "DepthSweepSettings",
    "apply",
    "compute",
    "figure",
    "init",
    "measurement",
    "nonconvexity",
    "slice_minima",
]

PROTOCOL = (
    "Li et al. (2018): ReLU MLPs of 2 to 30 hidden layers without skip connections at a fixed "
    "width, 2-D filter-normalized slices, Hessian |lambda_min / lambda_max| on the slice"
)


@dataclass(frozen=True)
class DepthSweepSettings:
    """Depths (hidden layers) and width; Adam's rate, steps, mini-batch and seeds; the slice's
    half-width, its loss grid and its coarser curvature grid, the batch the loss and the Hessian
    are measured on, and the Lanczos steps per point."""

    depths: tuple[int, ...] = (2, 6, 12, 20, 30)
    width: int = 32
    rate: float = 1e-3
    steps: int = 300
    batch_size: int = 64
    num_seeds: int = 2
    alpha: float = 1.0
    loss_grid: int = 15
    curvature_grid: int = 3
    probe_batch: int = 128
    lanczos: int = 12


FULL = DepthSweepSettings()


class DepthSweepResult(NamedTuple):
    """Per depth (leading axis) and seed: the trained loss, the loss on the 2-D slice, the
    extreme eigenvalues and the non-convexity ratio on the curvature grid."""

    depths: np.ndarray
    alphas: np.ndarray  # the loss grid's coefficients (both axes)
    curvature_alphas: np.ndarray
    train_loss: np.ndarray  # (depths, seeds): at the trained point, on the probe batch
    train_acc: np.ndarray
    surface: np.ndarray  # (depths, grid, grid): the first seed's
    lam_max: np.ndarray  # (depths, seeds, cgrid, cgrid)
    lam_min: np.ndarray
    ratio: np.ndarray  # max(0, -lam_min) / lam_max
    mean_ratio: np.ndarray  # (depths, seeds): over the curvature grid
    slice_minima: np.ndarray  # (depths,): local minima of the first seed's loss grid
    settings: DepthSweepSettings
    timings: tuple[Timing, ...]


def init(key: jax.Array, num_features: int, num_classes: int, settings: DepthSweepSettings) -> Any:
    """He-initialized parameters of the deepest network: the first layer, the other hidden layers
    stacked along a leading axis (``max(depths) - 1`` of them, drawn by one ``vmap``-ed
    :func:`jaxopt_lectures.nn.mlp_init`), the output layer."""
    k_ends, k_hidden = jax.random.split(key)
    sizes = [num_features, settings.width, settings.width, num_classes]
    (first, _, last), _ = jl.nn.mlp_init(k_ends, sizes, activation="relu")
    keys = jax.random.split(k_hidden, max(settings.depths) - 1)
    stacked = jax.vmap(
        lambda k: jl.nn.mlp_init(k, [settings.width, settings.width], activation="relu")[0][0]
    )(keys)
    return {"first": first, "hidden": stacked, "last": last}


def apply(params: Any, x: jax.Array, depth: jax.Array) -> jax.Array:
    """The logits of the network with ``depth`` hidden layers (a traced integer): the first
    layer, the first ``depth - 1`` stacked layers (the others pass their input through), the
    output layer."""
    h = jax.nn.relu(x @ params["first"]["w"] + params["first"]["b"])
    layers = params["hidden"]
    index = jnp.arange(layers["w"].shape[0])

    def layer(h: jax.Array, wbi: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        w, b, i = wbi
        return jnp.where(i < depth - 1, jax.nn.relu(h @ w + b), h), None

    h, _ = jax.lax.scan(layer, h, (layers["w"], layers["b"], index))
    return h @ params["last"]["w"] + params["last"]["b"]


def _direction(key: jax.Array, params: Any) -> Any:
    """A filter-normalized direction (:func:`jaxopt_lectures.curvature.filter_normalized_direction`)
    with every stacked hidden layer normalized on its own: the stack ``(layers, n_in, n_out)`` is
    seen as one ``(n_in, layers * n_out)`` matrix, whose columns are the units' incoming weights;
    biases get no direction."""
    hidden = params["hidden"]["w"]
    layers, n_in, n_out = hidden.shape
    view = {
        "first": params["first"],
        "last": params["last"],
        "hidden": hidden.transpose(1, 0, 2).reshape(n_in, layers * n_out),
    }
    d = curvature.filter_normalized_direction(key, view)
    w = d["hidden"].reshape(n_in, layers, n_out).transpose(1, 0, 2)
    bias = jnp.zeros_like(params["hidden"]["b"])
    return {"first": d["first"], "last": d["last"], "hidden": {"w": w, "b": bias}}


def nonconvexity(lam_min: np.ndarray, lam_max: np.ndarray) -> np.ndarray:
    """Li et al.'s :math:`|\\lambda_{min}/\\lambda_{max}|` counting negative curvature only:
    :math:`\\max(0, -\\lambda_{min}) / \\lambda_{max}` (0 where the loss is locally convex).

    Example:
      >>> import numpy as np
      >>> from jaxopt_lectures.experiments.lecture.depth_sweep import nonconvexity
      >>> nonconvexity(np.array([-2.0, 0.5]), np.array([8.0, 4.0])).tolist()
      [0.25, 0.0]
    """
    lo, hi = np.asarray(lam_min, np.float64), np.asarray(lam_max, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(hi > 0, np.maximum(0.0, -lo) / hi, np.inf)


def slice_minima(surface: np.ndarray) -> np.ndarray:
    """The number of interior local minima (below all 8 neighbours) of 2-D grids (last two axes).

    Example:
      >>> import numpy as np
      >>> from jaxopt_lectures.experiments.lecture.depth_sweep import slice_minima
      >>> a = np.add.outer(np.arange(-2, 3) ** 2, np.arange(-2, 3) ** 2).astype(float)
      >>> two = np.ones((5, 7))
      >>> two[2, 2] = two[2, 4] = 0.0
      >>> int(slice_minima(a)), int(slice_minima(two))
      (1, 2)
    """
    s = np.asarray(surface, np.float64)
    inner = s[..., 1:-1, 1:-1]
    n, m = s.shape[-2:]
    lower = np.ones(inner.shape, bool)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di or dj:
                lower &= inner < s[..., 1 + di : n - 1 + di, 1 + dj : m - 1 + dj]
    return lower.sum(axis=(-2, -1))


def _program(settings: DepthSweepSettings, arrays: tuple[jax.Array, ...]) -> Any:
    """The jitted program: every (depth, seed) lane trained (one ``vmap``), then the loss on the
    first seed's slices and the curvature on every lane's slice, each one ``vmap`` over lanes x
    grid points (nested ``vmap``s of Lanczos compile several times slower)."""
    x, y, xp, yp = arrays
    tx = jl.adam(settings.rate)
    num_depths, num_seeds = len(settings.depths), settings.num_seeds
    depths = jnp.repeat(jnp.asarray(settings.depths), num_seeds)  # lane -> depth

    def loss(p: Any, batch: tuple[jax.Array, jax.Array], depth: jax.Array) -> jax.Array:
        return cross_entropy(apply(p, batch[0], depth), batch[1])

    def fit(depth: jax.Array, key: jax.Array, order: jax.Array) -> tuple[Any, Any, Any]:
        k_init, k_dirs = jax.random.split(key)
        params = init(k_init, x.shape[1], 10, settings)

        def step(carry: tuple[Any, Any], idx: jax.Array) -> tuple[tuple[Any, Any], None]:
            p, s = carry
            g = jax.grad(loss)(p, (x[idx], y[idx]), depth)
            u, s = tx.update(g, s, p)
            return (jax.tree.map(jnp.add, p, u), s), None

        (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), order)
        d1 = _direction(jax.random.fold_in(k_dirs, 1), params)
        return params, d1, _direction(k_dirs, params)

    def grid(lanes: jax.Array, size: int) -> tuple[jax.Array, jax.Array, jax.Array]:
        side = jnp.linspace(-settings.alpha, settings.alpha, size)
        lane, b, a = jnp.meshgrid(lanes, side, side, indexing="ij")
        return lane.ravel(), a.ravel(), b.ravel()

    def program(keys: jax.Array, orders: jax.Array) -> tuple[jax.Array, ...]:
        lanes = jnp.tile(jnp.arange(num_seeds), num_depths)  # lane -> seed
        params, d1, d2 = jax.vmap(fit)(depths, keys[lanes], orders[lanes])

        def at(lane: jax.Array, a: jax.Array, b: jax.Array) -> Any:
            return jax.tree.map(lambda p, u, v: p[lane] + a * u[lane] + b * v[lane], params, d1, d2)

        first_seed = jnp.arange(num_depths) * num_seeds
        surface = jax.vmap(lambda i, a, b: loss(at(i, a, b), (xp, yp), depths[i]))(
            *grid(first_seed, settings.loss_grid)
        )

        def extremes(lab: tuple[jax.Array, jax.Array, jax.Array]) -> jax.Array:
            lane, a, b = lab
            vals, _ = curvature.hessian_eigenvalues(
                lambda p, batch: loss(p, batch, depths[lane]),
                at(lane, a, b),
                (xp, yp),
                k=1,
                which="both",
                key=jax.random.fold_in(jax.random.key(0), lane),
                num_iterations=settings.lanczos,
            )
            return vals

        lam = jax.lax.map(
            extremes, grid(jnp.arange(num_depths * num_seeds), settings.curvature_grid)
        )
        logits = jax.vmap(lambda p, d: apply(p, xp, d))(params, depths)
        acc = jnp.mean(jnp.argmax(logits, -1) == yp, axis=-1)
        loss_at = jax.vmap(lambda z: cross_entropy(z, yp))(logits)
        g, c = settings.loss_grid, settings.curvature_grid
        return (
            loss_at.reshape(num_depths, num_seeds),
            acc.reshape(num_depths, num_seeds),
            surface.reshape(num_depths, g, g),
            lam[:, 0].reshape(num_depths, num_seeds, c, c),
            lam[:, 1].reshape(num_depths, num_seeds, c, c),
        )

    return jax.jit(program)


def compute(config: Config, seed: int, base: Any = None) -> DepthSweepResult:
    """Every depth of ``FULL`` trained and probed, one compiled program called once per depth
    (``base``, the landscape experiment's own result, is not needed)."""
    del base
    settings = FULL
    data = config.data(seed)
    rng = np.random.default_rng(seed)
    n = len(data.x_train)
    orders = np.stack(
        [
            np.concatenate(
                [rng.permutation(n) for _ in range(-(-settings.steps * settings.batch_size // n))]
            )[: settings.steps * settings.batch_size].reshape(settings.steps, settings.batch_size)
            for _ in range(settings.num_seeds)
        ]
    ).astype(np.int32)
    keys = jax.random.split(jax.random.key(seed), settings.num_seeds)
    arrays = tuple(
        jax.device_put(a)
        for a in (
            data.x_train,
            data.y_train,
            data.x_train[: settings.probe_batch],
            data.y_train[: settings.probe_batch],
        )
    )
    timer = Timer()
    outs = timed("depth sweep", _program(settings, arrays), keys, orders, timer=timer)
    loss, acc, surface, lam_max, lam_min = (np.asarray(o, np.float64) for o in outs)
    ratio = nonconvexity(lam_min, lam_max)
    return DepthSweepResult(
        depths=np.asarray(settings.depths),
        alphas=np.linspace(-settings.alpha, settings.alpha, settings.loss_grid),
        curvature_alphas=np.linspace(-settings.alpha, settings.alpha, settings.curvature_grid),
        train_loss=loss,
        train_acc=acc,
        surface=surface,
        lam_max=lam_max,
        lam_min=lam_min,
        ratio=ratio,
        mean_ratio=ratio.mean(axis=(-2, -1)),
        slice_minima=slice_minima(surface),
        settings=settings,
        timings=tuple(timer.timings),
    )


def measurement(r: DepthSweepResult) -> Measurement:
    """The claim "deeper: rougher" by the ratio on the slice, deepest against shallowest."""
    mean, std = r.mean_ratio.mean(-1), r.mean_ratio.std(-1)
    spread = float(max(std[0], std[-1]))
    gap = float(mean[-1] - mean[0])
    rho = rank_correlation(r.depths.astype(float), mean)
    per_depth = ", ".join(
        f"{d}: {m:.3g} +- {s:.2g}" for d, m, s in zip(r.depths, mean, std, strict=True)
    )
    return Measurement(
        protocol=PROTOCOL,
        held=bool(gap > spread and rho > 0.5),
        measured=f"mean non-convexity ratio max(0, -lambda_min)/lambda_max over a "
        f"{len(r.curvature_alphas)}x{len(r.curvature_alphas)} grid of the slice, per depth "
        f"(mean +- std over {r.mean_ratio.shape[-1]} seeds): {per_depth}; deepest minus "
        f"shallowest {gap:.3g} against a seed spread of {spread:.2g}; rank correlation with "
        f"depth {rho:.2f}; local minima on the {len(r.alphas)}x{len(r.alphas)} loss grid "
        + ", ".join(f"{d}: {m:.1f}" for d, m in zip(r.depths, r.slice_minima, strict=True))
        + "; trained loss "
        + ", ".join(f"{d}: {v:.3g}" for d, v in zip(r.depths, r.train_loss.mean(-1), strict=True)),
        rule="the deepest network's mean ratio exceeds the shallowest's by more than the seed "
        "spread (the larger std of the two), and the ratio rises with depth (Spearman rank "
        "correlation of depth with the seed-mean ratio > 0.5)",
    )


def numbers(r: DepthSweepResult) -> dict[str, Numbers]:
    """Every field but the settings and timings, with the settings under ``settings``."""
    return {**numbers_of(r), "settings": asdict(r.settings)}


def figure(r: DepthSweepResult) -> Figure:
    """The shallowest and deepest network's slice (log10 loss, with the ratio's grid points);
    the ratio against depth; the trained loss against depth."""
    plt = figures.pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(12, 10.5))
    for ax, i in ((axes[0, 0], 0), (axes[0, 1], len(r.depths) - 1)):
        s = np.log10(r.surface[i])
        cs = ax.contour(r.alphas, r.alphas, s, levels=20, cmap="viridis")
        ax.clabel(cs, fontsize=8, fmt="%.1f")
        ca = r.curvature_alphas
        gx, gy = np.meshgrid(ca, ca)
        sc = ax.scatter(
            gx,
            gy,
            c=r.ratio[i, 0],
            cmap="magma_r",
            vmin=0,
            vmax=1,
            s=160,
            edgecolors="k",
            clip_on=False,
            zorder=3,
        )
        ax.plot(0, 0, "r+", markersize=14)
        ax.set_aspect("equal")
        ax.set(
            title=f"{r.depths[i]} hidden layers: log10 loss on a 2-D slice\n"
            f"dots: max(0, -lambda_min)/lambda_max, mean {r.mean_ratio[i, 0]:.2f}",
            xlabel=r"$\alpha$ (filter-normalized $d_1$)",
            ylabel=r"$\beta$ ($d_2$)",
        )
    fig.colorbar(sc, ax=axes[0, 1], label="max(0, -lambda_min) / lambda_max")
    ax = axes[1, 0]
    for s in range(r.mean_ratio.shape[1]):
        ax.plot(r.depths, r.mean_ratio[:, s], "o-", color="#d62728", alpha=0.5)
    ax.plot(r.depths, r.mean_ratio.mean(1), "k-", lw=2.5, label="mean over seeds")
    ax.set(
        title="Non-convexity on the slice against depth",
        xlabel="hidden layers (no skip connections)",
        ylabel="mean max(0, -lambda_min) / lambda_max",
    )
    ax.legend()
    ax = axes[1, 1]
    ax.plot(r.depths, r.train_loss.mean(1), "o-", color="#1f77b4", label="training loss")
    ax.set_yscale("log")
    ax2 = ax.twinx()
    ax2.plot(r.depths, r.slice_minima, "s--", color="#ff7f0e", label="local minima")
    ax.set(title="Trained loss and local minima on the slice", xlabel="hidden layers")
    ax.set_ylabel("training loss (log)", color="#1f77b4")
    ax2.set_ylabel(f"local minima on the {len(r.alphas)}^2 grid", color="#ff7f0e")
    ax2.set_ylim(0, max(2, int(r.slice_minima.max()) + 1))
    fig.suptitle(
        f"Li et al.'s protocol: depth sweep at width {r.settings.width}, no skip connections"
    )
    fig.tight_layout()
    return Figure("landscape_depth_sweep.png", fig)
