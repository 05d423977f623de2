"""The experiments, in the lecture's order: one line per experiment (each is a module of
:mod:`jaxopt_lectures.experiments.lecture`). The CLI, the runner and the report take them from
here."""

from __future__ import annotations

from typing import Any

from jaxopt_lectures.experiments.api import Experiment
from jaxopt_lectures.experiments.lecture import (
    activations,
    adaptive,
    batch_norm,
    batch_norm_smoothness,
    dropout_map,
    gradients,
    landscape,
    momentum,
    newton,
    newton_cost,
    normalization,
    optimizers,
    overfitting,
    papers,
    race,
    sgd_decay,
)

__all__ = ["EXPERIMENTS"]

EXPERIMENTS: dict[str, Experiment[Any]] = {
    e.name: e
    for e in (
        gradients.EXPERIMENT,  # Problem: vanishing or exploding gradients
        landscape.EXPERIMENT,  # Problem: initial values of the parameters
        sgd_decay.EXPERIMENT,  # SGD (or MBGD): standard, decaying learning rate
        momentum.EXPERIMENT,  # Momentum
        newton.EXPERIMENT,  # 2nd order methods
        newton_cost.EXPERIMENT,  # AdaGrad: the cost of the inverse Hessian
        adaptive.EXPERIMENT,  # AdaGrad, RMSprop, Adam
        race.EXPERIMENT,  # Experimentally
        optimizers.EXPERIMENT,  # Experimentally: the optimizers on a network
        activations.EXPERIMENT,  # Why ReLU is better (sometimes)
        overfitting.EXPERIMENT,  # Overfitting; Dropout
        dropout_map.EXPERIMENT,  # Contrasting overfitting: applying dropout
        normalization.EXPERIMENT,  # Input normalization
        batch_norm.EXPERIMENT,  # Normalizing in between layers
        batch_norm_smoothness.EXPERIMENT,  # Normalizing in between layers
    )
}
# The claims that papers measured otherwise get the paper's protocol too (in full runs only).
EXPERIMENTS = papers.attach(EXPERIMENTS)
