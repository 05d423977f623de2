r"""Batch norm and curvature under Ghorbani et al.'s protocol: the Hessian's whole eigenvalue
spectrum with and without batch norm, and a curvature measure that does not depend on the scale.

Ghorbani, Krishnan and Xiao (2019, "An Investigation into Neural Net Optimization via Hessian
Eigenvalue Density") estimated the full spectral density of the Hessian by stochastic Lanczos
quadrature and found that, without batch norm, a few large isolated eigenvalues (outliers) sit far
from the bulk, and that batch norm removes them; they argue the outliers, not the scale of the
largest eigenvalue, are what slows optimization. The top eigenvalue alone is not a fair measure
with batch norm: the loss is then invariant to each layer's weight scale c, which divides the
Hessian by :math:`c^2`.

Here, on the batch-norm experiment's trained networks (3x100 sigmoid, SGD at rate 1, its last
checkpoint, every seed) and its fixed batch, with the training-mode loss: the spectral density
(:func:`jaxopt_lectures.curvature.hessian_spectrum`), and from its nodes and weights the
scale-invariant *outlier share* :math:`\lambda_{max}^2 / \mathrm{tr}(H^2)`, the share of the
Hessian's energy in its top eigenvalue (1 for a single outlier, about 1/d for a flat spectrum;
multiplying H by any c leaves it unchanged), with
:math:`\mathrm{tr}(H^2)/d \approx \frac1n \sum_{j,i} w_{j,i} \theta_{j,i}^2`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxopt_lectures import curvature
from jaxopt_lectures.experiments import figures
from jaxopt_lectures.experiments.api import Config, Figure, Numbers, numbers_of
from jaxopt_lectures.experiments.engine import Timer, Timing, cross_entropy, timed
from jaxopt_lectures.experiments.formatting import mean_std
from jaxopt_lectures.experiments.lecture import batch_norm
from jaxopt_lectures.experiments.record import Measurement

__all__ = [
    "FULL",
    "BnSpectrumResult",
    "BnSpectrumSettings",
    "compute",
    "figure",
    "measurement",
    "outlier_share",
]

PROTOCOL = (
    "Ghorbani et al. (2019): the Hessian's eigenvalue density by stochastic Lanczos quadrature "
    "with and without batch norm, and the scale-invariant outlier share lambda_max^2 / tr(H^2)"
)


@dataclass(frozen=True)
class BnSpectrumSettings:
    """Random probes and Lanczos steps per probe of the quadrature, points of the density grid."""

    num_probes: int = 1
    lanczos: int = 48
    grid_size: int = 400


FULL = BnSpectrumSettings()


class BnSpectrumResult(NamedTuple):
    """Per kind (without / with batch norm): per seed, the quadrature's nodes and weights, the
    smoothed density on its grid, the top eigenvalue, :math:`\\mathrm{tr}(H^2)/d` and the outlier
    share; the number of parameters d."""

    nodes: dict[str, np.ndarray]  # (seeds, probes, lanczos)
    weights: dict[str, np.ndarray]
    grid: dict[str, np.ndarray]  # (seeds, grid)
    density: dict[str, np.ndarray]
    top: dict[str, np.ndarray]  # (seeds,)
    second_moment: dict[str, np.ndarray]
    share: dict[str, np.ndarray]
    dimension: dict[str, int]
    step: int  # the checkpoint's training step
    settings: BnSpectrumSettings
    timings: tuple[Timing, ...]


def outlier_share(nodes: np.ndarray, weights: np.ndarray, dimension: int) -> np.ndarray:
    r""":math:`\lambda_{max}^2 / \mathrm{tr}(H^2)` from quadrature nodes and weights with leading
    axes ``(..., probes, steps)``: the largest node over the second moment times ``dimension``.

    Example:
      >>> import numpy as np
      >>> from jaxopt_lectures.experiments.lecture.bn_spectrum import outlier_share
      >>> # H = diag(10, 1, 1, 1): tr(H^2) = 103; exact nodes, weights 1/4 each (one probe)
      >>> nodes, w = np.array([[10.0, 1.0]]), np.array([[0.25, 0.75]])
      >>> round(float(outlier_share(nodes, w, 4)), 4)
      0.9709
    """
    top = np.max(nodes, axis=(-2, -1))
    m2 = np.mean(np.sum(weights * nodes**2, axis=-1), axis=-1)
    return top**2 / (dimension * m2)


def compute(config: Config, seed: int, base: batch_norm.BatchNormResult) -> BnSpectrumResult:
    """The spectrum of each model's last checkpoint at rate 1, every seed of ``base`` (the
    batch-norm experiment's result), on its Hessian batch; one program per model."""
    settings = FULL
    timer = Timer()
    data = config.data(seed)
    x = jax.device_put(data.x_train[: batch_norm.HESSIAN_BATCH])
    y = jax.device_put(data.y_train[: batch_norm.HESSIAN_BATCH])
    i1 = batch_norm.RATES.index(batch_norm.HESSIAN_RATE)
    out: dict[str, dict[str, Any]] = {}
    dims: dict[str, int] = {}
    for kind in batch_norm.KINDS:
        model = batch_norm.MODELS[kind]
        params, bn_state = jax.tree.map(lambda a: a[i1, :, -1], base.history[kind].checkpoints)

        def spectrum(point: tuple[Any, Any], model: Any = model) -> Any:
            p, state = point

            def loss(q: Any, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
                logits, _ = model.apply(q, state, batch[0], training=True)
                return cross_entropy(logits, batch[1])

            return curvature.hessian_spectrum(
                loss,
                p,
                (x, y),
                num_probes=settings.num_probes,
                num_iterations=settings.lanczos,
                key=jax.random.key(seed),
                grid_size=settings.grid_size,
                batch_size=1,
            )

        program = jax.jit(lambda points, f=spectrum: jax.lax.map(f, points))
        result = timed(f"spectrum ({kind} batch norm)", program, (params, bn_state), timer=timer)
        out[kind] = {k: np.asarray(v, np.float64) for k, v in result._asdict().items()}
        dims[kind] = int(ravel_pytree(jax.tree.map(lambda a: a[0], params))[0].size)
    second = {
        k: np.mean(np.sum(o["weights"] * o["nodes"] ** 2, axis=-1), axis=-1) for k, o in out.items()
    }
    steps = base.history["without"].checkpoint_steps
    return BnSpectrumResult(
        nodes={k: o["nodes"] for k, o in out.items()},
        weights={k: o["weights"] for k, o in out.items()},
        grid={k: o["grid"] for k, o in out.items()},
        density={k: o["density"] for k, o in out.items()},
        top={k: np.max(o["nodes"], axis=(-2, -1)) for k, o in out.items()},
        second_moment=second,
        share={k: outlier_share(o["nodes"], o["weights"], dims[k]) for k, o in out.items()},
        dimension=dims,
        step=int(steps[-1]) if steps is not None else -1,
        settings=settings,
        timings=tuple(timer.timings),
    )


def measurement(r: BnSpectrumResult) -> Measurement:
    """The smoother-loss claim by the outlier share, with and without batch norm."""
    with_bn, without = r.share["with"], r.share["without"]
    spread = float(max(with_bn.std(), without.std()))
    gap = float(without.mean() - with_bn.mean())
    return Measurement(
        protocol=PROTOCOL,
        held=bool(gap > spread),
        measured=f"at step {r.step} (rate 1), mean +- std over {len(with_bn)} seeds: outlier "
        f"share lambda_max^2 / tr(H^2) with BN {mean_std(with_bn)}, without "
        f"{mean_std(without)} (lower with BN by {gap:.3g} against a seed spread of "
        f"{spread:.2g}); lambda_max with BN {mean_std(r.top['with'])}, without "
        f"{mean_std(r.top['without'])}; RMS eigenvalue sqrt(tr(H^2)/d) with BN "
        f"{mean_std(np.sqrt(r.second_moment['with']))}, without "
        f"{mean_std(np.sqrt(r.second_moment['without']))}",
        rule="the mean outlier share is lower with batch norm by more than the seed spread (the "
        "larger std of the two)",
    )


def numbers(r: BnSpectrumResult) -> dict[str, Numbers]:
    """Every field but the settings and timings, with the settings under ``settings``."""
    return {**numbers_of(r), "settings": asdict(r.settings)}


FLOOR = 1e-6  # the density plots' lower limit (log scale)


def figure(r: BnSpectrumResult) -> Figure:
    """The density of each model (seed 0), in the Hessian's units and in units of its RMS
    eigenvalue, and the outlier share per seed."""
    plt = figures.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    for kind in batch_norm.KINDS:
        color = batch_norm.COLORS[kind]
        grid, density = r.grid[kind][0], r.density[kind][0]
        rms = float(np.sqrt(r.second_moment[kind][0]))
        axes[0].plot(grid, density, color=color, label=f"{kind} batch norm")
        axes[1].plot(grid / rms, density * rms, color=color, label=f"{kind} batch norm")
        for ax, scale in ((axes[0], 1.0), (axes[1], rms)):
            ax.plot(r.top[kind][0] / scale, FLOOR, "^", color=color, ms=12, clip_on=False)
    for ax, title, xlabel in (
        (axes[0], "Hessian eigenvalue density (seed 0)", "eigenvalue"),
        (axes[1], "The same in units of the RMS eigenvalue", r"eigenvalue / $\sqrt{tr(H^2)/d}$"),
    ):
        ax.set_yscale("log")
        ax.set_ylim(bottom=FLOOR)
        ax.set(title=title + "\n(triangles: lambda_max)", xlabel=xlabel, ylabel="density (log)")
        ax.legend()
    ax = axes[2]
    for i, kind in enumerate(batch_norm.KINDS):
        s = r.share[kind]
        ax.scatter(np.full(len(s), i), s, s=60, color=batch_norm.COLORS[kind], zorder=3)
        ax.bar(i, s.mean(), color=batch_norm.COLORS[kind], alpha=0.4)
    ax.set_xticks(range(len(batch_norm.KINDS)), [f"{k} BN" for k in batch_norm.KINDS])
    ax.set(
        title="Outlier share lambda_max^2 / tr(H^2)\n(scale-invariant; dots: seeds)",
        ylabel="share of the Hessian's energy",
    )
    fig.suptitle(
        f"Ghorbani et al.'s protocol: the Hessian's spectrum at step {r.step} (3x100 sigmoid, "
        "SGD rate 1)"
    )
    fig.tight_layout()
    return Figure("batch_norm_spectrum.png", fig)
