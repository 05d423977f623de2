"""The lecture's experiments: ``python -m jaxopt_lectures run`` reproduces them all.

The machinery lives at this level, the experiments one level down (``docs/architecture.md``):

- :mod:`~jaxopt_lectures.experiments.session`: one ``run`` from typed options (the command line,
  :mod:`jaxopt_lectures.cli`, sits above this package and the playground);
- :mod:`~jaxopt_lectures.experiments.runner`: runs one experiment's parts into a record;
- :mod:`~jaxopt_lectures.experiments.store`, :mod:`~jaxopt_lectures.experiments.record`:
  ``results.json``, one record per experiment and mode, merged under a lock;
- :mod:`~jaxopt_lectures.experiments.report`: ``report.md`` and ``report.html``;
- :mod:`~jaxopt_lectures.experiments.api`: the types an experiment is made of;
- :mod:`~jaxopt_lectures.experiments.engine`: trajectories, sweeps and MLP training compiled with
  ``lax.scan`` and ``vmap``;
- :mod:`~jaxopt_lectures.experiments.data`, :mod:`~jaxopt_lectures.experiments.figures`: data
  sets and drawing helpers (the 2-D test problems are :mod:`jaxopt_lectures.problems`);
- :mod:`~jaxopt_lectures.experiments.lecture`: one module per lecture section;
  :mod:`~jaxopt_lectures.experiments.registry` lists them.

This package depends on the core library (``jaxopt_lectures.nn``, the optimizers, diagnostics);
the core library never imports it. matplotlib, scikit-learn and tqdm are imported only when
needed: ``pip install 'jaxopt_lectures[experiments]'``.
"""
