"""jaxopt_lectures: the lecture "Learning as Optimization" as composable JAX transformations.

Every optimizer is a pure ``(init, update)`` pair in the optax style, so it drops into
``optax.chain``, ``optax.inject_hyperparams``, ``optax.MultiSteps`` or ``optax.apply_if_finite``::

    import jaxopt_lectures as jl
    tx = optax.chain(optax.clip_by_global_norm(1.0), jl.nag(0.1, momentum=0.9))
"""

from jaxopt_lectures import curvature, diagnostics, nn
from jaxopt_lectures.one_loop import one_loop
from jaxopt_lectures.optimizers.adadelta import ScaleByAdadeltaState, adadelta, scale_by_adadelta
from jaxopt_lectures.optimizers.adagrad import ScaleByAdagradState, adagrad, scale_by_adagrad
from jaxopt_lectures.optimizers.adam import ScaleByAdamState, adam, scale_by_adam
from jaxopt_lectures.optimizers.momentum import TraceState, momentum, nag, trace
from jaxopt_lectures.optimizers.newton import (
    ScaleByNewtonCGState,
    ScaleByNewtonState,
    newton,
    newton_cg,
    scale_by_newton,
    scale_by_newton_cg,
)
from jaxopt_lectures.optimizers.rmsprop import (
    ScaleByRmsState,
    ScaleByRmsWithCountState,
    ScaleByRStdDevState,
    ScaleByRStdDevWithCountState,
    rmsprop,
    scale_by_rms,
    scale_by_stddev,
)
from jaxopt_lectures.optimizers.sgd import (
    ScaleByLearningRateState,
    inverse_time_decay,
    scale_by_learning_rate,
    sgd,
)
from jaxopt_lectures.packed import Packed, packed
from jaxopt_lectures.sharding import init_sharded, state_shardings

__version__ = "0.1.0"

__all__ = [
    "Packed",
    "ScaleByAdadeltaState",
    "ScaleByAdagradState",
    "ScaleByAdamState",
    "ScaleByLearningRateState",
    "ScaleByNewtonCGState",
    "ScaleByNewtonState",
    "ScaleByRStdDevState",
    "ScaleByRStdDevWithCountState",
    "ScaleByRmsState",
    "ScaleByRmsWithCountState",
    "TraceState",
    "__version__",
    "adadelta",
    "adagrad",
    "adam",
    "curvature",
    "diagnostics",
    "init_sharded",
    "inverse_time_decay",
    "momentum",
    "nag",
    "newton",
    "newton_cg",
    "nn",
    "one_loop",
    "packed",
    "rmsprop",
    "scale_by_adadelta",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_learning_rate",
    "scale_by_newton",
    "scale_by_newton_cg",
    "scale_by_rms",
    "scale_by_stddev",
    "sgd",
    "state_shardings",
    "trace",
]
