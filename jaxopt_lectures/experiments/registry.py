"""The experiments, in the lecture's order: one line per experiment (each is a module of
:mod:`jaxopt_lectures.experiments.lecture`). The CLI, the runner and the report take them from
here."""

from __future__ import annotations

from typing import Any

from jaxopt_lectures.experiments.api import Experiment
from jaxopt_lectures.experiments.lecture import (
    activations,
    batch_norm,
    gradients,
    newton,
    normalization,
    optimizers,
    overfitting,
    race,
)

__all__ = ["EXPERIMENTS"]

EXPERIMENTS: dict[str, Experiment[Any]] = {
    e.name: e
    for e in (
        gradients.EXPERIMENT,
        newton.EXPERIMENT,
        race.EXPERIMENT,
        optimizers.EXPERIMENT,
        overfitting.EXPERIMENT,
        normalization.EXPERIMENT,
        batch_norm.EXPERIMENT,
        activations.EXPERIMENT,
    )
}
