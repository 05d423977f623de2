"""The curvature of a flax nnx model on the digits, with and without batch normalization.

    python examples/flax_curvature.py                      # train both, print the measures
    python examples/flax_curvature.py --plot curv.png      # and draw spectra and 2-D slices

Two flax nnx MLPs, 64-100-100-10 with sigmoid units (Ioffe and Szegedy's setting, the lecture's
batch-norm claim), one with ``nnx.BatchNorm`` before each sigmoid, are trained with plain SGD
(``jl.sgd``); then ``jl.curvature`` looks at the training-mode loss (batch statistics, as the
optimizer sees it) on a fixed batch of 512 training examples:

- the largest and smallest Hessian eigenvalues (Lanczos) and Li et al.'s non-convexity ratio;
- the trace (Hutchinson, with its standard error);
- the eigenvalue density (stochastic Lanczos quadrature);
- a 2-D slice along two filter-normalized directions;
- Santurkar et al.'s effective beta-smoothness along the gradient.

The parameters are the nnx ``Param`` state; the batch statistics are closed over, so the Hessian
is taken with respect to the parameters only. Needs flax and scikit-learn
(``pip install "jaxopt_lectures[experiments,curvature]" flax``); matplotlib for ``--plot``.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxopt_lectures as jl


class MLP(nnx.Module):
    """Dense layers with sigmoid units, optionally batch-normalized before each sigmoid."""

    def __init__(self, sizes: list[int], batch_norm: bool, rngs: nnx.Rngs) -> None:
        pairs = list(itertools.pairwise(sizes))
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in pairs])
        self.norms = nnx.List(
            [nnx.BatchNorm(b, rngs=rngs) if batch_norm else None for _, b in pairs[:-1]]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        for linear, norm in zip(self.layers[:-1], self.norms, strict=True):
            x = linear(x)
            x = nnx.sigmoid(norm(x) if norm is not None else x)
        return self.layers[-1](x)


def digits(seed: int = 0) -> tuple[np.ndarray, ...]:
    """The 8x8 digits, standardized, split into 1,437 training and 360 validation examples."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order].astype(np.float32), y[order].astype(np.int32)
    x = (x - x[:1437].mean(0)) / (x[:1437].std(0) + 1e-6)
    return x[:1437], y[:1437], x[1437:], y[1437:]


