r"""The problem of initial values: gradient descent finds the minimum next to where it starts, and
deeper networks have a rougher loss surface.

1. A basin map: gradient descent from every point of a grid of starts on Himmelblau's function
   :math:`(x^2 + y - 11)^2 + (x + y^2 - 7)^2`, which has four minima of equal value; for each start,
   which minimum it reaches, and whether that is the minimum nearest to the start. All starts run
   as one ``vmap``-ed ``lax.scan``.
2. Roughness: the training loss of a trained MLP along random directions through its parameters,
   :math:`\alpha \mapsto L(\theta + \alpha d)`, with the directions *filter-normalized* as Li et
   al. (2018, "Visualizing the Loss Landscape of Neural Nets") do: each unit's incoming weights in
   d are rescaled to the norm of that unit's weights in theta (biases get no direction), so that
   networks of different scales and depths are compared in their own units. Roughness of a curve:
   its total variation over the variation a single valley would have,
   :math:`\sum |\Delta L| / (L(\alpha_0) + L(\alpha_n) - 2 \min L)`, which is 1 for a curve that
   only falls then rises and grows with every extra bump; and the count of its local minima.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxopt_lectures as jl
from jaxopt_lectures import problems
from jaxopt_lectures.curvature import filter_normalized_direction  # still importable from here
from jaxopt_lectures.experiments import figures
from jaxopt_lectures.experiments.api import Claim, Config, Experiment, Figure, Summary, numbers_of
from jaxopt_lectures.experiments.data import Dataset
from jaxopt_lectures.experiments.engine import (
    MLP,
    Timer,
    Timing,
    TrainRun,
    cross_entropy,
    fit_mlps,
    timed,
)

__all__ = [
    "EXPERIMENT",
    "HIMMELBLAU_MINIMA",
    "LandscapeResult",
    "LandscapeSettings",
    "claims",
    "compute",
    "figure",
    "himmelblau",
    "roughness",
    "summarize",
]

HIMMELBLAU_MINIMA = np.array(problems.HIMMELBLAU_MINIMA)
"""Himmelblau's four minima (:data:`jaxopt_lectures.problems.HIMMELBLAU_MINIMA`), one per row."""

_HIMMELBLAU = problems.himmelblau()


def himmelblau(theta: jax.Array) -> jax.Array:
    """Himmelblau's function of ``theta`` (the loss of :func:`jaxopt_lectures.problems.himmelblau`),
    four minima of value 0 (:data:`HIMMELBLAU_MINIMA`)."""
    return _HIMMELBLAU.loss(theta)


