"""Validation of hyperparameters at construction time.

Python and NumPy numbers are checked when a transform is built, so that a typo fails at once with
a message naming the argument and its allowed range. JAX arrays pass through unchecked: inside
``optax.inject_hyperparams`` or ``jax.jit`` they are tracers whose values are unknown, and
checking a concrete device array would force a host synchronisation on every step.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _kind(value: Any) -> str:
    return type(value).__name__


def _as_python_number(name: str, value: Any) -> float | None:
    """Return ``value`` as a float, ``None`` for a JAX array, or raise for a wrong type."""
    if isinstance(value, jax.Array):
        if value.ndim != 0:
            raise ValueError(f"{name} must be a scalar, got an array of shape {value.shape}")
        return None
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be a real number, got the bool {value!r}")
    if isinstance(value, np.ndarray):
        if value.ndim != 0:
            raise ValueError(f"{name} must be a scalar, got an array of shape {value.shape}")
        value = value[()]
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{name} must be finite, got {number}")
        return number
    raise ValueError(f"{name} must be a real number, got {value!r} of type {_kind(value)}")


def check_non_negative(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number >= 0 (or a JAX array)."""
    number = _as_python_number(name, value)
    if number is not None and number < 0:
        raise ValueError(f"{name} must be >= 0, got {number}")


def check_positive(name: str, value: Any, why: str = "") -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number > 0 (or a JAX array)."""
    number = _as_python_number(name, value)
    if number is not None and number <= 0:
        raise ValueError(f"{name} must be > 0{why}, got {number}")


def check_unit_interval(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` lies in [0, 1) (or is a JAX array).

    Every decay of an exponential moving average lives here: 1 would freeze the average at its
    initial value forever, and anything outside [0, 1) makes it diverge or oscillate.
    """
    number = _as_python_number(name, value)
    if number is not None and not 0.0 <= number < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {number}")


def check_learning_rate(value: Any, name: str = "learning_rate") -> None:
    """A learning rate is a number >= 0 or a schedule (a callable of the step count)."""
    if callable(value) and not isinstance(value, jax.Array):
        return
    check_non_negative(name, value)


def check_bool(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is a Python bool."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r} of type {_kind(value)}")


def check_dtype(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is ``None`` or names a floating-point or complex dtype.

    (optax's tests store a complex64 first moment for bf16 parameters, so complex is allowed.)
    """
    if value is None:
        return
    try:
        dtype = jnp.dtype(value)
    except TypeError as err:
        raise ValueError(
            f"{name} must be None or a floating-point or complex dtype, got {value!r}"
        ) from err
    if not jnp.issubdtype(dtype, jnp.inexact):
        raise ValueError(f"{name} must be None or a floating-point or complex dtype, got {dtype}")


def check_int(name: str, value: Any, minimum: int = 1) -> None:
    """Raise ``ValueError`` unless ``value`` is a Python or NumPy int (not a bool) >= ``minimum``.

    Counts (steps, epochs, layers, iterations, features) are static: they fix shapes and loop
    lengths, so a JAX array is not accepted here.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        kind = _kind(value)
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r} of type {kind}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
