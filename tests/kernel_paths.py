"""Run engine tests on both the fused C++ kernels and the plain PyTorch path."""

import pytest

from antlr_exp import kernels


@pytest.fixture(params=["python", "cpp"], autouse=True)
def kernel_path(request, monkeypatch):
    """Select the kernel path through ANTLR_EXP_KERNELS; skip "cpp" where it cannot be built."""
    monkeypatch.setenv("ANTLR_EXP_KERNELS", "auto" if request.param == "cpp" else "python")
    if request.param == "cpp" and kernels.cpp_kernels() is None:
        pytest.skip(f"C++ kernels unavailable: {kernels._state['error']}")
    return request.param