def roughness(curve: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(total variation / single-valley variation, number of interior local minima) of loss curves
    along the last axis. The first is 1 for a curve that falls then rises, more for bumps.

    Example:
      >>> import numpy as np
      >>> from jaxopt_lectures.experiments.lecture.landscape import roughness
      >>> r, m = roughness(np.array([[4.0, 1.0, 0.0, 1.0, 4.0], [4.0, 0.0, 2.0, 0.0, 4.0]]))
      >>> r.tolist(), m.tolist()
      ([1.0, 1.5], [1, 2])
    """
    c = np.asarray(curve, np.float64)
    tv = np.sum(np.abs(np.diff(c, axis=-1)), axis=-1)
    low = np.min(c, axis=-1)
    single = c[..., 0] + c[..., -1] - 2.0 * low
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(single > 0, tv / single, 1.0)
    inner = c[..., 1:-1]
    minima = np.sum((inner < c[..., :-2]) & (inner < c[..., 2:]), axis=-1)
    return ratio, minima


@dataclass(frozen=True)
class LandscapeSettings:
    """Basin map: grid size, box, rate, steps. Networks: hidden layers of the shallow and the deep
    MLP, epochs of Adam, seeds, random directions per network, points along a direction, the
    half-width of the alpha range, the batch the loss is measured on, the 2-D surface grid."""

    grid: int = 61
    box: float = 5.0
    rate: float = 0.002
    steps: int = 3000
    shallow: tuple[int, ...] = (64,)
    deep: tuple[int, ...] = (64,) * 10
    epochs: int = 12
    num_seeds: int = 3
    num_directions: int = 8
    num_alphas: int = 41
    alpha: float = 1.0
    batch: int = 512
    surface: int = 25


FULL = LandscapeSettings()
QUICK = LandscapeSettings(
    grid=41,
    steps=2000,
    deep=(64,) * 5,
    epochs=4,
    num_seeds=2,
    num_directions=4,
    surface=0,
)


class LandscapeResult(NamedTuple):
    """The basin map and the loss curves/surfaces with their roughness."""

    starts: np.ndarray  # (grid * grid, 2)
    reached: np.ndarray  # index of the minimum reached (-1: none within 0.1)
    nearest: np.ndarray  # index of the minimum nearest to the start
    fraction_nearest: float
    fraction_converged: float
    alphas: np.ndarray
    curves: dict[str, np.ndarray]  # depth -> (seeds, directions, alphas)
    surfaces: dict[str, np.ndarray]  # depth -> (surface, surface), seed 0
    roughness: dict[str, np.ndarray]  # depth -> (seeds, directions)
    local_minima: dict[str, np.ndarray]
    rise: dict[str, np.ndarray]  # (seeds, directions): mean of L at alpha = +-max minus L at 0
    train_loss: dict[str, np.ndarray]  # at the trained point, per seed
    val_acc: dict[str, np.ndarray]
    depths: dict[str, int]
    settings: LandscapeSettings
    timings: tuple[Timing, ...]


def _basins(settings: LandscapeSettings, timer: Timer) -> tuple[np.ndarray, np.ndarray]:
    side = np.linspace(-settings.box, settings.box, settings.grid)
    starts = np.stack(np.meshgrid(side, side), -1).reshape(-1, 2).astype(np.float32)
    tx = jl.sgd(settings.rate)

    def descend(x0: jax.Array) -> jax.Array:
        def step(carry: tuple[jax.Array, Any], _: None) -> tuple[Any, None]:
            x, state = carry
            updates, state = tx.update(jax.grad(himmelblau)(x), state, x)
            return (x + updates, state), None

        (x, _), _ = jax.lax.scan(step, (x0, tx.init(x0)), None, length=settings.steps)
        return x

    finals = timed(
        "basin map",
        jax.jit(jax.vmap(descend)),
        jnp.asarray(starts),
        timer=timer,
        short=True,
    )
    return starts, np.asarray(finals, np.float64)


def _probe(
    settings: LandscapeSettings,
    arrays: tuple[jax.Array, ...],
    alphas: np.ndarray,
    model: MLP,
    params: Any,
    key: jax.Array,
) -> tuple[Any, ...]:
    """The loss along ``num_directions`` filter-normalized directions through ``params``, on a
    2-D surface of two of them, at ``params`` itself, and the validation accuracy there."""
    x, y, xv, yv = arrays
    side = np.linspace(-settings.alpha, settings.alpha, settings.surface, dtype=np.float32)

    def loss(p: Any, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
        logits, _ = jl.nn.mlp_apply(p, [], batch[0], activation=model.activation, training=False)
        return cross_entropy(logits, batch[1])

    keys = jax.random.split(key, settings.num_directions + 1)
    dirs = jax.vmap(lambda k: filter_normalized_direction(k, params))(keys)
    lines = jax.vmap(lambda d: jl.curvature.loss_slice(loss, params, (x, y), [d], alphas))(
        jax.tree.map(lambda a: a[:-1], dirs)
    )
    d1 = jax.tree.map(lambda a: a[0], dirs)
    d2 = jax.tree.map(lambda a: a[-1], dirs)
    surface = (  # rows: the coefficient of d2, columns: that of d1
        jl.curvature.loss_slice(loss, params, (x, y), (d1, d2), side)
        if settings.surface
        else jnp.zeros((0, 0))
    )
    logits, _ = jl.nn.mlp_apply(params, [], xv, activation=model.activation, training=False)
    val_acc = jnp.mean(jnp.argmax(logits, -1) == yv)
    return lines, surface, loss(params, (x, y)), val_acc


def _probe_all(
    settings: LandscapeSettings,
    data: Dataset,
    models: dict[str, MLP],
    trained: dict[str, Any],
    alphas: np.ndarray,
    key: jax.Array,
    timer: Timer,
) -> dict[str, Any]:
    """Every trained network (per seed) probed by :func:`_probe`, in one compiled program."""
    arrays = (
        jnp.asarray(data.x_train[: settings.batch]),
        jnp.asarray(data.y_train[: settings.batch]),
        jnp.asarray(data.x_val),
        jnp.asarray(data.y_val),
    )
    keys = jax.random.split(key, settings.num_seeds)

    @jax.jit
    def probe_all(trained: dict[str, Any], keys: jax.Array) -> dict[str, Any]:
        return {
            name: jax.vmap(lambda p, k, m=models[name]: _probe(settings, arrays, alphas, m, p, k))(
                trained[name], keys
            )
            for name in models
        }

    out = timed(
        "landscape probes",
        probe_all,
        trained,
        keys,
        timer=timer,
        short=True,
    )
    return jax.tree.map(np.asarray, out)


def compute(config: Config, seed: int) -> LandscapeResult:
    """The basin map, then both networks trained (one program) and probed along directions;
    ``FULL`` settings (in quick mode ``QUICK``), random numbers from ``seed``, the data
    split with ``seed``."""
    settings: LandscapeSettings = config.pick(FULL, QUICK)
    timer = Timer()
    key = jax.random.key(seed)
    data = config.data(seed)
    starts, finals = _basins(settings, timer)
    to_min = np.linalg.norm(finals[:, None] - HIMMELBLAU_MINIMA[None], axis=-1)
    reached = np.where(to_min.min(1) < 0.1, to_min.argmin(1), -1)
    nearest = np.linalg.norm(starts[:, None] - HIMMELBLAU_MINIMA[None], axis=-1).argmin(1)

    models = {"shallow": MLP(settings.shallow), "deep": MLP(settings.deep)}
    seed0 = int(np.asarray(jax.random.key_data(key)).ravel()[-1]) % (2**31)
    seeds = tuple(seed0 + i for i in range(settings.num_seeds))
    steps = settings.epochs * (len(data.x_train) // 64)
    runs = {name: TrainRun(jl.adam, (1e-3,), m) for name, m in models.items()}
    fitted = fit_mlps(runs, data, steps=steps, seeds=seeds, timer=timer, short=True)
    trained = {name: jax.tree.map(lambda a: a[0, :, -1], f.params) for name, f in fitted.items()}
    alphas = np.linspace(-settings.alpha, settings.alpha, settings.num_alphas, dtype=np.float32)
    out = _probe_all(settings, data, models, trained, alphas, key, timer)
    curves = {k: np.asarray(v[0], np.float64) for k, v in out.items()}
    rough = {k: roughness(v) for k, v in curves.items()}
    ok = reached >= 0
    config.advance(1)
    return LandscapeResult(
        starts=starts,
        reached=reached,
        nearest=nearest,
        fraction_nearest=float(np.mean(reached == nearest)),
        fraction_converged=float(np.mean(ok)),
        alphas=alphas,
        curves=curves,
        surfaces={k: np.asarray(v[1][0], np.float64) for k, v in out.items()},  # seed 0
        roughness={k: v[0] for k, v in rough.items()},
        local_minima={k: v[1] for k, v in rough.items()},
        rise={k: v[..., [0, -1]].mean(-1) - v[..., len(alphas) // 2] for k, v in curves.items()},
        train_loss={k: np.asarray(v[2], np.float64) for k, v in out.items()},
        val_acc={k: np.asarray(v[3], np.float64) for k, v in out.items()},
        depths={k: len(m.hidden) for k, m in models.items()},
        settings=settings,
        timings=tuple(timer.timings),
    )


DEPTH_COLORS = {"shallow": "#1f77b4", "deep": "#d62728"}


def _basin_map(ax: Any, result: LandscapeResult, cmap: Any) -> None:
    """The Himmelblau minimum reached from each start, with the nearest-minimum borders."""
    n = round(np.sqrt(len(result.starts)))
    side = result.starts[:n, 0]
    ax.pcolormesh(side, side, result.reached.reshape(n, n) + 1, cmap=cmap, vmin=-0.5, vmax=4.5)
    ax.contour(
        side,
        side,
        result.nearest.reshape(n, n),
        levels=[0.5, 1.5, 2.5],
        colors="k",
        linewidths=1.2,
        linestyles="--",
    )
    ax.plot(*HIMMELBLAU_MINIMA.T, "w*", markersize=14, markeredgecolor="k", label="minima")
    ax.set_aspect("equal")
    ax.set(
        title=f"Minimum reached from each start (Himmelblau)\n{result.fraction_nearest:.0%} "
        "reach the nearest (dashed: nearest-minimum borders)",
        xlabel="x",
        ylabel="y",
    )
    ax.legend(loc="lower left")


def _direction_curves(ax: Any, result: LandscapeResult) -> None:
    """The training loss along each filter-normalized direction, one colour per depth."""
    for name, curves in result.curves.items():
        flat = curves.reshape(-1, curves.shape[-1])
        for i, c in enumerate(flat):
            ax.plot(
                result.alphas,
                c,
                color=DEPTH_COLORS[name],
                alpha=0.6,
                label=f"{name} ({result.depths[name]} hidden layers)" if i == 0 else None,
            )
    ax.set_yscale("log")
    ax.set(
        title="Training loss along filter-normalized directions",
        xlabel=r"$\alpha$ in $L(\theta + \alpha d)$",
        ylabel="cross-entropy (log)",
    )
    ax.legend()


def _surface(ax: Any, result: LandscapeResult, name: str) -> None:
    """The log10 loss of one network on its 2-D filter-normalized slice, with its roughness."""
    s = result.surfaces[name]
    grid = np.linspace(result.alphas[0], result.alphas[-1], s.shape[0])
    cs = ax.contour(grid, grid, np.log10(s), levels=20, cmap="viridis")
    ax.clabel(cs, fontsize=7, fmt="%.1f")
    ax.plot(0, 0, "r+", markersize=12)
    ax.set_aspect("equal")
    ax.set(
        title=f"{name}: log10 loss on a 2-D filter-normalized slice\nroughness "
        f"{result.roughness[name].mean():.2f} (1 = a single valley)",
        xlabel=r"$\alpha$",
        ylabel=r"$\beta$",
    )


def figure(result: LandscapeResult) -> Figure:
    """Basin map; loss curves along filter-normalized directions; the two 2-D surfaces."""
    plt = figures.pyplot()
    panels = 4 if result.surfaces["deep"].size else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 5))
    _basin_map(axes[0], result, plt.get_cmap("tab10", 5))
    _direction_curves(axes[1], result)
    for ax, name in zip(axes[2:], ("shallow", "deep")[: panels - 2], strict=True):
        _surface(ax, result, name)
    fig.suptitle('"Gradient descent can only discover minima that are close to the initial values"')
    fig.tight_layout()
    return Figure("landscape.png", fig)


def claims(result: LandscapeResult) -> list[Claim]:
    """Nearest-minimum fraction of the basin map; the deep network's roughness over the shallow."""
    rs, rd = result.roughness["shallow"], result.roughness["deep"]
    ms, md = result.local_minima["shallow"], result.local_minima["deep"]
    return [
        Claim(
            claim="Gradient Descent can only discover minima that are close to the initial values",
            held=bool(result.fraction_nearest > 0.5),
            measured=f"{result.fraction_nearest:.1%} of {len(result.starts)} starts on "
            f"Himmelblau's function reach the minimum nearest to the start "
            f"({result.fraction_converged:.1%} converged to some minimum); 25% if the start "
            "did not matter",
            rule="more than half of the starts reach the minimum nearest to them",
        ),
        Claim(
            claim="With deeper networks, the 'surface' can be even rougher",
            held=bool(rd.mean() > rs.mean()),
            measured=f"roughness (total variation / single-valley variation, 1 = smooth valley) "
            f"along {rs.shape[-1]} filter-normalized directions x {rs.shape[0]} seeds: "
            f"{result.depths['deep']} hidden layers {rd.mean():.3f} (max {rd.max():.3f}), "
            f"{result.depths['shallow']} hidden layer {rs.mean():.3f} (max {rs.max():.3f}); "
            f"local minima per curve {md.mean():.2f} vs {ms.mean():.2f}; sharpness (rise of "
            f"the loss from alpha 0 to +-{result.alphas[-1]:g}): "
            f"{result.rise['deep'].mean():.3g} vs "
            f"{result.rise['shallow'].mean():.3g}; "
            "trained to training "
            f"loss {result.train_loss['deep'].mean():.3g} vs "
            f"{result.train_loss['shallow'].mean():.3g}",
            rule="mean roughness of the deep network's curves above the shallow one's",
        ),
    ]


def summarize(result: LandscapeResult) -> Summary:
    """Headlines, every field of the result (the numbers behind the figure), the settings."""
    return Summary(
        headlines=[
            ("starts reaching the nearest minimum", f"{result.fraction_nearest:.1%}"),
            (
                "roughness deep / shallow",
                f"{result.roughness['deep'].mean():.3f} / {result.roughness['shallow'].mean():.3f}",
            ),
        ],
        numbers=numbers_of(result),
        settings=asdict(result.settings),
    )


EXPERIMENT = Experiment(
    name="landscape",
    title="Initial values: basins of attraction and rougher surfaces with depth",
    section="Problem: initial values of the parameters",
    summary="gradient descent from a grid of starts on Himmelblau's function; the loss along "
    "filter-normalized random directions, shallow vs deep MLP",
    stages=1,
    compute=compute,
    figure=figure,
    claims=claims,
    summarize=summarize,
)
