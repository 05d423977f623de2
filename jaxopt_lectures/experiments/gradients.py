"""Experiment 1, "vanishing or exploding gradients": sigma' <= 1/4, per-layer gradient norms of a
deep sigmoid MLP against ReLU (and tanh), and the deep linear network's lambda^k."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxopt_lectures as jl
from jaxopt_lectures.experiments import figures
from jaxopt_lectures.experiments.base import Claim, Context, Result, fmt
from jaxopt_lectures.experiments.engine import cross_entropy, timed

__all__ = ["run"]

ACTIVATIONS = ("sigmoid", "tanh", "relu")
DEPTH = 10
WIDTH = 64
EIGENVALUES = (1.1, 1.0, 0.9)


def _grad_norms(
    seeds: tuple[int, ...], x: np.ndarray, y: np.ndarray, num_classes: int
) -> dict[str, np.ndarray]:
    """Per-layer weight-gradient norms at initialization for every activation, one row per seed
    (layer 1 = next to the input); one compiled program, seeds ``vmap``-ed."""
    sizes = [x.shape[1], *([WIDTH] * DEPTH), num_classes]

    def norms(activation: str, seed: jax.Array) -> jax.Array:
        params, state = jl.nn.mlp_init(jax.random.key(seed), sizes, activation=activation)

        def loss(p: list, xb: jax.Array, yb: jax.Array) -> jax.Array:
            logits, _ = jl.nn.mlp_apply(p, state, xb, activation=activation, training=False)
            return cross_entropy(logits, yb)

        return jl.diagnostics.per_layer_grad_norms(loss, params, x, y, entry="w")

    @jax.jit
    def all_norms(seed_arr: jax.Array) -> dict[str, jax.Array]:
        return {a: jax.vmap(lambda s, a=a: norms(a, s))(seed_arr) for a in ACTIVATIONS}

    out = timed("gradient norms", all_norms, jnp.asarray(np.asarray(seeds, np.uint32)))
    return {a: np.asarray(v) for a, v in out.items()}


def run(ctx: Context) -> Result:
    """Measure where gradients vanish: the lecture's "the gradient contains a multiplicative term
    dg/dx which can be << 1.0, e.g. for the sigmoid", and "any lambda_i > 1 leads to explosion
    while any lambda_i < 1 leads to vanishing".

    Settings: an MLP with 10 hidden layers of 64 units on a batch of 256 standardized training
    digits, at initialization (Glorot for sigmoid and tanh, He for ReLU), 5 seeds (3 quick). The
    deep linear network is W = R diag(1.1, 1.0, 0.9) R^T with a random rotation R, x = (1, 1, 1).

    Measured: max sigma'; the Euclidean norm of each layer's weight gradient and the ratio of the
    output layer's norm to the first layer's; ``|e_i . W^k x|`` for k = 0..50.
    """
    data = ctx.data()
    seeds = ctx.seeds(full=5, quick=3)
    x, y = data.x_train[:256], data.y_train[:256]
    z = np.linspace(-8, 8, 401, dtype=np.float32)
    dsig = np.asarray(jl.diagnostics.sigmoid_derivative(jnp.asarray(z)))
    ctx.advance(1)

    norms = _grad_norms(seeds, x, y, data.num_classes)
    ctx.advance(1)
    ratio = {a: norms[a][:, -1] / norms[a][:, 0] for a in ACTIVATIONS}  # output / first layer
    per_layer = {  # geometric-mean shrink factor from one hidden layer to the one below it
        a: np.exp(np.mean(np.log(norms[a][:, 1:DEPTH] / norms[a][:, : DEPTH - 1]))) for a in norms
    }

    rng = np.random.default_rng(ctx.seed)
    R, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    W = (R * np.asarray(EIGENVALUES)) @ R.T
    x0 = np.ones(3, np.float32)
    ks = np.arange(0, 51)
    outputs = np.asarray(
        jax.vmap(lambda k: jl.diagnostics.deep_linear_network(jnp.asarray(W), x0, k))(
            jnp.asarray(ks)
        )
    )
    components = np.abs(outputs @ R)  # |e_i . W^k x|, one column per eigenvalue
    ctx.advance(1)

    plt = figures.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    ax = axes[0]
    ax.plot(z, np.asarray(jax.nn.sigmoid(z)), label=r"$\sigma(x)$", color="#1f77b4")
    ax.plot(z, dsig, label=r"$\sigma'(x)$", color="#d62728", linewidth=2)
    ax.axhline(0.25, color="k", linestyle="--", linewidth=1, label=r"$\max \sigma' = 1/4$")
    ax.set(title="The sigmoid's derivative is at most 1/4", xlabel="x", ylabel="value")
    ax.legend()
    ax = axes[1]
    layers = np.arange(1, DEPTH + 2)
    for a, color in zip(ACTIVATIONS, ("#d62728", "#ff7f0e", "#2ca02c"), strict=True):
        figures.band(ax, layers, norms[a], label=f"{a} (output/first {np.median(ratio[a]):.1e})")
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
        ax.plot(ks, components[:, i], label=rf"$\lambda = {lam:g}$: $\lambda^k$", linewidth=2)
    ax.set_yscale("log")
    ax.set(
        title=r"Deep linear network: $|e_i \cdot W^k x| = \lambda_i^k |e_i \cdot x|$",
        xlabel="depth k",
        ylabel=r"$|e_i \cdot W^k x|$",
    )
    ax.legend()
    fig.suptitle("Vanishing and exploding gradients")
    fig.tight_layout()
    name = figures.save(fig, ctx.figure_path("gradients.png"))
    ctx.advance(1)

    med = {a: float(np.median(ratio[a])) for a in ACTIVATIONS}
    claims = [
        Claim(
            claim="The sigmoid's derivative is at most 1/4",
            held=bool(abs(dsig.max() - 0.25) < 1e-6),
            measured=f"max sigma'(x) on [-8, 8] = {dsig.max():.6f}",
            rule="max of sigma' on a grid through 0 equals 0.25",
        ),
        Claim(
            claim="Gradients of a deep sigmoid network vanish toward the input; ReLU's do not",
            held=bool(np.all(ratio["sigmoid"] > 100) and np.all(ratio["relu"] < 10)),
            measured=(
                f"output/first-layer gradient-norm ratio: sigmoid {fmt(med['sigmoid'])} "
                f"(x{fmt(per_layer['sigmoid'])} per layer), tanh {fmt(med['tanh'])}, "
                f"ReLU {fmt(med['relu'])} (median of {len(seeds)} seeds)"
            ),
            rule="sigmoid ratio > 100 (two orders of magnitude) and ReLU ratio < 10, every seed",
        ),
        Claim(
            claim="Deep linear network: lambda > 1 explodes and lambda < 1 vanishes as lambda^k",
            held=bool(
                components[-1, 0] > 10 * components[0, 0]
                and components[-1, 2] < 0.1 * components[0, 2]
            ),
            measured=(
                f"after 50 layers the components along lambda = 1.1, 1.0, 0.9 changed by "
                f"{fmt(components[-1, 0] / components[0, 0])}, "
                f"{fmt(components[-1, 1] / components[0, 1])}, "
                f"{fmt(components[-1, 2] / components[0, 2])}"
                f" (1.1^50 = {1.1**50:.3g}, 0.9^50 = {0.9**50:.3g})"
            ),
            rule="growth > 10x for lambda = 1.1 and shrinkage > 10x for lambda = 0.9 after 50",
        ),
    ]
    return Result(
        numbers={
            "sigmoid_derivative_max": float(dsig.max()),
            "layers": layers.tolist(),
            "grad_norms": {a: norms[a] for a in ACTIVATIONS},
            "output_over_first_ratio": {a: ratio[a] for a in ACTIVATIONS},
            "output_over_first_ratio_median": med,
            "shrink_factor_per_layer": per_layer,
            "deep_linear": {
                "eigenvalues": list(EIGENVALUES),
                "k": ks.tolist(),
                "components": components.T,
            },
        },
        figures=[name],
        headlines=[
            ("max sigma'", f"{dsig.max():.4f}"),
            ("sigmoid: output / first-layer gradient norm", fmt(med["sigmoid"])),
            ("ReLU: output / first-layer gradient norm", fmt(med["relu"])),
            ("tanh: output / first-layer gradient norm", fmt(med["tanh"])),
        ],
        claims=claims,
        settings={"depth": DEPTH, "width": WIDTH, "batch": 256, "seeds": list(seeds)},
    )
