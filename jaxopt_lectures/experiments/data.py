"""Data for the experiments: scikit-learn's bundled digits by default, or any ``(X, y)`` arrays.

The lecture splits the data set D into a training set and a validation set (and keeps a test set
apart to measure the final choice). Inputs are standardized with the *training* set's statistics,
the lecture's input normalization, using the library's streaming normalizer
(:func:`jaxopt_lectures.nn.normalizer_fit` and :func:`jaxopt_lectures.nn.normalize`). The digits'
border pixels are always 0 in training, so the standard deviation is floored (at 1 pixel unit for
the digits) instead of dividing a rare non-zero test pixel by sqrt(eps).
"""

from __future__ import annotations

import hashlib
import os
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

import jaxopt_lectures as jl
from jaxopt_lectures.experiments._deps import require

# The training statistics in one compiled program per data shape: run op by op, the fit compiles
# a small program for each of its reductions, and the numbers are the same bit for bit.
_fit_normalizer = jax.jit(jl.nn.normalizer_fit)

__all__ = ["Dataset", "content_hash", "digits", "digits_arrays", "load_npz", "make_dataset"]

NPZ_FORMAT = (
    "give an .npz file with arrays X (n, features) and y (n,) of class labels, as written by "
    "np.savez(path, X=X, y=y)"
)


class Dataset(NamedTuple):
    """A train/validation/test split of a classification data set (NumPy arrays).

    ``x_*`` are float32 of shape ``(n, features)``; ``y_*`` int32 class labels in
    ``[0, num_classes)``. ``name`` says where the data came from (``"digits"`` or
    ``"user:<hash>"``), so that stored results can tell whether they were made on the same data.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    name: str
    standardized: bool

    @property
    def num_features(self) -> int:
        """The number of input components."""
        return int(self.x_train.shape[1])

    def describe(self) -> str:
        """One line: the source, the split sizes and the preprocessing."""
        how = "standardized with the training statistics" if self.standardized else "raw"
        return (
            f"{self.name}: {len(self.x_train)} train / {len(self.x_val)} validation / "
            f"{len(self.x_test)} test examples, {self.num_features} features, "
            f"{self.num_classes} classes, {how}"
        )


def load_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The arrays ``X`` and ``y`` of an ``.npz`` file (``np.savez(path, X=X, y=y)``).

    Raises ``ValueError`` with a one-line message that names the file, what is wrong with it and
    the expected format when the file is missing, empty, not an ``.npz`` archive (a ``.npy``
    array, a text file), damaged (truncated, or its data corrupted: a zip error, a failed
    checksum or decompression, an array shorter than its header says), lacks ``X`` or ``y``, or
    stores Python objects (which are never unpickled).

    Example:
      >>> import numpy as np, tempfile, os
      >>> from jaxopt_lectures.experiments.data import load_npz
      >>> path = os.path.join(tempfile.mkdtemp(), "d.npz")
      >>> np.savez(path, X=np.zeros((4, 2)), y=np.arange(4) % 2)
      >>> [a.shape for a in load_npz(path)]
      [(4, 2), (4,)]
    """
    try:
        archive = np.load(path, allow_pickle=False) if os.path.getsize(path) else None
    except OSError as err:
        raise ValueError(f"cannot read '{path}' ({err.strerror or err}); {NPZ_FORMAT}") from err
    except _DAMAGED as err:  # starts as a zip archive, but its directory is cut off or broken
        raise _damaged(path, err) from err
    except ValueError as err:  # not a NumPy file: NumPy would try to unpickle it
        raise ValueError(f"'{path}' is not an .npz archive; {NPZ_FORMAT}") from err
    if archive is None:
        raise ValueError(f"'{path}' is empty (0 bytes); {NPZ_FORMAT}")
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"'{path}' holds one array (.npy), not X and y; {NPZ_FORMAT}")
    with archive:
        absent = [k for k in ("X", "y") if k not in archive.files]
        if absent:
            raise ValueError(
                f"'{path}' has the arrays {archive.files} but no {' or '.join(absent)}; "
                f"{NPZ_FORMAT}"
            )
        try:
            return np.asarray(archive["X"]), np.asarray(archive["y"])
        except _DAMAGED as err:
            raise _damaged(path, err) from err
        except ValueError as err:
            if "allow_pickle" not in str(err):  # a header that does not match its data
                raise _damaged(path, err) from err
            raise ValueError(  # object arrays: never unpickled
                f"'{path}' stores Python objects, not numbers (X) and labels (y); {NPZ_FORMAT}"
            ) from err


