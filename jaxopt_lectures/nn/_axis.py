"""Mapped axes: the one ``AxisName`` type of ``jl.nn`` and a clear error for an axis that is not
mapped where a function is called."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from jax import lax

__all__ = ["AxisName", "psum_count"]

AxisName = Hashable | tuple[Hashable, ...]


def psum_count(count: int, axis_name: AxisName, caller: str) -> Any:
    """``lax.psum(count, axis_name)``: the count over every device along ``axis_name``.

    It is the first collective that :func:`~jaxopt_lectures.nn.batch_norm` and the normalizer
    issue, so an ``axis_name`` that is not bound here (the function called outside
    ``shard_map``, ``pmap`` or a ``vmap`` with that ``axis_name``) gets a ``ValueError`` that says
    what to do, instead of JAX's ``NameError: unbound axis name``.
    """
    try:
        return lax.psum(count, axis_name)
    except NameError as err:
        raise ValueError(
            f"{caller}: axis_name={axis_name!r} is not a mapped axis here. Call {caller} inside "
            f"jax.shard_map, jax.pmap or jax.vmap(..., axis_name={axis_name!r}) over that axis "
            "to use the statistics of the whole, global batch, or pass axis_name=None for the "
            "local batch only."
        ) from err
