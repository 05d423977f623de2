"""What the experiments' data loader accepts, re-codes and refuses (with a message saying why)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from jaxopt_lectures.experiments.data import make_dataset


def test_string_labels_are_recoded() -> None:
    rng = np.random.default_rng(0)
    y = np.array(["cat", "dog", "eel"] * 20)
    data = make_dataset(rng.normal(size=(60, 3)), y, seed=0)
    assert data.num_classes == 3
    assert set(np.unique(data.y_train)) <= {0, 1, 2}


@pytest.mark.parametrize(
    ("X", "y", "match"),
    [
        (np.ones((20, 2)) + 1j, np.arange(20) % 2, "complex"),
        (np.ones((20, 2)), np.linspace(0, 1, 20), "class labels"),
        (np.ones((20, 2)), np.arange(20), "class labels"),
        (np.zeros((0, 2)), np.zeros(0), "no examples"),
        (np.zeros((20, 0)), np.arange(20) % 2, "no features"),
        (np.full((20, 2), 1e300), np.arange(20) % 2, "float32"),
    ],
)
def test_make_dataset_refuses_what_it_cannot_use(X: Any, y: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_dataset(X, y, seed=0)


def test_huge_but_finite_inputs_are_standardized() -> None:
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(60, 3)) * 1e30).astype(np.float32)
    data = make_dataset(X, np.arange(60) % 2, seed=0)
    assert np.all(np.isfinite(data.x_train))
    np.testing.assert_allclose(data.x_train.std(0), 1, rtol=1e-3)
