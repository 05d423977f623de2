"""The experiments, in the lecture's order: one per section, each a module with ``run(ctx)``."""

from __future__ import annotations

from jaxopt_lectures.experiments import (
    activations,
    batch_norm,
    bn_landscape,
    curvature,
    dropout_map,
    gradients,
    landscape,
    momentum_friction,
    newton,
    newton_cost,
    normalization,
    optimizers,
    overfitting,
    race,
    sgd_decay,
)
from jaxopt_lectures.experiments.base import Experiment

__all__ = ["EXPERIMENTS"]

EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment(
            name="gradients",
            title="Vanishing and exploding gradients",
            section="Problem: vanishing or exploding gradients",
            summary="sigma' <= 1/4; per-layer gradient norms of a deep sigmoid vs ReLU MLP; "
            "the deep linear network's lambda^k",
            stages=4,
            run=gradients.run,
        ),
        Experiment(
            name="landscape",
            title="Initial values: basins of attraction and rougher surfaces with depth",
            section="Problem: initial values of the parameters",
            summary="gradient descent from a grid of starts on Himmelblau's function; the loss "
            "along filter-normalized random directions, shallow vs deep MLP",
            stages=1,
            run=landscape.run,
        ),
        Experiment(
            name="sgd-decay",
            title="SGD with a constant and a decaying learning rate",
            section="SGD (or MBGD): standard, decaying learning rate",
            summary="the noise floor against rate and batch size (vmap-ed grid); inverse-time "
            "decay going below it",
            stages=1,
            run=sgd_decay.run,
        ),
        Experiment(
            name="momentum-friction",
            title="Momentum as friction",
            section="Momentum",
            summary="steps to a tolerance against gamma on the narrow valley, with the heavy "
            "ball's theory",
            stages=1,
            run=momentum_friction.run,
        ),
        Experiment(
            name="newton",
            title="Gradient descent vs Newton-Raphson on the quadratic",
            section="2nd order methods",
            summary="theta . A theta with a1 << a2: GD zig-zags for dozens of steps, Newton "
            "lands in one",
            stages=2,
            run=newton.run,
        ),
        Experiment(
            name="newton-cost",
            title="Newton's cost against d",
            section="AdaGrad (the cost of the inverse Hessian)",
            summary="timed steps of dense Newton, Newton-CG and the gradient against the number "
            "of parameters, with fitted exponents",
            stages=1,
            run=newton_cost.run,
        ),
        Experiment(
            name="curvature",
            title="Adaptive methods as curvature scaling; Adam's bias correction",
            section="AdaGrad, RMSprop, Adam",
            summary="per-coordinate effective step against 1/H_ii on the quadratic and a network; "
            "Adam with and without bias correction",
            stages=1,
            run=curvature.run,
        ),
        Experiment(
            name="race",
            title="The optimizers raced on Rosenbrock, Beale and a saddle",
            section="Experimentally",
            summary="SGD, momentum, NAG, AdaGrad, RMSprop, AdaDelta, Adam, Newton: trajectories, "
            "loss curves, an animated GIF",
            stages=3,
            run=race.run,
        ),
        Experiment(
            name="optimizers",
            title="The optimizers training an MLP on digits",
            section="Improving optimization",
            summary="training and validation loss per epoch and test accuracy for every optimizer",
            stages=2,
            run=optimizers.run,
        ),
        Experiment(
            name="overfitting",
            title="Overfitting, early stopping and dropout",
            section="Overfitting; Dropout",
            summary="a 2x512 MLP on 200 examples: validation loss turns up; early stopping; "
            "dropout and the generalization gap",
            stages=2,
            run=overfitting.run,
        ),
        Experiment(
            name="dropout-map",
            title="Where dropout helps",
            section="Dropout; Contrasting overfitting",
            summary="final gap and best validation loss over dropout rate x training-set size",
            stages=1,
            run=dropout_map.run,
        ),
        Experiment(
            name="input-normalization",
            title="Input normalization",
            section="Input normalization",
            summary="raw vs standardized inputs: the largest rate that trains and the speed",
            stages=2,
            run=normalization.run,
        ),
        Experiment(
            name="batch-norm",
            title="Batch normalization",
            section="Normalizing in between layers (batch normalization)",
            summary="3x100 sigmoid with and without BN: steps to 90%, stable rates, Hessian top "
            "eigenvalue",
            stages=3,
            run=batch_norm.run,
        ),
        Experiment(
            name="bn-landscape",
            title="Batch norm: smoothness along the training path, and getting stuck",
            section="Normalizing in between layers (batch normalization)",
            summary="Santurkar et al.'s loss range, gradient predictiveness and beta-smoothness "
            "with and without BN; share of runs reaching the target",
            stages=1,
            run=bn_landscape.run,
        ),
        Experiment(
            name="relu-vs-sigmoid",
            title="ReLU vs sigmoid",
            section="Why ReLU is better (sometimes)",
            summary="the same 4x128 MLP with ReLU and with sigmoid units: epochs to 90%",
            stages=2,
            run=activations.run,
        ),
    )
}
