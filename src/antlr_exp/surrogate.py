"""Kept for one release: moved to :mod:`antlr_exp.engine.surrogate`."""

from .engine.surrogate import SURROGATES, exponential, fast_sigmoid, sigmoid, triangle  # noqa: F401
