"""The experiment engine: whole trajectories, sweeps and training runs compiled with ``lax.scan``.

Pure functions of their inputs, each compiling one program per call:

- ``trajectories``: an optimizer on a small 2-D problem (:func:`run_trajectories`);
- ``sweeps``: one program for many settings as lanes of a ``vmap``
  (:func:`sweep_trajectories` over learning rates, :func:`select_optimizer` over optimizers);
- ``training``: MLPs trained on a data set with early stopping (:func:`train`);
- ``fitting``: MLPs trained a fixed number of steps with checkpoints of their parameters
  (:func:`fit_mlps`), for experiments that probe trained parameters;
- ``measures``: what is read off a curve (:func:`first_reach`, :func:`fitted_exponent`,
  :func:`rank_correlation`);
- ``timing``: compile and run times, collected by a :class:`Timer` the caller passes in
  (:func:`timed`, :func:`compile_timed`; ``short`` marks a quick run's short programs).
"""

from jaxopt_lectures.experiments.engine.fitting import Fitted, fit_mlps
from jaxopt_lectures.experiments.engine.measures import (
    first_reach,
    fitted_exponent,
    rank_correlation,
)
from jaxopt_lectures.experiments.engine.sweeps import select_optimizer, sweep_trajectories
from jaxopt_lectures.experiments.engine.timing import (
    Timer,
    Timing,
    compile_timed,
    timed,
)
from jaxopt_lectures.experiments.engine.training import (
    MLP,
    History,
    OptimizerFactory,
    TrainCarry,
    TrainRun,
    cross_entropy,
    init_carry,
    train,
    train_step,
)
from jaxopt_lectures.experiments.engine.trajectories import (
    LossFn,
    Trajectory,
    TrajectoryJob,
    run_trajectories,
    trajectory,
)

__all__ = [
    "MLP",
    "Fitted",
    "History",
    "LossFn",
    "OptimizerFactory",
    "Timer",
    "Timing",
    "TrainCarry",
    "TrainRun",
    "Trajectory",
    "TrajectoryJob",
    "compile_timed",
    "cross_entropy",
    "first_reach",
    "fit_mlps",
    "fitted_exponent",
    "init_carry",
    "rank_correlation",
    "run_trajectories",
    "select_optimizer",
    "sweep_trajectories",
    "timed",
    "train",
    "train_step",
    "trajectory",
]
