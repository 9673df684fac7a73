"""Kept for one release: the kernels are chosen in :mod:`antlr_exp.engine.backends` now
(:func:`~antlr_exp.engine.backends.select`); these functions answer as they did."""

from .engine.backends import SURROGATE_CODES, requested, select  # noqa: F401


def kernel_mode() -> str:
    """The kernels setting in force (see :func:`~antlr_exp.engine.backends.requested`)."""
    return requested()


def cpp_kernels():
    """The compiled C++ module where the C++ backend runs CPU tensors, else None."""
    if requested() not in ("auto", "cpp"):
        return None
    backend = select("cpu")
    return backend.ops if backend.name == "cpp" else None


def triton_kernels(device):
    """The Triton kernels' module where the Triton backend runs tensors on ``device``, else None."""
    if requested() in ("python", "cpp"):
        return None
    backend = select(device)
    return backend.ops if backend.name == "triton" else None
