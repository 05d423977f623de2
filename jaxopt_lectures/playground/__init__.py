"""An optimizer playground: the lecture's methods on 2-D test functions, in one offline HTML page.

``python -m jaxopt_lectures playground --out DIR`` writes ``DIR/playground.html``: pick a test
function (the lecture's quadratic with adjustable conditioning, Rosenbrock, Beale, the saddle,
Himmelblau's four minima), one or several optimizers, move the sliders (learning rate, momentum,
the moving averages' decays, epsilon, damping) or click a start point, and the paths and loss
curves follow at once. The page is self-contained (no network: data, script and style inline).

Every path is computed ahead of time by the library's own transforms (``jl.sgd``, ``jl.adam``,
``jl.newton(saddle_free=True)``, ...): one ``jit(vmap(...))`` program per optimizer runs every
hyperparameter and start point of the grid at once (:mod:`~jaxopt_lectures.playground.grids`);
:mod:`~jaxopt_lectures.playground.page` packs them into the page and reads them back.

Example (a small page: one function, one optimizer)::

  >>> import tempfile
  >>> from jaxopt_lectures.playground import build, read_page
  >>> from jaxopt_lectures.playground.problems import playground_problems
  >>> with tempfile.TemporaryDirectory() as out:
  ...     page = build(out, num_steps=5, start_grid=2, problems=playground_problems()[:1],
  ...                  method_keys=["sgd"])
  ...     description, words = read_page(page)
  >>> description["problems"][0]["methods"]["sgd"]["cases"]  # 8 rates x 2 x 2 starts
  32
"""

from __future__ import annotations

from jaxopt_lectures.playground.page import FILENAME, build, read_page, trajectory_from_page

__all__ = ["FILENAME", "build", "read_page", "trajectory_from_page"]
