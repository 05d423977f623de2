"""``one_loop(tx)``: any transformation's step as one loop under XLA:CPU multi-output fusion.

A transform's equations read the gradient and the old state and write the update and the new state.
Written as equations, the outputs share intermediate arrays (Adam's update divides the *new*
moments), and XLA:CPU emits a loop per shared array: the step reads and writes the large arrays
several times. XLA's multi-output fusion, which merges loops that read the same inputs into one,
cannot merge a producer with its consumer. This wrapper gives it siblings: each output group is
computed by a copy of the whole transform whose array inputs are multiplied by a 1 that XLA cannot
see through, so common-subexpression elimination cannot merge the copies back and every output
becomes a loop over the step's inputs alone. The wrapped transform's own code is untouched.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxopt_lectures.xla_options import cpu_multi_output_fusion_enabled

__all__ = ["one_loop"]


def _output_groups(updates: Any, state: Any) -> list[list[int]]:
    """The flat indices of ``state``'s leaves, grouped: one group per subtree shaped like the
    updates (Adam's ``mu``, ``nu``) and one per other array leaf; scalar leaves are left out."""
    shape_of_updates = jax.tree.structure(updates)

    def like_updates(x: Any) -> bool:
        return bool(jax.tree.structure(x) == shape_of_updates)  # type: ignore[operator]

    parts = jax.tree.leaves(state, is_leaf=like_updates)
    groups, start = [], 0
    for part in parts:
        leaves = jax.tree.leaves(part)
        if any(jnp.ndim(leaf) > 0 for leaf in leaves):
            groups.append(list(range(start, start + len(leaves))))
        start += len(leaves)
    return groups


def _opaque_copy(tree: Any, copy: int) -> Any:
    """``tree`` with every array leaf multiplied by a 1 that XLA cannot see through.

    The 1 comes out of ``jax.lax.optimization_barrier``, stacked with the copy's number so that the
    1s of different copies are different computations and are not merged with one another.
    """
    one = jax.lax.optimization_barrier(jnp.asarray([1.0, copy], jnp.float32))[0]

    def leaf(x: Any) -> Any:
        if not isinstance(x, jax.Array) or x.ndim == 0 or not jnp.issubdtype(x.dtype, jnp.number):
            return x
        return x * one.astype(x.dtype)

    return jax.tree.map(leaf, tree)


def _pays_off() -> bool:
    """Whether the copies pay off: JAX computes on the CPU and XLA:CPU's multi-output fusion is
    asked for in ``XLA_FLAGS`` (read when the step is traced)."""
    return jax.default_backend() == "cpu" and cpu_multi_output_fusion_enabled()


def one_loop(
    tx: optax.GradientTransformation, *, enabled: bool | None = None
) -> optax.GradientTransformationExtraArgs:
    r"""``tx`` with each output computed from its own copy of the inputs: one loop on XLA:CPU.

    The result has ``tx``'s ``init`` and state structure and gives ``tx``'s numbers: the update
    comes from ``tx`` itself, and each group of state arrays shaped like the parameters (a moment, a
    velocity) or other array in the state from a copy of ``tx.update`` whose array inputs
    (gradients, state, parameters) are multiplied by an opaque 1, which changes no value. The copies
    evaluate the same operations on the same values; only the way LLVM contracts a multiply and an
    add into a fused multiply-add may differ in a merged loop, so results agree to a few float32
    ulps, often bit for bit.

    When to use it: on CPU, for large leaves (a million entries and more), with XLA:CPU's
    multi-output fusion on (:func:`jaxopt_lectures.xla_options.use_cpu_multi_output_fusion`, or
    ``XLA_FLAGS=--xla_backend_extra_options=xla_cpu_use_multi_output_fusion`` before JAX starts).
    Then the donated step (``update`` and ``optax.apply_updates`` in one ``jax.jit``) of Adam, NAG,
    AdaGrad, RMSprop, AdaDelta, ours or optax's, is a single loop that reads and writes each array
    once. The cost is compile time: the traced program holds one more copy of the transform per
    state group (two more for Adam) until XLA removes what a copy does not output.

    Elsewhere it is a no-op: where the option is off, or JAX's default backend is not the CPU
    (GPUs fuse sibling loops by themselves), ``update`` is ``tx.update`` itself, the same traced
    program and the same numbers, because there the copies cost time (without the option each
    output loop rereads the inputs, and keeping the donated state in place can need extra
    buffers; ``docs/performance.md`` has the step and compile times in every configuration).
    The option is read from ``XLA_FLAGS`` when the step is traced; XLA reads it once, when JAX
    starts, so set it before the first computation.

    Works with any ``optax.GradientTransformation``: ours, optax's, ``optax.chain``,
    :func:`jaxopt_lectures.packed`, ``optax.inject_hyperparams``, inside ``optax.MultiSteps`` and
    ``optax.apply_if_finite``, under ``jax.jit``, ``jax.vmap`` and sharding. Scalar state (step
    counts, injected hyperparameters) is taken from ``tx`` itself. Extra arguments are passed on.

    Args:
      tx: the gradient transformation to wrap.
      enabled: ``None`` (the default) computes the copies where they pay off, as above; ``True``
        always, ``False`` never (for tests and measurements).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with ``tx.init`` and the same state.

    Example:
      >>> import jax, jax.numpy as jnp, optax, jaxopt_lectures as jl
      >>> tx = jl.one_loop(optax.adam(1e-3))
      >>> grads = jnp.array([1.0, -2.0, 0.5])
      >>> state = tx.init(jnp.zeros(3))  # optax.adam's init and state
      >>> updates, _ = jax.jit(tx.update)(grads, state)
      >>> plain, _ = optax.adam(1e-3).update(grads, state)
      >>> bool(jnp.allclose(updates, plain, rtol=1e-6, atol=0))
      True
    """
    if not isinstance(tx, optax.GradientTransformation):
        raise TypeError(f"one_loop: tx must be an optax.GradientTransformation, got {type(tx)}")
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"one_loop: enabled must be None, True or False, got {enabled!r}")
    inner = optax.with_extra_args_support(tx)

    def update_fn(
        updates: optax.Updates,
        state: optax.OptState,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, optax.OptState]:
        new_updates, new_state = inner.update(updates, state, params, **extra_args)
        if not (_pays_off() if enabled is None else enabled):
            return new_updates, new_state
        leaves, structure = jax.tree.flatten(new_state)
        for copy, group in enumerate(_output_groups(new_updates, new_state), start=1):
            inputs = _opaque_copy((updates, state, params), copy)
            _, copied_state = inner.update(*inputs, **extra_args)
            copied = jax.tree.leaves(copied_state)
            for i in group:
                leaves[i] = copied[i]
        return new_updates, jax.tree.unflatten(structure, leaves)

    return optax.GradientTransformationExtraArgs(inner.init, update_fn)
