"""The per-step oracle the engine is checked against (tests, benchmarks): not used for training.

See :mod:`antlr_exp.engine.reference.per_step`.
"""

from .per_step import reference_forward, reference_surrogate

__all__ = ["reference_forward", "reference_surrogate"]