# What reading a truncated or corrupted archive raises (besides ValueError): the zip directory
# or a member's checksum, a compressed stream, a member that ends before its data.
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError)


def _damaged(path: str | Path, err: Exception) -> ValueError:
    reason = " ".join(str(err).split())[:120] or type(err).__name__
    return ValueError(
        f"'{path}' is a damaged .npz archive, truncated or corrupted ({reason}); {NPZ_FORMAT}"
    )


def content_hash(X: np.ndarray, y: np.ndarray) -> str:
    """A hash of the data's content (values, shapes, dtypes, labels), to tell whether stored
    results were made on the same data. Renaming or re-saving the file does not change it.

    Example:
      >>> import numpy as np
      >>> from jaxopt_lectures.experiments.data import content_hash
      >>> a = content_hash(np.zeros((2, 2)), np.array([0, 1]))
      >>> a == content_hash(np.zeros((2, 2)), np.array([0, 1])), len(a)
      (True, 16)
      >>> a == content_hash(np.ones((2, 2)), np.array([0, 1]))
      False
    """
    digest = hashlib.sha256()
    for array in (np.asarray(X), np.asarray(y)):
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def _features(X: np.ndarray) -> np.ndarray:
    """``X`` as float32 ``(n, features)``, or ``ValueError`` saying what is wrong with it."""
    if X.ndim < 2:
        raise ValueError(f"make_dataset: X must be (n, features), got shape {X.shape}")
    if len(X) == 0:
        raise ValueError(f"make_dataset: X has no examples (shape {X.shape})")
    if X[0].size == 0:
        raise ValueError(f"make_dataset: X has no features (shape {X.shape})")
    if np.iscomplexobj(X):
        raise ValueError(
            "make_dataset: X is complex; give real numbers (for instance the real and imaginary "
            "parts as separate features)"
        )
    if X.dtype.kind not in "biuf":
        raise ValueError(f"make_dataset: X must hold numbers, got dtype {X.dtype}")
    X = X.reshape(len(X), -1)
    bad = int(np.sum(~np.isfinite(X)))
    if bad:
        raise ValueError(f"make_dataset: X has {bad} non-finite values (nan or inf)")
    limit = float(np.finfo(np.float32).max)
    if X.dtype.kind == "f" and np.max(np.abs(X)) > limit:
        raise ValueError(
            f"make_dataset: X has values beyond float32's range (|x| <= {limit:.3g}); rescale X"
        )
    return X.astype(np.float32)


