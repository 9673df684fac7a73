"""Kept for one release: moved to :mod:`antlr_exp.engine.reference` (the per-step oracle)."""

from .engine.reference import reference_forward, reference_surrogate  # noqa: F401
