"""Kept for one release: moved to :mod:`antlr_exp.engine.backends.triton`."""

from .engine.backends.triton import (  # noqa: F401
    BLOCK,
    COMPILE_OPTIONS,
    INTERPRETED,
    lif_forward,
    rnn_adjoint,
    srm_adjoint,
)