def _labels(y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct labels and ``y`` re-coded as ``0 .. num_classes - 1``; ``ValueError`` when
    ``y`` does not look like class labels."""
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"make_dataset: y must be (n,) with n = {n}, got shape {y.shape}")
    if y.dtype.kind not in "biufUS":
        raise ValueError(f"make_dataset: y must hold class labels (ints or strings), got {y.dtype}")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y))):
        raise ValueError(
            "make_dataset: y must hold class labels (integers or strings), got non-integer "
            f"numbers such as {y[~(y == np.round(y))][:1]}: a continuous target is not a class"
        )
    classes, codes = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError("make_dataset: y needs at least two classes")
    if len(classes) > n // 2:
        raise ValueError(
            f"make_dataset: y has {len(classes)} distinct labels for {n} examples; class labels "
            "repeat (at least 2 examples per class on average), so y does not look like class "
            "labels"
        )
    return classes, codes.reshape(-1)


# Long for its docstring (28 of 68 lines: sources, split, example).
def make_dataset(
    X: np.ndarray,
    y: np.ndarray,
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    standardize: bool = True,
    min_std: float = 0.0,
    name: str | None = None,
) -> Dataset:
    """Shuffle, split into train/validation/test, and standardize with the training statistics.

    Args:
      X: inputs, shape ``(n, features)`` (anything else is flattened to that).
      y: class labels, shape ``(n,)``: integers, integral floats or strings; they are re-coded
        to ``0 .. num_classes - 1`` in sorted order. Non-integer numbers (a continuous target),
        a label per example, complex or non-finite ``X``, or values beyond float32 raise
        ``ValueError``.
      seed: the seed of the shuffle.
      fractions: the train, validation and test fractions; they must add up to 1.
      standardize: apply the lecture's input normalization, x_hat = (x - mu) / sigma, with the
        training set's mean and standard deviation (the validation and test sets reuse them).
      min_std: a floor on sigma, in the units of ``X`` (see :func:`jaxopt_lectures.nn.normalize`).
      name: a label for reports; defaults to ``"user:<hash of the arrays>"``.

    Returns:
      A :class:`Dataset`.

    Example:
      >>> import numpy as np
      >>> from jaxopt_lectures.experiments.data import make_dataset
      >>> X = np.arange(40.0).reshape(20, 2); y = np.arange(20) % 2
      >>> data = make_dataset(X, y, seed=0)
      >>> len(data.x_train), len(data.x_val), len(data.x_test), data.num_classes
      (12, 4, 4, 2)
      >>> bool(abs(data.x_train.mean()) < 1e-5)
      True
    """
    X = np.asarray(X)
    y = np.asarray(y)
    source = content_hash(X, y)
    X = _features(X)
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three numbers >= 0 adding up to 1, got {fractions}")
    classes, codes = _labels(y, len(X))
    name = name or f"user:{source[:12]}"
    order = np.random.default_rng(seed).permutation(len(X))
    X, codes = X[order], codes[order].astype(np.int32)
    n_train = round(fractions[0] * len(X))
    n_val = round(fractions[1] * len(X))
    if n_train < 2 or n_val < 1 or len(X) - n_train - n_val < 1:
        raise ValueError(f"make_dataset: {len(X)} examples are too few to split as {fractions}")
    if standardize:
        stats = _fit_normalizer(X[:n_train])  # the training set's mu and sigma^2 only
        X = np.asarray(jl.nn.normalize(stats, X, eps=0.0 if min_std > 0 else 1e-8, min_std=min_std))
    parts = np.split(X, [n_train, n_train + n_val])
    labels = np.split(codes, [n_train, n_train + n_val])
    return Dataset(
        x_train=parts[0],
        y_train=labels[0],
        x_val=parts[1],
        y_val=labels[1],
        x_test=parts[2],
        y_test=labels[2],
        num_classes=len(classes),
        name=name,
        standardized=standardize,
    )


def digits(*, seed: int = 0, standardize: bool = True) -> Dataset:
    """scikit-learn's bundled digits (1,797 8x8 images, 0-16 gray levels), split 60/20/20.

    Offline: the data ships inside scikit-learn. Standardized per pixel with the training set's
    statistics and the standard deviation floored at 1 gray level, unless ``standardize=False``.
    """
    X, y = digits_arrays()
    return make_dataset(X, y, seed=seed, standardize=standardize, min_std=1.0, name="digits")


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits as they ship: ``X`` (1797, 64) gray levels, ``y`` (1797,)."""
    datasets = require("sklearn.datasets")
    X, y = datasets.load_digits(return_X_y=True)
    return np.asarray(X), np.asarray(y)
