"""Vanishing or exploding gradients: sigma' <= 1/4, per-layer gradient norms of a
deep sigmoid MLP against ReLU (and tanh), and the deep linear network's lambda^k."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxopt_lectures as jl
from jaxopt_lectures.experiments import figures
from jaxopt_lectures.experiments.api import Claim, Config, Experiment, Figure, Summary, seeds
from jaxopt_lectures.experiments.engine import Timer, Timing, cross_entropy, timed
from jaxopt_lectures.experiments.formatting import fmt

__all__ = ["EXPERIMENT", "GradientsResult", "claims", "compute", "figure", "summarize"]

ACTIVATIONS = ("sigmoid", "tanh", "relu")
DEPTH = 10
WIDTH = 64
EIGENVALUES = (1.1, 1.0, 0.9)


def _grad_norms(
    seeds: tuple[int, ...],
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    timer: Timer,
    short: bool = False,
) -> dict[str, np.ndarray]:
    """Per-layer weight-gradient norms at initialization for every activation, one row per seed
    (layer 1 = next to the input); one compiled program (``short`` for a quick run: one
    forward and backward pass, so compiling is nearly all of its time).

    The three activations share one network of this shape: the (activation, seed) pairs are
    lanes of one ``vmap``, each lane selecting its activation and its initialization (He or
    Glorot, :meth:`~jaxopt_lectures.nn.MLPConfig.init_params`). A selection is exact, and the
    unselected activations get a zero gradient, so the numbers are those of three networks; XLA
    compiles the one network about a quarter faster than three (a ``lax.scan`` over the stacked
    hidden layers compiles slower still on the CPU, so the layers stay unrolled)."""
    mlps = [jl.nn.MLPConfig((WIDTH,) * DEPTH, a) for a in ACTIVATIONS]

    def norms(which: jax.Array, seed: jax.Array) -> jax.Array:
        def pick(*choices: jax.Array) -> jax.Array:  # choices[which]
            return jnp.select([which == i for i in range(len(choices))], choices)

        inits = [m.init_params(jax.random.key(seed), x.shape[1], num_classes)[0] for m in mlps]
        params = jax.tree.map(pick, *inits)

        def loss(p: list, xb: jax.Array, yb: jax.Array) -> jax.Array:
            h = xb  # jl.nn.mlp_apply's layers, g(h @ w + b), with the lane's activation g
            for layer in p[:-1]:
                z = h @ layer["w"] + layer["b"]
                h = pick(*(jl.nn.ACTIVATIONS[a](z) for a in ACTIVATIONS))
            return cross_entropy(h @ p[-1]["w"] + p[-1]["b"], yb)

        return jl.diagnostics.per_layer_grad_norms(loss, params, x, y, entry="w")

    @jax.jit
    def all_norms(seed_arr: jax.Array) -> dict[str, jax.Array]:
        n = len(seed_arr)
        which = jnp.repeat(jnp.arange(len(ACTIVATIONS)), n)  # lanes: activation-major
        out = jax.vmap(norms)(which, jnp.tile(seed_arr, len(ACTIVATIONS)))
        return {a: out[i * n : (i + 1) * n] for i, a in enumerate(ACTIVATIONS)}

    seed_arr = jnp.asarray(np.asarray(seeds, np.uint32))
    out = timed("gradient norms", all_norms, seed_arr, timer=timer, short=short)
    return {a: np.asarray(v) for a, v in out.items()}


class GradientsResult(NamedTuple):
    """Per-layer gradient norms at initialization (``norms[activation]``: seeds x layers, layer 1
    next to the input), sigma' on a grid, and the deep linear network's components."""

    seeds: tuple[int, ...]
    z: np.ndarray  # the grid of x for sigma(x)
    dsig: np.ndarray  # sigma'(z)
    norms: dict[str, np.ndarray]
    ks: np.ndarray  # depths k of the deep linear network
    components: np.ndarray  # |e_i . W^k x|, one column per eigenvalue
    timings: tuple[Timing, ...]

    @property
    def ratio(self) -> dict[str, np.ndarray]:
        """Output layer's gradient norm over the first layer's, per seed."""
        return {a: self.norms[a][:, -1] / self.norms[a][:, 0] for a in ACTIVATIONS}

    @property
    def median_ratio(self) -> dict[str, float]:
        """The median of :attr:`ratio` over the seeds."""
        return {a: float(np.median(r)) for a, r in self.ratio.items()}


def compute(config: Config, seed: int) -> GradientsResult:
    """Measure where gradients vanish: the lecture's "the gradient contains a multiplicative term
    dg/dx which can be << 1.0, e.g. for the sigmoid", and "any lambda_i > 1 leads to explosion
    while any lambda_i < 1 leads to vanishing".

    Settings: an MLP with 10 hidden layers of 64 units on a batch of 256 standardized training
    digits, at initialization (Glorot for sigmoid and tanh, He for ReLU), 5 seeds (3 quick). The
    deep linear network is W = R diag(1.1, 1.0, 0.9) R^T with a random rotation R, x = (1, 1, 1).

    Measured: max sigma'; the Euclidean norm of each layer's weight gradient and the ratio of the
    output layer's norm to the first layer's; ``|e_i . W^k x|`` for k = 0..50.
    """
    timer = Timer()
    data = config.data(seed)
    run_seeds = seeds(config, seed, full=5, quick=3)
    x, y = data.x_train[:256], data.y_train[:256]
    z = np.linspace(-8, 8, 401, dtype=np.float32)
    dsig = np.asarray(jax.jit(jl.diagnostics.sigmoid_derivative)(z))  # one program, not one per op
    config.advance(1)
    norms = _grad_norms(run_seeds, x, y, data.num_classes, timer, config.quick)
    config.advance(1)
    rng = np.random.default_rng(seed)
    R, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    W = (R * np.asarray(EIGENVALUES)) @ R.T
    x0 = np.ones(3, np.float32)
    ks = np.arange(0, 51)
    outputs = np.asarray(
        jax.jit(jax.vmap(jl.diagnostics.deep_linear_network, in_axes=(None, None, 0)))(W, x0, ks)
    )
    config.advance(1)
    return GradientsResult(run_seeds, z, dsig, norms, ks, np.abs(outputs @ R), tuple(timer.timings))


def _shrink_per_layer(r: GradientsResult) -> dict[str, float]:
    """Geometric-mean shrink factor from one hidden layer to the one below it."""
    return {
        a: float(np.exp(np.mean(np.log(n[:, 1:DEPTH] / n[:, : DEPTH - 1]))))
        for a, n in r.norms.items()
    }


def figure(r: GradientsResult) -> Figure:
    """sigma and sigma'; the gradient norm per layer; the deep linear network's lambda^k."""
    plt = figures.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    ax = axes[0]
    ax.plot(r.z, np.asarray(jax.nn.sigmoid(r.z)), label=r"$\sigma(x)$", color="#1f77b4")
    ax.plot(r.z, r.dsig, label=r"$\sigma'(x)$", color="#d62728", linewidth=2)
    ax.axhline(0.25, color="k", linestyle="--", linewidth=1, label=r"$\max \sigma' = 1/4$")
    ax.set(title="The sigmoid's derivative is at most 1/4", xlabel="x", ylabel="value")
    ax.legend()
    ax = axes[1]
    layers = np.arange(1, DEPTH + 2)
    median = r.median_ratio
    for a, color in zip(ACTIVATIONS, ("#d62728", "#ff7f0e", "#2ca02c"), strict=True):
        figures.band(ax, layers, r.norms[a], label=f"{a} (output/first {median[a]:.1e})")
        ax.lines[-1].set_color(color)
        ax.collections[-1].set_color(color)
    ax.set_yscale("log")
    ax.set(
        title=f"Gradient norm per layer at init ({DEPTH}x{WIDTH} MLP)",
        xlabel="layer (1 = next to the input, 11 = output)",
        ylabel=r"$\|\partial L / \partial W^{[l]}\|$",
    )
    ax.set_xticks(layers)
    ax.legend()
    ax = axes[2]
    for i, lam in enumerate(EIGENVALUES):
        ax.plot(r.ks, r.components[:, i], label=rf"$\lambda = {lam:g}$: $\lambda^k$", linewidth=2)
    ax.set_yscale("log")
    ax.set(
        title=r"Deep linear network: $|e_i \cdot W^k x| = \lambda_i^k |e_i \cdot x|$",
        xlabel="depth k",
        ylabel=r"$|e_i \cdot W^k x|$",
    )
    ax.legend()
    fig.suptitle("Vanishing and exploding gradients")
    fig.tight_layout()
    return Figure("gradients.png", fig)


def claims(r: GradientsResult) -> list[Claim]:
    """sigma' <= 1/4; sigmoid gradients vanish toward the input and ReLU's do not; lambda^k."""
    med, ratio, per_layer, c = r.median_ratio, r.ratio, _shrink_per_layer(r), r.components
    return [
        Claim(
            claim="The sigmoid's derivative is at most 1/4",
            held=bool(abs(r.dsig.max() - 0.25) < 1e-6),
            measured=f"max sigma'(x) on [-8, 8] = {r.dsig.max():.6f}",
            rule="max of sigma' on a grid through 0 equals 0.25",
        ),
        Claim(
            claim="Gradients of a deep sigmoid network vanish toward the input; ReLU's do not",
            held=bool(np.all(ratio["sigmoid"] > 100) and np.all(ratio["relu"] < 10)),
            measured=(
                f"output/first-layer gradient-norm ratio: sigmoid {fmt(med['sigmoid'])} "
                f"(x{fmt(per_layer['sigmoid'])} per layer), tanh {fmt(med['tanh'])}, "
                f"ReLU {fmt(med['relu'])} (median of {len(r.seeds)} seeds)"
            ),
            rule="sigmoid ratio > 100 (two orders of magnitude) and ReLU ratio < 10, every seed",
        ),
        Claim(
            claim="Deep linear network: lambda > 1 explodes and lambda < 1 vanishes as lambda^k",
            held=bool(c[-1, 0] > 10 * c[0, 0] and c[-1, 2] < 0.1 * c[0, 2]),
            measured=(
                f"after 50 layers the components along lambda = 1.1, 1.0, 0.9 changed by "
                f"{fmt(c[-1, 0] / c[0, 0])}, {fmt(c[-1, 1] / c[0, 1])}, "
                f"{fmt(c[-1, 2] / c[0, 2])} (1.1^50 = {1.1**50:.3g}, 0.9^50 = {0.9**50:.3g})"
            ),
            rule="growth > 10x for lambda = 1.1 and shrinkage > 10x for lambda = 0.9 after 50",
        ),
    ]


def summarize(r: GradientsResult) -> Summary:
    """Headlines, the numbers behind the figure, the settings."""
    med = r.median_ratio
    return Summary(
        headlines=[
            ("max sigma'", f"{r.dsig.max():.4f}"),
            ("sigmoid: output / first-layer gradient norm", fmt(med["sigmoid"])),
            ("ReLU: output / first-layer gradient norm", fmt(med["relu"])),
            ("tanh: output / first-layer gradient norm", fmt(med["tanh"])),
        ],
        numbers={
            "sigmoid_derivative_max": float(r.dsig.max()),
            "layers": np.arange(1, DEPTH + 2),
            "grad_norms": r.norms,
            "output_over_first_ratio": r.ratio,
            "output_over_first_ratio_median": med,
            "shrink_factor_per_layer": _shrink_per_layer(r),
            "deep_linear": {
                "eigenvalues": list(EIGENVALUES),
                "k": r.ks,
                "components": r.components.T,
            },
        },
        settings={"depth": DEPTH, "width": WIDTH, "batch": 256, "seeds": list(r.seeds)},
    )


EXPERIMENT = Experiment(
    name="gradients",
    title="Vanishing and exploding gradients",
    section="Problem: vanishing or exploding gradients",
    summary="sigma' <= 1/4; per-layer gradient norms of a deep sigmoid vs ReLU MLP; "
    "the deep linear network's lambda^k",
    stages=3,
    compute=compute,
    figure=figure,
    claims=claims,
    summarize=summarize,
)
