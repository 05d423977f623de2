"""The lecture's experiments, one file per lecture section.

Each module defines a result type (a ``NamedTuple`` of arrays and numbers), ``compute``,
``figure``, ``claims`` and ``summarize``, and an ``EXPERIMENT`` that bundles them (see
:mod:`jaxopt_lectures.experiments.api`); :mod:`jaxopt_lectures.experiments.registry` lists them
in the lecture's order. To add one: a new module here and one line in the registry
(``docs/architecture.md`` walks through it).
"""