def train(batch_norm: bool, data: tuple[np.ndarray, ...], steps: int, lr: float) -> Any:
    """SGD on mini-batches of 64; returns (graphdef, params, batch statistics, val accuracy)."""
    x_train, y_train, x_val, y_val = data
    model = MLP([64, 100, 100, 10], batch_norm, nnx.Rngs(0))
    graphdef, params, stats = nnx.split(model, nnx.Param, ...)
    tx = jl.sgd(lr)

    def forward(params: Any, stats: Any, x: jax.Array, training: bool) -> Any:
        model = nnx.merge(graphdef, params, stats, copy=True)  # fresh variables in this trace
        model.train() if training else model.eval()
        return model(x), nnx.state(model, nnx.BatchStat)

    @jax.jit
    def step(params: Any, stats: Any, opt_state: Any, x: jax.Array, y: jax.Array) -> Any:
        def loss(p: Any) -> Any:
            logits, new_stats = forward(p, stats, x, True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new_stats

        grads, new_stats = jax.grad(loss, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_stats or stats, opt_state

    opt_state = tx.init(params)
    rng = np.random.default_rng(1)
    for _ in range(steps):
        idx = rng.choice(len(x_train), 64, replace=False)
        params, stats, opt_state = step(params, stats, opt_state, x_train[idx], y_train[idx])
    logits, _ = jax.jit(forward, static_argnums=3)(params, stats, x_val, False)
    accuracy = float(jnp.mean(jnp.argmax(logits, -1) == y_val))
    return graphdef, params, stats, accuracy


def measure(graphdef: Any, params: Any, stats: Any, batch: tuple[Any, Any]) -> dict[str, Any]:
    """jl.curvature's measures of the training-mode loss on ``batch``, in one compiled program."""

    def loss_fn(params: Any, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
        model = nnx.merge(graphdef, params, stats, copy=True)  # fresh variables in this trace
        model.train()  # batch statistics: the loss the optimizer sees
        return optax.softmax_cross_entropy_with_integer_labels(model(batch[0]), batch[1]).mean()

    key = jax.random.key(0)
    alphas = jnp.linspace(-1.0, 1.0, 25)

    @jax.jit
    def all_measures(params: Any) -> dict[str, Any]:
        k1, k2, k3 = jax.random.split(key, 3)
        values, _ = jl.curvature.hessian_eigenvalues(
            loss_fn, params, batch, k=1, which="both", key=k1, num_iterations=40
        )
        trace, trace_se = jl.curvature.hessian_trace(
            loss_fn, params, batch, num_samples=50, key=k2, batch_size=10
        )
        spectrum = jl.curvature.hessian_spectrum(
            loss_fn, params, batch, num_probes=4, num_iterations=40, key=k3
        )
        d1 = jl.curvature.filter_normalized_direction(jax.random.fold_in(key, 1), params)
        d2 = jl.curvature.filter_normalized_direction(jax.random.fold_in(key, 2), params)
        plane = jl.curvature.loss_slice(loss_fn, params, batch, (d1, d2), alphas)
        smooth = jl.curvature.smoothness_along_gradient(
            loss_fn, params, batch, jnp.array([0.25, 0.5, 1.0, 2.0])
        )
        return {
            "lambda_max": values[0],
            "lambda_min": values[1],
            "trace": trace,
            "trace_se": trace_se,
            "spectrum": spectrum,
            "plane": plane,
            "beta": smooth.beta_smoothness,
        }

    out = all_measures(params)
    out["alphas"] = alphas
    return out


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, r in results.items():
        s = r["spectrum"]
        axes[0].semilogy(s.grid, np.maximum(s.density, 1e-8), label=name)
    axes[0].set(xlabel="eigenvalue", ylabel="density (log scale)", title="Hessian spectrum (SLQ)")
    axes[0].legend()
    for ax, (name, r) in zip(axes[1:], results.items(), strict=True):
        a = np.asarray(r["alphas"])
        contour = ax.contourf(a, a, np.log10(np.asarray(r["plane"])), levels=20)
        fig.colorbar(contour, ax=ax, label="log10 loss")
        ax.set(title=f"{name}: 2-D filter-normalized slice", xlabel="alpha", ylabel="beta")
    fig.tight_layout()
    fig.savefig(path)
    print(f"saved {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="SGD steps per model")
    parser.add_argument("--lr", type=float, default=0.5, help="SGD learning rate")
    parser.add_argument("--plot", type=Path, default=None, help="save a figure to this file")
    args = parser.parse_args()
    data = digits()
    batch = (jnp.asarray(data[0][:512]), jnp.asarray(data[1][:512]))
    results = {}
    print(f"{'model':<14} {'val acc':>7} {'lambda_max':>10} {'lambda_min':>10} "
          f"{'|min/max|':>9} {'trace':>16} {'beta_eff':>8}")  # fmt: skip
    for name, batch_norm in (("no batch norm", False), ("batch norm", True)):
        graphdef, params, stats, accuracy = train(batch_norm, data, args.steps, args.lr)
        r = measure(graphdef, params, stats, batch)
        results[name] = r
        lmax, lmin = float(r["lambda_max"]), float(r["lambda_min"])
        trace = f"{float(r['trace']):.2f} +- {2 * float(r['trace_se']):.2f}"
        print(f"{name:<14} {accuracy:>7.3f} {lmax:>10.3f} {lmin:>10.3f} "
              f"{abs(lmin / lmax):>9.3f} {trace:>16} {float(r['beta']):>8.3f}")  # fmt: skip
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
