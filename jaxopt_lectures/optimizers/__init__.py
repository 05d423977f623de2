"""The lecture's optimizers, one method per file; the public names live in ``jaxopt_lectures``."""
