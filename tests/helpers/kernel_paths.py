"""Run engine tests on both the fused C++ kernels and the plain PyTorch path.

Where the C++ kernels cannot be built, the "cpp" half of these tests cannot run: in CI (``CI``
set to anything but empty, 0 or false) that fails the test, since it silently drops the only
check of the C++ path; elsewhere the test is skipped and the end of the run says so in a line of
its own (``pytest_terminal_summary``, imported by conftest.py).
"""

import os

import pytest

from antlr_exp.engine.backends import cpp

SKIP_REASON = "C++ kernels unavailable"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_cpp_kernels() -> None:
    """Fail (in CI) or skip (elsewhere) the calling test when the C++ kernels did not build."""
    if cpp.load() is not None:
        return
    message = f"{SKIP_REASON}: {cpp.build_error()}"
    if in_ci():
        pytest.fail(f"{message} (CI must test the C++ path; fix the build)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(params=["python", "cpp"], autouse=True)
def kernel_path(request, monkeypatch):
    """Select the kernel path through ANTLR_EXP_KERNELS."""
    monkeypatch.setenv("ANTLR_EXP_KERNELS", "auto" if request.param == "cpp" else "python")
    if request.param == "cpp":
        require_cpp_kernels()
    return request.param


def pytest_terminal_summary(terminalreporter):
    """One loud line when C++-path tests were skipped because the kernels did not build."""
    skipped = [
        r
        for r in terminalreporter.stats.get("skipped", [])
        if isinstance(r.longrepr, tuple) and SKIP_REASON in str(r.longrepr[-1])
    ]
    if skipped:
        reason = str(skipped[0].longrepr[-1]).partition(f"{SKIP_REASON}: ")[2]
        terminalreporter.write_sep(
            "!",
            f"{len(skipped)} C++-path tests SKIPPED: {SKIP_REASON} ({reason}); only the PyTorch path was tested",
            red=True,
            bold=True,
        )
