"""The lecture's experiments: the engine, the data, the problems, figures and reports.

``python -m jaxopt_lectures run`` runs them all (see :mod:`jaxopt_lectures.experiments.cli`). The
building blocks are usable on their own:

- :mod:`~jaxopt_lectures.experiments.engine`: trajectories and MLP training runs compiled with
  ``lax.scan``, sweeps with ``vmap``, early stopping;
- :mod:`~jaxopt_lectures.experiments.data`: digits or any ``(X, y)``, split and standardized;
- :mod:`~jaxopt_lectures.experiments.problems`: the quadratic, Rosenbrock, Beale, a saddle;
- :mod:`~jaxopt_lectures.experiments.registry`: the experiments, one per lecture section.

This package depends on the core library (``jaxopt_lectures.nn``, the optimizers, diagnostics);
the core library never imports it. matplotlib, scikit-learn and tqdm are imported only when
needed: ``pip install 'jaxopt_lectures[experiments]'``.
"""
