"""jl.curvature against PyTorch: the same MLP and data in float64, the Hessian from
``torch.func`` Hessian-vector products (forward-over-reverse, as PyHessian and curvlinops build
theirs): the top eigenvalue from Lanczos and Hutchinson's trace estimate with the same probes agree
to 1e-6 relative.

Marker ``peers``: skipped without PyTorch, except under CI (``CI=true``), where it must run.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import enable_x64
from test_curvature import mlp_loss, mlp_problem

import jaxopt_lectures as jl

pytestmark = [pytest.mark.peers, pytest.mark.integration]

torch: Any = None


@pytest.fixture(autouse=True, scope="module")
def _import_torch() -> None:
    global torch
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        import torch as module  # CI installs it: fail, do not skip, if it is missing
    else:
        module = pytest.importorskip("torch")
    torch = module


def torch_hessian(leaves: list[np.ndarray], names: list[tuple[int, str]], x: Any, y: Any) -> Any:
    """The dense Hessian of the MLP's loss in PyTorch: one ``torch.func`` Hessian-vector product
    per basis vector (vmapped), in the flattening order of the JAX parameters."""
    shapes = [leaf.shape for leaf in leaves]
    sizes = [leaf.size for leaf in leaves]
    xt, yt = torch.from_numpy(np.array(x)), torch.from_numpy(np.array(y))

    def loss(flat: Any) -> Any:
        parts = dict(zip(names, torch.split(flat, sizes), strict=True))
        h = xt
        layers = 1 + max(i for i, _ in names)
        for i in range(layers):
            w = parts[(i, "w")].reshape(shapes[names.index((i, "w"))])
            h = h @ w + parts[(i, "b")]
            if i < layers - 1:
                h = torch.tanh(h)
        return 0.5 * torch.mean(torch.sum((h - yt) ** 2, dim=-1))

    flat = torch.from_numpy(np.concatenate([leaf.ravel() for leaf in leaves]))

    def hvp(v: Any) -> Any:
        return torch.func.jvp(torch.func.grad(loss), (flat,), (v,))[1]

    return torch.func.vmap(hvp)(torch.eye(flat.numel(), dtype=torch.float64)).numpy()


def test_top_eigenvalue_and_trace_match_torch_func() -> None:
    with enable_x64():
        params, (x, y) = mlp_problem(jnp.float64, seed=7)
        paths = jax.tree_util.tree_leaves_with_path(params)
        names = [(path[0].idx, path[1].key) for path, _ in paths]
        leaves = [np.asarray(leaf) for _, leaf in paths]
        d = sum(leaf.size for leaf in leaves)
        key = jax.random.key(11)
        n = 50

        @jax.jit
        def ours(params: Any) -> Any:
            top, _ = jl.curvature.hessian_eigenvalues(
                mlp_loss, params, (x, y), k=1, key=key, num_iterations=80
            )
            return top[0], jl.curvature.hessian_trace(
                mlp_loss, params, (x, y), num_samples=n, key=key
            )

        top, (trace, se) = ours(params)
        # The probes hessian_trace documents: z_j = rademacher(k_j, (1, d)), k_j = split(key, n).
        probes = np.stack(
            [
                np.asarray(jax.random.rademacher(k, (1, d), jnp.float64))[0]
                for k in jax.random.split(key, n)
            ]
        )
    H = torch_hessian(leaves, names, x, y)
    np.testing.assert_allclose(H, H.T, atol=1e-12)
    np.testing.assert_allclose(float(top), np.linalg.eigvalsh(H)[-1], rtol=1e-6)
    theirs = np.mean(np.einsum("ni,ij,nj->n", probes, H, probes))
    np.testing.assert_allclose(float(trace), theirs, rtol=1e-6)
    assert abs(float(trace) - np.trace(H)) <= 3 * float(se)
